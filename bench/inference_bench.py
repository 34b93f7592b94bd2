"""Local inference time per study for each built-in algorithm package.

    python bench/inference_bench.py [--repeats 5] [--ct-slices 300] [--ct-size 512] [--threads 0]

For each built-in package: a synthetic study it accepts (a chest radiograph for
``pneumonia-cxr``; a chest CT phantom for ``ct-lung-volume``), the runner made once (first
run includes the ONNX Runtime session), then ``--repeats`` timed runs on the same study:
decoding the pixel data, preprocessing, inference and mapping outputs to findings. No
network, no pseudonymisation, no result objects. Prints one line per package and a JSON
summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydicom import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.algorithms.package import AlgorithmPackage, discover
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.sample_studies import (
    chest_radiograph,
    ct_series,
    demo_patient,
    phantom_chest,
)


def ct_phantom(slices: int, size: int) -> list[Dataset]:
    """An elliptic body with two ellipsoid lungs, 1 mm slices, 0.7 mm pixels."""
    y, x = np.mgrid[0:size, 0:size].astype(float) / size
    body = ((x - 0.5) / 0.44) ** 2 + ((y - 0.5) / 0.34) ** 2 <= 1
    images = []
    for n, ds in enumerate(ct_series(demo_patient(1), slices, size=size)):
        zz = (n - slices / 2) / (slices / 2)
        lungs = np.zeros_like(body)
        for cx in (0.33, 0.67):
            lungs |= ((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.22) ** 2 + zz**2 <= 1
        hu = np.where(body, 40, -1000)
        hu = np.where(lungs, -850, hu)
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        images.append(ds)
    return images


def study_for(package: AlgorithmPackage, args: argparse.Namespace) -> list[Dataset]:
    if "CT" in package.modalities:
        return ct_phantom(args.ct_slices, args.ct_size)
    return [chest_radiograph(demo_patient(1), phantom_chest(args.cxr_size))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--ct-size", type=int, default=512)
    parser.add_argument("--cxr-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="ONNX intra-op threads")
    args = parser.parse_args()

    cache = RunnerCache(args.threads)
    rows = []
    for algorithm_id, package in sorted(discover().items()):
        images = study_for(package, args)
        start = time.perf_counter()
        runner = cache.get(package)
        runner.run(images)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            # a fresh decode each time, as the worker reads the files of each job anew
            for ds in images:
                ds._pixel_array = None
                ds._pixel_id = {}
            start = time.perf_counter()
            runner.run(images)
            times.append(time.perf_counter() - start)
        row = {
            "algorithm": algorithm_id,
            "runner": package.runner.kind,
            "images_per_study": len(images),
            "first_run_s": round(first, 4),
            "median_s": round(statistics.median(times), 4),
            "min_s": round(min(times), 4),
            "repeats": args.repeats,
        }
        rows.append(row)
        print(
            f"{algorithm_id:<16} {package.runner.kind:<8} {len(images):>4} image(s)/study  "
            f"first {first * 1000:8.1f} ms  median {row['median_s'] * 1000:8.1f} ms  "
            f"min {row['min_s'] * 1000:8.1f} ms",
            flush=True,
        )
    summary = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "results": rows,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
