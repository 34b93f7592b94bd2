"""The pre-pseudonymiser's child building a CT's SEG and SR evidence ahead: its memory.

    .venv/bin/python bench/seg_ahead_memory_bench.py [--slices 500] [--runs 3]

A synthetic chest CT (``bench/data.py``) is received into an in-process appliance routed
to the bundled ``ct-lung-volume`` and pseudonymised; the request the worker sends the
child while the model runs is made as the worker makes it (``_seg_request``: the SEG's
skeleton and the SR's evidence). Then, once per run, a fresh process does what the child
does with it: it imports the child's loop (``aifi_app.pipeline.pre_pseudonymise``: the
child's baseline), and runs ``seg_ahead.build_in_child`` with a read-only connection to
the queue, as the child's low-priority thread does (highdicom imported on the way).
Prints per run the process's resident memory before, its peak (VmHWM), after, and
the seconds the build took. Linux only (``/proc``).

Compare with another tree's code: copy this file into that tree's ``bench/`` and run it
from there (it imports the tree it lies in).
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import data
from bench.process_tree import own_status_mb


def child(request_file: Path, db_path: Path) -> None:
    """One run, in this (fresh) process: the child's imports, then the build."""
    import aifi_app.pipeline.pre_pseudonymise as pre
    from aifi_app.pipeline import seg_ahead

    request = pickle.loads(request_file.read_bytes())
    db = pre.ReadOnlyDb(db_path)
    # no sampling thread beside the build: the objects it made while the build ran
    # outlived the build's and kept CPython's arenas holding those (12 MB more "after");
    # VmHWM is the peak
    before = own_status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
    started = time.perf_counter()
    seg_ahead.build_in_child(request, db)
    seconds = time.perf_counter() - started
    hdr, _ = seg_ahead.skeleton_paths(Path(request.sources[0]).parent, request.number)
    made = "skeleton written" if hdr.exists() else "NO SKELETON"
    print(
        f"before {before:.0f} MB, peak {own_status_mb('VmHWM'):.0f} MB,"
        f" after {own_status_mb('VmRSS'):.0f} MB RSS; built in {seconds:.2f} s; {made}",
        flush=True,
    )


def prepare(work: Path, slices: int) -> tuple[Path, Path, list[Path]]:
    """The pseudonymised job and the worker's request for it (pickled)."""
    app, job_id = data.pseudonymised_ct_job(work, slices)
    processor = app.processor
    ctx = processor.context(job_id)
    images = processor.job_images(job_id)
    header = processor.original_header(ctx)
    output = ctx.package.output
    assert output is not None
    request = processor._seg_request(
        ctx,
        1,
        output.concept,
        "Lung",
        tuple(str(ds.filename) for ds in images),
        header,
        __import__("datetime").datetime(2026, 11, 29, 9, 15, 30),
    )
    db_path = Path(app.db.path)
    app.db.close()
    request_file = work / "request.pickle"
    request_file.write_bytes(pickle.dumps(request))
    made = [p for p in seg_ahead_files(request) if p.exists()]
    return request_file, db_path, made


def seg_ahead_files(request: object) -> list[Path]:
    from aifi_app.pipeline import seg_ahead

    work_dir = Path(request.sources[0]).parent  # type: ignore[attr-defined]
    number = request.number  # type: ignore[attr-defined]
    return [*seg_ahead.skeleton_paths(work_dir, number), *seg_ahead.evidence_paths(work_dir)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="aifi-seg-ahead-memory-") as tmp:
        request_file, db_path, _ = prepare(Path(tmp), args.slices)
        request = pickle.loads(request_file.read_bytes())
        print(
            f"SEG and SR evidence of a {args.slices}-slice CT built ahead, a fresh child each run"
        )
        for run in range(args.runs):
            for path in seg_ahead_files(request):
                path.unlink(missing_ok=True)
            print(f"  run {run + 1}: ", end="", flush=True)
            subprocess.run(
                [sys.executable, __file__, "--child", str(request_file), str(db_path)],
                check=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
