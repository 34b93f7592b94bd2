"""The service's children: forked by a fork server on Linux, with the service's settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aifi_app.child_processes import child_context, child_process, start_method
from tests.helpers import child_targets
from tests.helpers.processes import process_runs

LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize(
    ("platform", "methods", "expected"),
    [
        ("linux", ["fork", "spawn", "forkserver"], "forkserver"),
        ("linux", ["fork", "spawn"], "spawn"),
        ("win32", ["spawn"], "spawn"),
        ("darwin", ["spawn", "fork", "forkserver"], "spawn"),
    ],
)
def test_the_start_method_is_the_fork_server_on_linux_only(
    platform: str, methods: list[str], expected: str
) -> None:
    assert start_method(platform, methods) == expected


def test_this_machine_uses_the_method_chosen_for_it() -> None:
    import multiprocessing

    assert child_context().get_start_method() == start_method(
        sys.platform, multiprocessing.get_all_start_methods()
    )


def _report(variable: str, name: str = "t") -> dict[str, object]:
    context = child_context()
    ours, theirs = context.Pipe(duplex=False)
    process = child_process(context, child_targets.report, (theirs, variable), name=name)
    process.start()
    theirs.close()
    try:
        assert ours.poll(60)
        seen: dict[str, object] = ours.recv()
    finally:
        process.join(30)
        ours.close()
    assert process.exitcode == 0
    return seen


def test_a_child_sees_the_environment_as_it_is_when_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fork server (started by the first child) keeps the environment it started
    with; a child started after a variable changed sees the change, as a spawned child
    would, and one removed is gone."""
    variable = "AIFI_CHILD_PROCESSES_TEST"
    monkeypatch.setenv(variable, "first")
    assert _report(variable)["value"] == "first"  # (the fork server runs from here on)
    monkeypatch.setenv(variable, "second")
    assert _report(variable)["value"] == "second"
    monkeypatch.delenv(variable)
    assert _report(variable)["value"] is None


@pytest.mark.skipif(not LINUX, reason="reads the umask from /proc")
def test_a_child_has_the_umask_of_the_service_when_it_starts() -> None:
    """The fork server keeps the umask it started with; a child takes the service's."""
    _report("HOME")  # the fork server runs
    before = os.umask(0o027)
    try:
        assert _report("HOME")["umask"] == 0o027
        os.umask(0o077)
        assert _report("HOME")["umask"] == 0o077
    finally:
        os.umask(before)


@pytest.mark.skipif(not LINUX, reason="process names from /proc")
def test_a_child_shows_its_own_name_not_the_fork_servers() -> None:
    """``ps`` and ``top`` tell the children apart: each shows its process's name (cut
    to the kernel's 15 bytes), not the fork server's."""
    assert _report("HOME", name="aifi-receiver")["comm"] == "aifi-receiver"
    assert _report("HOME", name="aifi-prepseudo-long-name")["comm"] == "aifi-prepseudo-"


@pytest.mark.skipif(not LINUX, reason="the fork server is used on Linux only")
def test_a_child_is_forked_with_the_childrens_modules_imported_and_frozen() -> None:
    """Forked by the fork server (not by this process), with the children's modules
    imported before it was forked (shared with its siblings) and frozen for the
    collector, which runs."""
    seen = _report("HOME")
    assert seen["preloaded"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
    assert seen["gc_enabled"] is True
    assert seen["ppid"] != os.getpid()


def test_a_failpoint_armed_after_the_fork_server_started_kills_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``AIFI_FAILPOINTS`` is read on import; the fork server imported the module before
    the variable was set, yet the child dies at the point (the crash tests rely on it),
    and a child started once it is unset passes the point."""
    _report("HOME")  # the fork server runs
    context = child_context()
    point = "child_processes.test_point"
    monkeypatch.setenv("AIFI_FAILPOINTS", point)
    armed = child_process(context, child_targets.reach_failpoint, (point,), name="t")
    armed.start()
    armed.join(60)
    assert armed.exitcode == -signal.SIGKILL
    monkeypatch.delenv("AIFI_FAILPOINTS")
    unarmed = child_process(context, child_targets.reach_failpoint, (point,), name="t")
    unarmed.start()
    unarmed.join(60)
    assert unarmed.exitcode == 0


_SERVICE = """
import sys, time
sys.path[:0] = {paths!r}
from aifi_app.child_processes import child_context, child_process
from tests.helpers import child_targets
import os
context = child_context()
child = child_process(
    context, child_targets.wait_for_service_end, (os.getpid(), {ended!r}), name="t"
)
child.start()
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_a_child_sees_the_service_end_though_its_parent_is_the_fork_server(
    tmp_path: Path,
) -> None:
    """A "service" starts a child and is killed (SIGKILL): the child, whose parent is the
    fork server on Linux, sees it gone (:func:`service_alive`) and ends."""
    ended = tmp_path / "ended.json"
    service = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SERVICE).format(paths=sys.path, ended=str(ended))],
        stdout=subprocess.PIPE,
        cwd=Path.cwd(),
        text=True,
    )
    try:
        assert service.stdout is not None
        child = int(service.stdout.readline())
        time.sleep(0.3)
        assert not ended.exists()  # the service runs: the child waits
    finally:
        service.kill()
        service.wait(30)
        if service.stdout is not None:
            service.stdout.close()
    deadline = time.monotonic() + 30
    while not ended.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(ended.read_text()) == {"service_alive": False}
    while process_runs(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_runs(child)


def test_a_childs_log_records_are_written_by_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child's records reach the service's loggers (its file and stderr), at the
    service's level, under their own names; a fault's record without the exception's
    message (only its type, as the appliance logs every fault)."""
    import logging

    from aifi_app import child_logging

    caplog.set_level(logging.INFO)
    context = child_context()
    process = child_process(context, child_targets.log_records, ("m-1",), name="t")
    process.start()
    process.join(60)
    assert process.exitcode == 0
    child_logging.stop()  # what the children sent, written (as at the service's exit)
    seen = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if "m-1" in r.msg]
    assert seen[:2] == [
        ("aifi_app.pipeline.pre_pseudonymise", "INFO", "m-1 info"),
        ("aifi_app.dicom_node.receiver_child", "WARNING", "m-1 warning"),
    ]
    (fault,) = seen[2:]
    assert fault[:2] == ("aifi_app.pipeline.pre_pseudonymise", "ERROR")
    assert "ValueError" in fault[2] and "must not be logged" not in fault[2]
    assert {r.processName for r in caplog.records if "m-1" in r.msg} == {"t"}
