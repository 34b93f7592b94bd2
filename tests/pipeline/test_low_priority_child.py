"""The pre-pseudonymising child lowers its priority before it imports anything heavy."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading

import pytest

from aifi_app.pipeline.low_priority_child import IOPRIO_SET_SYSCALL, LowPriorityThread


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_entry_module_imports_nothing_heavy() -> None:
    loaded = _python(
        "import sys, aifi_app.pipeline.low_priority_child;"
        " heavy = {'pydicom', 'numpy', 'aifi_app.pipeline.pre_pseudonymise'};"
        " print(sorted(heavy & set(sys.modules)))"
    )
    assert loaded == "[]"


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no nice() on this OS")
def test_lower_priority_gives_the_lowest_cpu_priority() -> None:
    niceness = _python(
        "import os; from aifi_app.pipeline.low_priority_child import lower_priority;"
        " lower_priority(); print(os.nice(0))"
    )
    assert niceness == "19"


@pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE")
    or platform.machine() not in IOPRIO_SET_SYSCALL
    or shutil.which("ionice") is None,
    reason="no SCHED_IDLE, no known ioprio_set or no ionice (util-linux) here",
)
def test_on_linux_the_child_yields_the_cpu_at_once_but_keeps_best_effort_io() -> None:
    """SCHED_IDLE (any other task preempts it on waking); its I/O stays best effort at
    the lowest level, as at nice 19 (SCHED_IDLE alone would make it the idle I/O class)."""
    out = _python(
        "import os, subprocess; from aifi_app.pipeline.low_priority_child import lower_priority;"
        " lower_priority();"
        " io = subprocess.run(['ionice', '-p', str(os.getpid())], capture_output=True,"
        " text=True, check=True).stdout.strip();"
        " print(os.sched_getscheduler(0) == os.SCHED_IDLE, io)"
    )
    assert out == "True best-effort: prio 7"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a priority per thread: Linux")
def test_the_low_priority_thread_runs_calls_at_the_lowest_priority_the_caller_keeps_its_own() -> (
    None
):
    """The child's own thread keeps its priority (the work for a waiting job); the calls
    it hands over run in a thread at the lowest (nice 19, SCHED_IDLE where the I/O
    priority can be pinned), and their results and errors come back."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    low = LowPriorityThread()
    try:
        tid = low.run(threading.get_native_id)
        assert tid == low.native_id and tid != threading.get_native_id()
        assert low.run(lambda: os.getpriority(os.PRIO_PROCESS, 0)) == 19
        if platform.machine() in IOPRIO_SET_SYSCALL:
            assert os.sched_getscheduler(tid) == os.SCHED_IDLE
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
        with pytest.raises(ZeroDivisionError):
            low.run(lambda: 1 // 0)
        assert low.run(lambda: "still serving") == "still serving"
    finally:
        low.stop()
