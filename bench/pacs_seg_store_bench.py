"""How long the receiving PACS (Orthanc) takes to store the CT's SEG once it has its data.

    .venv/bin/python bench/ct_results_bench.py --ahead --keep /tmp/ct-results
    .venv/bin/python bench/pacs_seg_store_bench.py /tmp/ct-results/02-seg.dcm [--runs 8]

The floor under "after the model: its results stored in the PACS" of ``python -m bench
--only e2e``: the SEG can go only once the model has made its mask, and the PACS answers
its C-STORE only once it has stored it. A fresh Orthanc (as the bench starts it: stock,
HTTP on localhost only) gets the SEG ``--runs`` times, each a new SOP Instance UID, from
our C-STORE SCU (``storage_scu.send_files``, as the dispatcher's early send uses it);
every other run has one core busy beside it (a Python loop in another process, as the
service's own work after the model or another program would). Prints per run when the
data was with Orthanc's socket and when it answered (seconds from the send's start).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import start_orthanc

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass"


def _noting(sent: list[float]) -> Callable[[int], None]:
    """``on_data_sent``: when the file's data was with the peer's socket."""
    return lambda _: sent.append(time.perf_counter())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("seg", type=Path, help="a SEG file (ct_results_bench.py --keep)")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()

    from pydicom import dcmread

    from aifi_app.dicom_node.requestor import Peer
    from aifi_app.dicom_node.storage_scu import send_files

    with tempfile.TemporaryDirectory(prefix="aifi-pacs-seg-") as tmp:
        work = Path(tmp)
        seg = dcmread(args.seg)
        files = []
        for n in range(args.runs):
            seg.SOPInstanceUID = f"2.25.{time.time_ns()}{n}"
            seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
            files.append(work / f"seg-{n}.dcm")
            seg.save_as(files[-1], enforce_file_format=True)
        size = files[0].stat().st_size / 1e6
        orthanc = start_orthanc(work / "orthanc", nodelay=False)
        stored: dict[str, list[float]] = {"idle": [], "one core busy": []}
        try:
            peer = Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)
            for n, path in enumerate(files):
                label = "one core busy" if n % 2 else "idle"
                busy = (
                    subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=1.0)])
                    if n % 2
                    else None
                )
                sent: list[float] = []
                started = time.perf_counter()
                (outcome,) = send_files(
                    peer,
                    [path],
                    calling_ae_title="AIFI",
                    on_data_sent=_noting(sent),
                )
                answered = time.perf_counter()
                if busy is not None:
                    busy.wait()
                if not outcome.ok:
                    print(f"run {n + 1}: Orthanc answered {outcome.status}")
                    return 1
                stored[label].append(answered - sent[0])
                print(
                    f"run {n + 1} ({label}): data sent {sent[0] - started:.3f} s,"
                    f" stored {answered - started:.3f} s ({answered - sent[0]:.3f} s after"
                    " its data)",
                    flush=True,
                )
                time.sleep(1.0)
        finally:
            orthanc.stop()
    print(
        f"SEG {size:.1f} MB, {int(seg.NumberOfFrames)} frames; Orthanc stored it, after its data:"
    )
    for label, seconds in stored.items():
        if seconds:
            print(
                f"  {label}: median {statistics.median(seconds):.3f} s,"
                f" {min(seconds):.3f}-{max(seconds):.3f} s ({len(seconds)} runs)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
