"""Crash reports (no PHI) from any thread and the main loop, and the health check's exit
codes (0 healthy, 1 degraded, 2 down) as monitoring sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app import health
from aifi_app.cli import main
from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.crash import CrashHandler
from aifi_app.service import Appliance
from aifi_app.store import audit
from tests.helpers.ports import free_port

MARKER = "Jansen^Pieternella-PHI-0712"


def _settings(tmp_path: Path, pacs_port: int | None = None) -> Settings:
    nodes = (RemoteNode("pacs", "PACS", "127.0.0.1", pacs_port),) if pacs_port else ()
    return Settings(
        node=NodeSettings(port=0),
        remote_nodes=nodes,
        completion=CompletionSettings(idle_seconds=0.0),
        delivery=DeliverySettings(pacs="pacs" if pacs_port else ""),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    appliance = Appliance(_settings(tmp_path), secret_for=lambda _: b"k" * 32)
    appliance.start()
    yield appliance
    appliance.stop()


def _leaky() -> None:
    patient_name = MARKER  # a local holding patient data: must not reach the report
    raise ValueError(f"cannot parse {patient_name}")


def _assert_clean_report(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8")
    assert MARKER not in text and "Pieternella" not in text
    assert path.stat().st_mode & 0o777 == 0o600
    data: dict[str, object] = json.loads(text)
    return data


def test_thread_crash_writes_a_report_and_an_audit_entry(app: Appliance) -> None:
    thread = threading.Thread(target=_leaky, name="aifi-test-thread")
    thread.start()
    thread.join()
    (path,) = (app.data_dir / "crash").iterdir()
    report = _assert_clean_report(path)
    assert report["exception_type"] == "builtins.ValueError"
    assert report["thread"] == "aifi-test-thread"
    frames = report["frames"]
    assert isinstance(frames, list) and frames[-1]["function"] == "_leaky"
    assert set(frames[-1]) == {"file", "line", "function"}
    assert "aifi-app" in report["versions"]  # type: ignore[operator]
    rows = app.db.query("SELECT detail FROM audit_events WHERE event = 'crash'")
    assert len(rows) == 1 and "ValueError" in rows[0]["detail"] and MARKER not in rows[0]["detail"]
    # a crash since start degrades the health
    result = health.check(app.db, app.data_dir, disk_low_bytes=0)
    assert result["exit_code"] == health.DEGRADED
    assert any("crash report" in r for r in result["reasons"])


def test_main_loop_crash_in_a_process(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from aifi_app.crash import CrashHandler\n"
        f"CrashHandler(Path(sys.argv[1])).install()\n"
        f"def parse():\n    name = {MARKER!r}\n    raise KeyError(name)\n"
        "parse()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert MARKER not in proc.stderr and "unhandled KeyError" in proc.stderr
    (path,) = (tmp_path / "crash").iterdir()
    report = _assert_clean_report(path)
    assert report["thread"] == "main" and report["exception_type"] == "builtins.KeyError"


def test_chained_exceptions_give_types_only(tmp_path: Path) -> None:
    handler = CrashHandler(tmp_path)
    try:
        try:
            _leaky()
        except ValueError as inner:
            raise RuntimeError(MARKER) from inner
    except RuntimeError as exc:
        path = handler.handle(exc, "worker")
    assert path is not None
    report = _assert_clean_report(path)
    assert report["caused_by"] == ["ValueError"]


def test_healthy_then_down_after_stop(tmp_path: Path) -> None:
    app = Appliance(_settings(tmp_path), secret_for=lambda _: b"k" * 32)
    data = ["--data-dir", str(app.data_dir)]
    assert main(["status", "--json", *data]) == health.DOWN  # never ran
    app.start()
    try:
        result = health.check(app.db, app.data_dir, disk_low_bytes=0)
        assert result == {"status": "healthy", "exit_code": 0, "reasons": []}
        assert main(["status", "--json", *data]) in (health.HEALTHY, health.DEGRADED)
        # monitoring of a machine with little disk left
        low = health.check(app.db, app.data_dir, disk_low_bytes=1 << 62)
        assert low["exit_code"] == health.DEGRADED and "low disk space" in low["reasons"][0]
        # a heartbeat that stopped coming (the process hangs or was killed)
        stale = health.check(app.db, app.data_dir, now=2e10, disk_low_bytes=0)
        assert stale["exit_code"] == health.DOWN
    finally:
        app.stop()
    assert health.check(app.db, app.data_dir)["status"] == "down"
    assert main(["status", *data]) == health.DOWN


def test_unreachable_pacs_and_failed_jobs_degrade(tmp_path: Path) -> None:
    app = Appliance(_settings(tmp_path, pacs_port=free_port()), secret_for=lambda _: b"k" * 32)
    app.start()
    try:
        assert health._pacs_reachable(app.settings) is False
        app.heartbeat.pacs_reachable = False
        app.heartbeat.beat()
        result = health.check(app.db, app.data_dir, disk_low_bytes=0)
        assert result["exit_code"] == health.DEGRADED
        assert "the PACS does not accept connections" in result["reasons"]
        with app.db.transaction() as conn:
            conn.execute(
                "INSERT INTO studies (id, episode, kind, study_uid, state, calling_ae,"
                " first_received_at, last_received_at, idle_seconds, complete_due_at)"
                " VALUES (1, 1, 'normal', '1.2.3', 'routed', 'X', 0, 0, 0, 0)"
            )
            conn.execute(
                "INSERT INTO jobs (id, study_id, algorithm_id, route, state, created_at,"
                " updated_at) VALUES (1, 1, 'a', 'r', 'failed', 0, 0)"
            )
            audit.record(conn, "job", "test")
        result = health.check(app.db, app.data_dir, disk_low_bytes=0)
        assert "1 job(s) failed" in result["reasons"]
    finally:
        app.stop()


def test_heartbeat_file_is_private(app: Appliance) -> None:
    mode = (app.data_dir / health.HEARTBEAT_FILE).stat().st_mode
    assert mode & 0o077 == 0
    assert json.loads((app.data_dir / health.HEARTBEAT_FILE).read_text())["pid"] == os.getpid()
