"""The peers the appliance is measured against: DCMTK storescp and Orthanc, by process id.

DCMTK (and Orthanc, built on it) leave Nagle's algorithm on unless ``TCP_NODELAY=1`` is in
their environment: ``nodelay=True`` is the fastest set-up (for ingest, where they are the
competitors), ``nodelay=False`` is how hospitals run them (for send, where they are the
receiving PACS).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench.process_tree import machine_ticks, steal_share
from tests.helpers.orthanc import Orthanc
from tests.helpers.ports import free_port, wait_for_port

STORESCP = "/usr/bin/storescp"
STORESCU = "/usr/bin/storescu"


def dcmtk_env(nodelay: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


class StoreSCP:
    """DCMTK storescp writing every instance to ``folder`` (``fork``: one process per
    association, as sites run it for concurrent senders)."""

    def __init__(self, folder: Path, *, nodelay: bool, fork: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.ae_title = "STORESCP"
        self.nodelay = nodelay
        self.fork = fork
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [STORESCP, "-aet", self.ae_title, "-pm", "+xa", "-od", str(self.folder)]
        if self.fork:
            args.append("--fork")
        self.proc = subprocess.Popen(
            [*args, str(self.port)],
            env=dcmtk_env(self.nodelay),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 20)
        return self

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def start_orthanc(workdir: Path, *, nodelay: bool) -> Orthanc:
    """Orthanc (own config: HTTP on localhost, DICOM from known modalities only)."""
    orthanc = Orthanc(
        workdir,
        {
            "storescu": ("STORESCU", "127.0.0.1", 104),
            "aifi": ("AIFI", "127.0.0.1", 104),
        },
    )
    orthanc.nodelay = nodelay
    return orthanc.start()


def clear_orthanc(orthanc: Orthanc) -> None:
    for study in orthanc.get("/studies"):
        orthanc.delete(f"/studies/{study}")


def wait_all(procs: list[subprocess.Popen[bytes]], limit: float) -> list[int]:
    """The exit codes of ``procs``, each waited for as it ends; any still running after
    ``limit`` seconds is killed. Not ``Popen.wait(timeout)``: it polls with sleeps of up
    to 50 ms, which added 0-50 ms to a figure (a radiograph study's 0.065 s read 0.065
    or 0.115 s, for our node and storescp alike)."""
    watchdog = threading.Timer(limit, lambda: [p.kill() for p in procs if p.poll() is None])
    watchdog.start()
    before = machine_ticks()
    try:
        return [p.wait() for p in procs]
    finally:
        watchdog.cancel()
        SEND_STEAL.append(steal_share(before, machine_ticks()))


SEND_STEAL: list[float] = []
"""The stolen share of the machine's CPU time during each :func:`wait_all`, in order (the
timed sends wait there): the ingest section prints it beside each run's ratios."""


def storescu(paths: list[Path] | Path, port: int, *, called: str, nodelay: bool = True) -> float:
    """Send with DCMTK storescu; returns the seconds it took (process start included)."""
    args = [STORESCU, "-aet", "STORESCU", "-aec", called, "-nh"]
    if isinstance(paths, Path):
        args += ["+sd", "+r", "127.0.0.1", str(port), str(paths)]
    else:
        args += ["127.0.0.1", str(port), *map(str, paths)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, env=dcmtk_env(nodelay), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    (code,) = wait_all([proc], 600)
    elapsed = time.perf_counter() - started
    if code:
        raise subprocess.CalledProcessError(code, args)
    return elapsed
