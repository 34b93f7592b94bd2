"""Does local inference run on the GPU, and does it give the CPU's answers?

    python bench/gpu_check.py [--images 64] [--repeats 20]

For each built-in ONNX package: the same runner the worker makes (``OnnxRunner``, with the
appliance's provider preference: CUDA, then DirectML, then CPU) and one forced onto the
CPU, on the same synthetic radiographs. It prints which provider each session really
uses, the largest difference between their probabilities, whether every finding's
decision agrees, and the median time of one study (decode, preprocessing, inference,
findings) and of the model alone on a batch. Exits 1 when CUDA was available but the
session did not use it or the answers differ by more than ``--tolerance``; 0 otherwise
(also when this machine has no CUDA: then it says so and checks nothing).

Needs a machine with an NVIDIA GPU and ``onnxruntime-gpu``; the development machines
have neither, so this is run by hand where a GPU is lent (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.algorithms.onnx_runner import PREFERRED_PROVIDERS, OnnxRunner, model_input
from aifi_app.algorithms.package import AlgorithmPackage, OnnxRunnerSpec, discover
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest


def median_seconds(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except OSError:
        return "no nvidia-smi"
    return out.stdout.strip() or out.stderr.strip()


def check(
    algorithm_id: str, package: AlgorithmPackage, args: argparse.Namespace, accelerator: str
) -> list[str]:
    """Compare one ONNX package on the accelerator and on the CPU; returns the failures."""
    failures = []
    providers = PREFERRED_PROVIDERS if accelerator != "CPUExecutionProvider" else (accelerator,)
    gpu = OnnxRunner(package, providers=providers)
    cpu = OnnxRunner(package, providers=("CPUExecutionProvider",))
    used = gpu.session.get_providers()
    if used[0] != accelerator:
        failures.append(f"{algorithm_id}: session uses {used}, not {accelerator}")
    images = [
        chest_radiograph(demo_patient(n), phantom_chest(1024, seed=n)) for n in range(args.images)
    ]
    batch = model_input(images, gpu.spec.preprocessing)
    p_gpu = gpu.probabilities(batch)
    p_cpu = cpu.probabilities(batch)
    diff = float(np.max(np.abs(p_gpu - p_cpu)))
    threshold = package.finding.threshold
    same = bool(np.array_equal(p_gpu >= threshold, p_cpu >= threshold))
    if diff > args.tolerance or not same:
        failures.append(f"{algorithm_id}: CPU and GPU differ (max {diff:.2e}, same={same})")
    study = images[:1]
    gpu.run(study)  # warm-up: CUDA kernels, memory arena
    cpu.run(study)
    row = {
        "algorithm": algorithm_id,
        "gpu_providers": used,
        "batch": len(images),
        "max_abs_diff": diff,
        "same_decisions": same,
        "study_s_gpu": round(median_seconds(args.repeats, lambda: gpu.run(study)), 5),
        "study_s_cpu": round(median_seconds(args.repeats, lambda: cpu.run(study)), 5),
        "batch_infer_s_gpu": round(median_seconds(args.repeats, lambda: gpu.infer(batch)), 5),
        "batch_infer_s_cpu": round(median_seconds(args.repeats, lambda: cpu.infer(batch)), 5),
    }
    print(json.dumps(row), flush=True)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="radiographs in the batch")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument(
        "--on-cpu", action="store_true", help="try the script itself where there is no GPU"
    )
    args = parser.parse_args()

    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, if present
        ort.preload_dlls()
    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__}; providers {available}; GPU: {gpu_name()}")
    accelerator = "CPUExecutionProvider" if args.on_cpu else "CUDAExecutionProvider"
    if accelerator not in available:
        print("no CUDAExecutionProvider here: nothing to check")
        return 0

    failures: list[str] = []
    for algorithm_id, package in sorted(discover().items()):
        if isinstance(package.runner, OnnxRunnerSpec):
            failures += check(algorithm_id, package, args, accelerator)
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
