"""Where the pre-pseudonymising child process starts: at the lowest CPU priority first.

A spawned process imports the module of its target before it runs it, and
:mod:`aifi_app.pipeline.pre_pseudonymise` brings pydicom, the pseudonymiser and the queue
with it (about a second of CPU here), which at normal priority competes with the node's
receiving threads in the first second after a start. This module imports nothing heavy,
so the child lowers its priority before anything else and imports the loop afterwards.
(On Linux the child is forked by the fork server of :mod:`aifi_app.child_processes`,
which has imported the loop already: nothing is left to import.)

The priority (Linux): ``nice 19`` and the ``SCHED_IDLE`` policy. At ``nice 19`` alone the
child still holds a core for up to a scheduler slice when a receiving thread of the node
wakes (after a PDU or an fsync) and both cores are busy (``storescu`` on one, the child on
the other): the kernel's EEVDF scheduler lets the running task reach its fair share
before a woken one preempts it. A ``SCHED_IDLE`` task is preempted by any other task at
once. ``SCHED_IDLE`` would also put the child's disk writes in the idle I/O class (the
kernel derives the class from the policy), where a job that waits for a file the child
wrote could wait behind every other write for up to the I/O scheduler's aging time
(10 s with mq-deadline); so the I/O priority is set to what ``nice 19`` gave before:
best effort, level 7 (the lowest), and where that cannot be set (a machine whose
``ioprio_set`` number is not known here) the child stays at ``nice 19`` alone.

Two threads (Linux keeps a priority per thread): the child's own thread keeps the
priority it started with and runs the loop's control and the work done while no study
arrives (a completed study's images for its waiting job, a job's help request); a
second thread lowers its priority as above first thing and does everything else, one
callable at a time (:class:`LowPriorityThread`): the imports, every pass while a study
arrives, the SEG built ahead while a model runs, the empty files made ahead. At
``SCHED_IDLE`` the child got 10-20 % of a core once a CT completed and its job's own
threads, the read-ahead and the disk's writeback ran (a batch of 24 slices took
0.2-0.34 s for 0.04-0.07 s of CPU), while the job waited for those images; a process
cannot leave ``SCHED_IDLE`` without ``CAP_SYS_NICE``, but a thread that never entered
it need not. Where a priority is the process's (not Linux), the whole child is lowered.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

IO_BEST_EFFORT_LOWEST = 7
"""Best-effort I/O priority level of a ``nice 19`` process (``(19 + 20) // 5``)."""
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1
IOPRIO_SET_SYSCALL = {"x86_64": 251, "aarch64": 30}
"""``ioprio_set``'s number by machine (the C library has no wrapper, Python no call)."""


def lower_priority() -> None:
    """The lowest CPU priority for this process (``nice 19``; on Linux also ``SCHED_IDLE``,
    once its I/O is pinned to the best-effort class, see the module's description), so
    that receiving comes first; where the OS has no ``nice`` (Windows) nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is None or not _best_effort_io():
        return  # nice 19 alone: its I/O stays best effort
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, idle, os.sched_param(0))


def _best_effort_io() -> bool:
    """Set this process's I/O priority to best effort, the lowest level (Linux); True
    when done."""
    import ctypes  # small; only where SCHED_IDLE exists
    import platform

    number = IOPRIO_SET_SYSCALL.get(platform.machine())
    if number is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | IO_BEST_EFFORT_LOWEST
        return bool(libc.syscall(number, IOPRIO_WHO_PROCESS, 0, value) == 0)
    except (OSError, AttributeError):
        return False


class LowPriorityThread:
    """A thread of its own at the lowest priority (:func:`lower_priority`, lowered by the
    thread itself, first thing) that runs the callables :meth:`run` hands it, one at a
    time, while the caller waits (the caller's thread keeps its priority)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], threading.Event, list[Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="aifi-prepseudo-low", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        lower_priority()
        while (job := self._jobs.get()) is not None:
            call, done, box = job
            try:
                box.append((True, call()))
            except BaseException as exc:  # raised again in the caller's thread
                box.append((False, exc))
            done.set()

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` in the low-priority thread; its result, or its exception raised."""
        done = threading.Event()
        box: list[Any] = []
        self._jobs.put((call, done, box))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    @property
    def native_id(self) -> int | None:
        """The thread's id for the OS (its priority can be read by it)."""
        return self._thread.native_id

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def child_main(db_path: str, data_dir: str, secret: bytes, inbox: Any, parent_pid: int) -> None:
    """The child process: start its low-priority thread, import the loop in it, then run
    the loop's control here (see the module's description)."""
    low = LowPriorityThread()
    if not _per_thread_priority():
        lower_priority()  # the priority is the process's: all of it the lowest
    run_child = low.run(_import_loop)  # heavy: at the lowest priority
    try:
        run_child(db_path, data_dir, secret, inbox, parent_pid, low=low.run)
    finally:
        low.stop()


def _per_thread_priority() -> bool:
    """True where each thread has its own nice value and scheduling policy (Linux)."""
    return sys.platform.startswith("linux")


def _import_loop() -> Callable[..., None]:
    from aifi_app.pipeline.pre_pseudonymise import run_child

    return run_child
