"""The pre-pseudonymising child lowers its priority before it imports anything heavy."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest

from aifi_app.pipeline.low_priority_child import IOPRIO_SET_SYSCALL


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
