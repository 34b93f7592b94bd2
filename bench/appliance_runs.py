"""Benchmarks that run the appliance as ``aifi-app serve`` (its own process, as deployed)."""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from bench import data
from bench.peers import STORESCU, dcmtk_env, start_orthanc, wait_all
from bench.process_tree import TreePeak, machine_ticks, pacs_store_cpu, steal_share
from bench.report import Row
from tests.helpers.appliance import ApplianceProcess, all_jobs
from tests.helpers.ports import free_port


def concurrent_storescu(groups: list[list[Path]], port: int, called: str) -> float:
    """One DCMTK storescu per group, all at once; seconds until the last one is done."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [STORESCU, "-aet", "STORESCU", "-aec", called, "-nh", "127.0.0.1", str(port)]
            + [str(p) for p in group],
            env=dcmtk_env(True),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for group in groups
    ]
    codes = wait_all(procs, 600)
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"storescu failed: exit codes {codes}")
    return elapsed


def send_study(paths: list[Path], port: int, called: str) -> None:
    """DCMTK storescu (TCP_NODELAY=1) sends ``paths`` over one association."""
    subprocess.run(
        [STORESCU, "-aet", "STORESCU", "-aec", called, "-nh", "127.0.0.1", str(port)]
        + [str(p) for p in paths],
        env=dcmtk_env(True),
        check=True,
        capture_output=True,
    )


NODE_TOML = ""
"""[node] settings for the ingest runs (``python -m bench --node KEY=VALUE``)."""


def ingest(
    workdir: Path, groups: list[list[Path]], extra_toml: str = "", *, settle: bool = True
) -> float:
    """Seconds for storescu (one association per group) to store into a fresh appliance
    (``extra_toml``: e.g. a route that takes the study, so that it is pseudonymised in
    the background while it arrives; ``settle`` False: sent the moment the port accepts)."""
    shutil.rmtree(workdir, ignore_errors=True)
    app = ApplianceProcess(
        workdir, pacs=None, idle_seconds=600, extra_toml=extra_toml, node_toml=NODE_TOML
    ).start()
    try:
        if settle:
            app.settle()  # (the worker's loading done; tests/helpers/appliance.py)
        elapsed = concurrent_storescu(groups, app.port, app.ae_title)
        stored = sum(s["instance_count"] for s in app.status()["studies"])
        expected = sum(len(g) for g in groups)
        if stored != expected:
            raise RuntimeError(f"appliance recorded {stored} of {expected} instances")
        return elapsed
    finally:
        app.stop()


def end_to_end(work: Path, rx: list[Path], runs: int) -> list[Row]:
    """Last instance of a radiograph study sent -> its results stored in Orthanc."""
    idle = 0.1
    port = free_port()
    orthanc = start_orthanc(work / "orthanc-pacs", nodelay=False)
    app = ApplianceProcess(
        work / "e2e", pacs=(orthanc.aet, orthanc.dicom_port), idle_seconds=idle, port=port
    ).start()
    try:
        times = []
        expected = 0
        for n in range(runs + 1):  # the first run warms the model up and counts the results
            study = data.make_radiograph_study(work / f"e2e-study-{n}", size=1024)
            study_uid = str(_study_uid(study[0]))
            send_study(study, app.port, app.ae_title)
            sent = time.perf_counter()
            if n == 0:
                app.wait_for(all_jobs("delivered", 1), what="the first job to be delivered")
                expected = len(orthanc.instances_of_study(study_uid))
                continue
            while len(_find(orthanc, study_uid)) < expected:
                if time.perf_counter() - sent > 120:
                    raise RuntimeError("results did not arrive in Orthanc")
                time.sleep(0.01)
            times.append(time.perf_counter() - sent)
    finally:
        app.stop()
        orthanc.stop()
    return [
        Row(
            f"end to end radiograph (idle {idle} s)",
            statistics.median(times),
            "goal < 1 s + model time",
            None,
        )
    ]


CT_ROUTE = """
[[routes]]
name = "ct-lung-volume"
algorithm = "ct-lung-volume"
modalities = ["CT"]
body_parts = ["CHEST"]
"""
"""The route an application manager adds for the bundled CT lung volume package."""


def end_to_end_ct(work: Path, ct: list[Path], runs: int) -> list[Row]:
    """Last instance of the CT sent -> its results (SR and SEG) stored in Orthanc; the
    model's own time (the appliance's recorded ``model`` stage) beside it."""
    idle = 0.1
    orthanc = start_orthanc(work / "orthanc-pacs-ct", nodelay=False)
    app = ApplianceProcess(
        work / "e2e-ct",
        pacs=(orthanc.aet, orthanc.dicom_port),
        idle_seconds=idle,
        extra_toml=CT_ROUTE,
    ).start()
    try:
        times, models = [], []
        split = 0
        for n in range(runs + 1):  # the first (70 slices) loads scipy and highdicom
            # a fresh CT (new UIDs) each run: the same one again would be a late episode
            study = data.make_ct(work / f"e2e-ct-{n}", len(ct) if n else 70)
            study_uid = str(_study_uid(study[0]))
            pacs_cpu = pacs_store_cpu(orthanc.proc.pid)
            send_study(study, app.port, app.ae_title)
            sent, ticks = time.perf_counter(), machine_ticks()
            while len(_find(orthanc, study_uid)) < 2:  # its SR and its SEG
                if time.perf_counter() - sent > 600:
                    raise RuntimeError(f"CT results did not arrive: {app.status()['jobs'][:1]}")
                time.sleep(0.01)
            elapsed = time.perf_counter() - sent
            seen_at = time.time()
            pacs_cpu = pacs_store_cpu(orthanc.proc.pid) - pacs_cpu
            stolen = steal_share(ticks, machine_ticks())
            shutil.rmtree(work / f"e2e-ct-{n}")
            episodes = _episodes(app.data_dir, study_uid)
            if n and episodes != [len(study)]:
                # the idle timer completed the study while it still arrived: the results
                # that ended the wait cover only a part of it, so the time says nothing
                print(
                    f"  CT run {n}: split by the {idle} s idle timer into episodes of"
                    f" {episodes} instance(s); not counted",
                    flush=True,
                )
                split += 1
                continue
            if n:
                _wait_for_delivered_stage(app.data_dir)
                times.append(elapsed)
                models.append(_latest_stage_seconds(app.data_dir, "model"))
                stages = {s: _latest_stage_seconds(app.data_dir, s) for s in _CT_STAGES}
                print(
                    f"  CT run {n}: {elapsed:.2f} s after the last instance; "
                    + ", ".join(f"{s} {t:.2f} s" for s, t in stages.items())
                    + f"; not in a stage {elapsed - _outer_seconds(stages):.2f} s"
                    + f" (completion {_completion_seconds(app.data_dir):.2f} s of it);"
                    + f" the host's steal of the CPUs meanwhile {stolen:.0%}",
                    flush=True,
                )
                print(f"    between the stages: {_gaps(app.data_dir, seen_at)}", flush=True)
                for line in _job_log_lines(app.log_path, app.data_dir):
                    print(f"    {line}", flush=True)
                print(
                    "    after the model: its results stored in the PACS"
                    f" {_after_model_seconds(app.data_dir, seen_at):.2f} s later; the PACS's"
                    f" own CPU for storing them {pacs_cpu:.2f} s",
                    flush=True,
                )
    finally:
        app.stop()
        orthanc.stop()
    if not times:
        raise RuntimeError(f"every CT run ({split}) was split by the idle timer")
    return [
        Row(
            f"end to end CT {len(ct)} (idle {idle} s)"
            + (f", {split} split run(s) left out" if split else ""),
            statistics.median(times),
            f"goal < 1 s + model ({statistics.median(models):.2f} s)",
            None,
        )
    ]


_CT_STAGES = ("pseudonymise", "model", "build_results", "reidentify", "deliver")
"""The stages a local algorithm's job records (``aifi_app/store/stage_times.py``)."""


def _queue_rows(data_dir: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the service's queue database, read-only (while the service runs)."""
    uri = f"file:{data_dir / 'aifi.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def _latest_stage_seconds(data_dir: Path, stage: str) -> float:
    """A stage time of the newest job that recorded it (``aifi_app/store/stage_times.py``)."""
    rows = _queue_rows(
        data_dir,
        "SELECT finished_at - started_at FROM job_stage_times WHERE stage = ?"
        " ORDER BY job_id DESC LIMIT 1",
        (stage,),
    )
    row = rows[0] if rows else None
    if row is None:
        raise RuntimeError(f"no job recorded a {stage} time")
    return float(row[0])


def _wait_for_job_end(data_dir: Path, job_id: int, timeout: float) -> str:
    """Job ``job_id``'s state once it is delivered or failed, read from the queue every
    0.1 s. Not ``aifi-app status``: each call starts a Python process (~0.3 s of CPU),
    and polled three times a second it took most of a core from the appliance measured
    (the pre-pseudonymiser's child, at the lowest priority, then built the SEG too late)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _queue_rows(data_dir, "SELECT state FROM jobs WHERE id = ?", (job_id,))
        if rows and rows[0][0] in ("delivered", "failed"):
            return str(rows[0][0])
        time.sleep(0.1)
    raise RuntimeError(f"job {job_id}'s results were not delivered in time")


def _wait_for_delivered_stage(data_dir: Path, timeout: float = 30.0) -> None:
    """Until the newest job recorded its ``deliver`` stage: its results may be seen in
    the PACS (sent early) before the dispatcher records it, and the stage figures would
    then show the previous job's."""
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT COUNT(*) FROM job_stage_times WHERE stage = 'deliver'"
        " AND job_id = (SELECT MAX(id) FROM jobs)"
    )
    while not _queue_rows(data_dir, sql)[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError("the newest job recorded no deliver stage")
        time.sleep(0.02)


def _stage_at(data_dir: Path, moment: float) -> str:
    """The recorded stage(s) of the newest job in progress at ``moment`` (``time.time()``),
    or where the moment lies before, between or after them."""
    rows = _queue_rows(
        data_dir,
        "SELECT stage, started_at, finished_at FROM job_stage_times"
        " WHERE job_id = (SELECT MAX(job_id) FROM job_stage_times) ORDER BY started_at",
    )
    inside = [str(r[0]) for r in rows if r[1] <= moment <= r[2]]
    if inside:
        return " in ".join(reversed(inside))
    before = [str(r[0]) for r in rows if r[2] < moment]
    return f"the time after {before[-1]}" if before else "receiving (before pseudonymise)"


def _outer_seconds(stages: dict[str, float]) -> float:
    """The stages' total: ``reidentify`` runs inside ``build_results``, counted once."""
    return sum(t for s, t in stages.items() if s != "reidentify")


def _gaps(data_dir: Path, seen_at: float) -> str:
    """The newest job's times outside its recorded stages, in order: the last instance ->
    completion -> the first stage, between the stages, the last stage -> its results seen
    in the PACS (``seen_at``, ``time.time()``)."""
    (study,) = _queue_rows(
        data_dir,
        "SELECT s.last_received_at, s.completed_at FROM studies s"
        " JOIN jobs j ON j.study_id = s.id WHERE j.id = (SELECT MAX(job_id) FROM"
        " job_stage_times)",
    )
    rows = _queue_rows(
        data_dir,
        "SELECT stage, started_at, finished_at FROM job_stage_times"
        " WHERE job_id = (SELECT MAX(job_id) FROM job_stage_times)"
        " AND stage != 'reidentify' ORDER BY started_at",
    )
    parts = [f"completion {study[1] - study[0]:.3f}"]
    previous, end = "completion", float(study[1])
    for stage, started, finished in rows:
        parts.append(f"{previous} -> {stage} {started - end:.3f}")
        previous, end = str(stage), float(finished)
    parts.append(f"{previous} -> seen {seen_at - end:.3f} s")
    return ", ".join(parts)


def _job_log_lines(log_path: Path, data_dir: Path) -> list[str]:
    """The service's log lines about the newest job before its model (``job N: ...``:
    what its pseudonymise step linked, made and waited for, and its hand-over)."""
    (job,) = _queue_rows(data_dir, "SELECT MAX(job_id) FROM job_stage_times")
    marker = f"job {job[0]}: "
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line[line.index(marker) :] for line in text.splitlines() if marker in line]


def _after_model_seconds(data_dir: Path, seen_at: float) -> float:
    """The newest job's model end -> its results seen in the PACS (``seen_at``,
    ``time.time()``): building, re-identifying, writing and delivering them, however they
    overlap."""
    (row,) = _queue_rows(
        data_dir,
        "SELECT finished_at FROM job_stage_times WHERE stage = 'model'"
        " AND job_id = (SELECT MAX(job_id) FROM job_stage_times)",
    )
    return seen_at - float(row[0])


def _completion_seconds(data_dir: Path) -> float:
    """The newest study's last instance -> the worker marked it complete (idle timer
    included)."""
    rows = _queue_rows(
        data_dir, "SELECT completed_at - last_received_at FROM studies ORDER BY id DESC LIMIT 1"
    )
    row = rows[0] if rows else None
    return float(row[0]) if row is not None and row[0] is not None else float("nan")


def _episodes(data_dir: Path, study_uid: str) -> list[int]:
    """The instance counts of the study's episodes in the queue (one when the idle timer
    did not split it)."""
    rows = _queue_rows(
        data_dir,
        "SELECT instance_count FROM studies WHERE study_uid = ? ORDER BY episode",
        (study_uid,),
    )
    return [int(r[0]) for r in rows]


def _study_uid(path: Path) -> object:
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True).StudyInstanceUID


def _find(orthanc: object, study_uid: str) -> list[str]:
    found: list[str] = orthanc.post(  # type: ignore[attr-defined]
        "/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    )
    return found


LATER_CTS = 5
"""CTs the memory benchmark sends after the first, one after the other, each received and
its results delivered before the next: the appliance as it runs for days (highdicom and
SciPy loaded in the service, the child's SEG builder warm), not only just started. Five,
not two: with two, a growth of 3.6 MB a CT (caches kept across studies, bounded only at
20,000 entries) stayed under the goal; twelve CTs showed it (bench/README.md)."""


def memory(work: Path, ct: list[Path], later_cts: int = LATER_CTS) -> list[Row]:
    """Peak memory of the appliance while it receives a CT, measures its lung volume
    (ct-lung-volume, routed as in :func:`end_to_end_ct`) and delivers its SR and SEG to
    the PACS: its whole process tree's (the service, the fork server and resource
    tracker, the receivers, the pre-pseudonymiser's child) proportional set size, the
    goal's figure, sampled every 20 ms (:class:`bench.process_tree.TreePeak`), for the
    first CT after the start and for ``later_cts`` more (fresh UIDs, each made just before
    it is sent and deleted after it: a long run, ``--memory-cts``, needs no more disk),
    the highest of theirs; and the service's own peak resident memory (VmHWM) over all of
    them, with the tree's summed RSS beside it."""
    orthanc = start_orthanc(work / "orthanc-memory", nodelay=False)
    app = ApplianceProcess(
        work / "memory",
        pacs=(orthanc.aet, orthanc.dicom_port),
        idle_seconds=0.5,
        extra_toml=CT_ROUTE,
    ).start()
    peaks: list[TreePeak] = []
    try:
        baseline = app.rss_bytes()
        assert app.proc is not None
        for n in range(1, later_cts + 2):
            if n > 1:
                time.sleep(2.0)  # the previous job's idle step done (heap given back)
            study = ct if n == 1 else data.make_ct(work / f"memory-ct-{n}", len(ct))
            with TreePeak(app.proc.pid) as tree:
                concurrent_storescu([study], app.port, app.ae_title)
                state = _wait_for_job_end(app.data_dir, n, timeout=600)
            if state != "delivered":
                raise RuntimeError(f"CT {n}'s job ended {state}: {app.status()['jobs'][:1]}")
            peaks.append(tree)
            if n > 1:
                shutil.rmtree(study[0].parent, ignore_errors=True)
            stage = _stage_at(app.data_dir, tree.root_peak_at)
            print(
                f"  memory, CT {n}: tree's peak PSS {tree.peak_pss_bytes / 1e6:.0f} MB;"
                f" service's largest sampled RSS {tree.root_peak_bytes / 1e6:.0f} MB"
                f" during {stage}; the tree at its PSS peak (RSS / PSS):",
                flush=True,
            )
            for name, rss, pss in tree.at_pss_peak:
                print(f"    {name:<32} {rss / 1e6:6.0f} MB / {pss / 1e6:4.0f} MB", flush=True)
            for line in _job_log_lines(app.log_path, app.data_dir):
                if "SEG" in line:  # built while the model ran, or after it
                    print(f"    {line}", flush=True)
        peak = app.peak_rss_bytes()
    finally:
        app.stop()
        orthanc.stop()
        for leftover in work.glob("memory-ct-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    print(
        "  memory, the tree's peak PSS CT by CT: "
        + ", ".join(f"{t.peak_pss_bytes / 1e6:.0f}" for t in peaks)
        + " MB",
        flush=True,
    )
    first, rest = peaks[0], peaks[1:]
    highest = max(rest, key=lambda t: t.peak_pss_bytes)
    return [
        Row(
            f"peak PSS, whole appliance, 1st CT ({first.peak_processes} proc.)",
            first.peak_pss_bytes / 1e6,
            "goal < 300 MB",
            None,
            unit="MB",
        ),
        Row(
            f"peak PSS, whole appliance, CT 2-{len(peaks)}",
            highest.peak_pss_bytes / 1e6,
            "goal < 300 MB",
            None,
            unit="MB",
        ),
        Row(
            f"peak RSS, service (idle {baseline / 1e6:.0f} MB)",
            peak / 1e6,
            f"tree's RSS summed {max(t.peak_bytes for t in peaks) / 1e6:.0f} MB",
            None,
            unit="MB",
        ),
    ]


def startup(work: Path, runs: int) -> list[Row]:
    """Launch of ``aifi-app serve`` to its port accepting connections."""
    app = ApplianceProcess(work / "startup", pacs=None)
    app.start()  # the first start makes the database and the key; not measured
    app.stop()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        app.start()
        times.append(time.perf_counter() - started)
        app.stop()
    return [Row("start-up to accepting associations", statistics.median(times), "goal < 2 s", None)]
