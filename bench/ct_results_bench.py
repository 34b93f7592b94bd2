"""The CT's result stage on its own: model output -> SR and SEG built, re-identified, written.

    .venv/bin/python bench/ct_results_bench.py [--slices 500] [--keep DIR]

In one process, as the service's worker thread does it: a synthetic chest CT
(``bench/data.py``) is received into an in-process appliance routed to the bundled
``ct-lung-volume``, pseudonymised, and then ``JobProcessor.run_algorithm`` runs (the lung
volume, then the SR and the SEG built, re-identified and written durably). highdicom's
tables are loaded (and the objects alive frozen) first, as the service's first result
build does. Prints the job's recorded stage times, then per step of the result stage
(each builder, each re-identification, each file written) its wall-clock and CPU seconds
(CPU: the worker thread's own, steadier on a shared machine), the seconds of garbage
collections inside it, and the resident memory before and after it; then the collections
during ``run_algorithm`` and its peak resident memory (sampled every 20 ms, and the
process's VmHWM, reset before it). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import data
from bench.process_tree import own_status_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument(
        "--ahead",
        action="store_true",
        help="the SEG built ahead as the service's child process builds it while the model"
        " runs (here in this process, before the model: its own step in the list), its"
        " segment speculated as a previous result of the lung volume teaches it",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy the job's result files (SR, SEG) into this folder"
    )
    args = parser.parse_args()

    import aifi_app.pipeline.processing as processing
    import aifi_app.results as results
    from aifi_app.store.states import JobState

    with tempfile.TemporaryDirectory(prefix="aifi-ct-results-") as tmp:
        work = Path(tmp)
        app, job_id = data.pseudonymised_ct_job(work, args.slices)

        # as the first result built in the service does: highdicom's tables loaded, and every
        # object alive then frozen out of the garbage collector's walks
        try:
            from aifi_app.results.standard_tables import load_and_freeze
        except ImportError:  # a tree from before 2026-11-29's sixth session: loaded on use
            from highdicom import _standard_utils

            _standard_utils.get_module_attribute_map()
            _standard_utils.get_iod_module_map()
        else:
            load_and_freeze()

        steps: list[tuple[str, float, float, float, float, float]] = []

        def timed(module: Any, name: str, label: str | None = None) -> None:
            function: Callable[..., Any] = getattr(module, name)

            @functools.wraps(function)
            def wrapper(*a: Any, **k: Any) -> Any:
                wall, cpu, rss = time.perf_counter(), time.thread_time(), own_status_mb("VmRSS")
                try:
                    return function(*a, **k)
                finally:
                    steps.append(
                        (
                            label or name,
                            wall,
                            time.perf_counter() - wall,
                            time.thread_time() - cpu,
                            rss,
                            own_status_mb("VmRSS"),
                        )
                    )

            setattr(module, name, wrapper)

        for name in ("build_measurement_report", "build_segmentation"):
            getattr(results, name)  # loaded on first use (PEP 562)
            timed(results, name)
        if args.ahead:
            from aifi_app.pipeline import seg_ahead

            class InlineChild:
                """The pre-pseudonymiser's child, run here at once (its CPU measured)."""

                def request_seg_ahead(self, request: Any) -> bool:
                    seg_ahead.build_ahead(
                        request, app.processor.original_for, app.processor.study_of_instance
                    )
                    return True

                def request_sr(self, request: Any) -> bool:  # the SR in the child (s11)
                    from aifi_app.pipeline import sr_in_child

                    sr_in_child.build_in_child(request)
                    return True

            timed(seg_ahead, "build_ahead")
            if hasattr(seg_ahead, "build_evidence_ahead"):  # the SR's evidence (srahead)
                timed(seg_ahead, "build_evidence_ahead")
            app.processor.prepared = InlineChild()  # type: ignore[assignment]
            package = app.processor.context(job_id).package
            identity = package.identity
            app.processor._segments_seen[(identity.algorithm_id, identity.version)] = (
                package.output.concept,
                "Lung",
            )
        # (reidentify, part10_bytes and durable_write: how results were made before 2026-11-29)
        for name in (
            "check_reidentification",
            "reidentify",
            "write_part10_durably",
            "part10_bytes",
            "durable_write",
            "write_segmentation",
            "load_skeleton",
            "load_evidence",
        ):
            if hasattr(processing, name):
                timed(processing, name)
        if hasattr(processing, "CheckedResult"):
            timed(processing.CheckedResult, "apply")  # the re-identified elements set
        try:  # the SR's evidence made ahead, joined (2026-11-29, srahead)
            from aifi_app.results.sr_evidence import EvidenceJoin
        except ImportError:
            pass
        else:
            timed(EvidenceJoin, "apply", "EvidenceJoin.apply")

        peak = [0.0]
        stop = threading.Event()
        collections: list[tuple[int, float, float]] = []  # generation, start, seconds
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                collections.append(
                    (info["generation"], gc_started[0], time.perf_counter() - gc_started[0])
                )

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], own_status_mb("VmRSS"))

        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
        before = own_status_mb("VmRSS")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        gc.callbacks.append(on_gc)
        try:
            app.processor.run_algorithm(job_id, JobState.PSEUDONYMISED)
        finally:
            gc.callbacks.remove(on_gc)
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        state = app.db.query("SELECT state, reason FROM jobs")[0]
        stages = app.db.query(
            "SELECT stage, finished_at - started_at AS seconds FROM job_stage_times"
            " WHERE job_id = ? ORDER BY started_at",
            (job_id,),
        )
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for made in sorted(app.processor.result_dir(job_id).glob("*.dcm")):
                shutil.copyfile(made, args.keep / made.name)
        app.db.close()
    if state["state"] != JobState.RESULT_RECEIVED:
        print(f"job ended {state['state']}: {state['reason']}")
        return 1
    print(f"CT {args.slices} slices; run_algorithm {elapsed:.2f} s")
    print("stages: " + ", ".join(f"{r['stage']} {r['seconds']:.2f} s" for r in stages))
    print(f"{'step':<26} {'wall s':>7} {'cpu s':>7} {'gc s':>6} {'RSS before':>11} {'after MB':>9}")
    for name, at, wall, cpu, rss_before, rss_after in steps:
        in_gc = sum(s for _, t, s in collections if at <= t <= at + wall)
        print(f"{name:<26} {wall:7.3f} {cpu:7.3f} {in_gc:6.3f} {rss_before:11.0f} {rss_after:9.0f}")
    full = [s for g, _, s in collections if g == 2]
    print(
        f"garbage collections during run_algorithm: {len(collections)},"
        f" {sum(s for _, _, s in collections):.3f} s; full ones {len(full)}, {sum(full):.3f} s"
    )
    print(
        f"resident memory: {before:.0f} MB before run_algorithm, peak {peak[0]:.0f} MB sampled,"
        f" VmHWM {own_status_mb('VmHWM'):.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
