"""Peak resident memory of a process and all its descendants, sampled from ``/proc``.

The service's own VmHWM misses work done in child processes (the pseudonymisation
workers, spawned per large study): :class:`TreePeak` samples the resident memory of the
whole tree every ``interval`` seconds and keeps the peak of the sum, and the highest
VmHWM each process reported while it was seen alive (a child that lives shorter than one
interval can still be missed by the sum, not by much: spawned workers live seconds).
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType


def _status_kb(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in kB; 0 when the process is gone."""
    return int(_status_field(pid, field) or 0)


def own_status_mb(field: str) -> float:
    """This process's ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in MiB."""
    return _status_kb(os.getpid(), field) / 1024


def _pss_kb(pid: int) -> int:
    """The process's proportional set size in kB (``/proc/PID/smaps_rollup``: each page
    shared with other processes counted as its share); 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def describe(pid: int, root: int) -> str:
    """A short name for a process of the tree: the service itself, multiprocessing's
    resource tracker or fork server, or another child by its ``comm`` name and pid."""
    if pid == root:
        return "service"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return f"pid {pid} (gone)"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "forkserver" in cmdline and _status_field(pid, "PPid") == str(root):
        return "fork server"  # (the children it forks have its command line too)
    return f"child {pid} ({comm})"


def _status_field(pid: int, field: str) -> str:
    """A ``/proc/PID/status`` field's first word; "" when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    return ""


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children and so on (from ``/proc/*/task/*/children``)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


class TreePeak:
    """Samples a process tree's resident memory on a thread while in the ``with`` block.

    ``peak_bytes``: the largest sum of VmRSS over the tree seen at one sample;
    ``peak_pss_bytes``: the largest sum of the tree's proportional set sizes at one sample
    (the memory the tree takes from the machine: the pages its processes share, e.g.
    Python's and the libraries' code, counted once);
    ``peak_processes``: the most processes in the tree at one sample;
    ``child_hwm_bytes``: the highest VmHWM any descendant reported;
    ``root_peak_bytes`` / ``root_peak_at``: the largest VmRSS of the process itself that
    a sample saw and when (``time.time()``), to tell which stage of a job it fell in;
    ``at_pss_peak``: each process's name, VmRSS and PSS in bytes at the sample with the
    largest summed PSS (what the peak is made of).
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self.peak_processes = 0
        self.child_hwm_bytes = 0
        self.root_peak_bytes = 0
        self.root_peak_at = 0.0
        self.at_pss_peak: list[tuple[str, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-peak", daemon=True)

    def sample(self) -> None:
        children = descendants(self.pid)
        rss = {p: _status_kb(p, "VmRSS") for p in (self.pid, *children)}
        if rss[self.pid] * 1024 > self.root_peak_bytes:
            self.root_peak_bytes, self.root_peak_at = rss[self.pid] * 1024, time.time()
        for child in children:
            self.child_hwm_bytes = max(self.child_hwm_bytes, _status_kb(child, "VmHWM") * 1024)
        self.peak_bytes = max(self.peak_bytes, sum(rss.values()) * 1024)
        pss = {p: _pss_kb(p) for p in rss}
        if sum(pss.values()) * 1024 > self.peak_pss_bytes:
            self.peak_pss_bytes = sum(pss.values()) * 1024
            self.at_pss_peak = [(describe(p, self.pid), rss[p] * 1024, pss[p] * 1024) for p in rss]
        self.peak_processes = max(self.peak_processes, 1 + len(children))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreePeak:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def pacs_store_cpu(pid: int) -> float:
    """CPU seconds so far of Orthanc's threads but its web server's (``civetweb-*``, which
    answer the bench's polling): for the CT, its storing of the results. The same SEG
    took Orthanc 0.18-0.75 s of CPU from one store to the next on the quiet 2-core
    machine (bench/README.md, the fifteenth session), the largest part of the spread of
    the CT's time after its model; this shows each run's. (A thread that ends takes its
    CPU with it; Orthanc's DICOM threads are a pool that lasts.)"""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        if not comm.startswith("civetweb"):
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU time since boot in clock ticks, all of it and the stolen part
    (``/proc/stat``: the time the hypervisor gave this VM's CPUs to others while it wanted
    them). A send during which the host takes a fifth of the CPUs runs about twice as
    long (bench/README.md, the sixteenth session)."""
    with Path("/proc/stat").open() as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields), fields[7]


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The stolen share of the machine's CPU time between two :func:`machine_ticks`."""
    total = after[0] - before[0]
    return (after[1] - before[1]) / total if total > 0 else 0.0
