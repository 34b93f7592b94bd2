"""``aifi-app serve`` with its receiver processes (the default ``[node] receive_processes``):
four DCMTK associations at once are stored, and the service's stop leaves no process
behind (the receivers, the pre-pseudonymiser, multiprocessing's resource tracker)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from aifi_app.config.settings import NodeSettings
from aifi_app.sample_studies import ct_series, demo_patient, write
from bench.process_tree import descendants
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.processes import process_runs
from tests.helpers.tools import STORESCU, dcmtk_env

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


def _storescu(app: ApplianceProcess) -> list[str]:
    called, port = app.ae_title, str(app.port)
    return [str(STORESCU), "-aet", "STORESCU", "-aec", called, "-nh", "127.0.0.1", port]


def test_four_associations_into_the_service_and_no_process_left_after_stop(
    tmp_path: Path,
) -> None:
    assert NodeSettings().receive_processes >= 1  # the default this test is about
    paths = [write(ds, tmp_path / "ct") for ds in ct_series(demo_patient(1), 40, size=64)]
    app = ApplianceProcess(tmp_path / "app", pacs=None, idle_seconds=600).start()
    try:
        app.settle()  # the receivers have started (once the node was quiet) and settled
        assert app.proc is not None
        children = descendants(app.proc.pid)
        # the receivers, the pre-pseudonymiser and the resource tracker
        assert len(children) >= NodeSettings().receive_processes + 1
        senders = [
            subprocess.Popen(
                [*_storescu(app), *map(str, paths[n::4])],
                env=dcmtk_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n in range(4)
        ]
        assert [s.wait(120) for s in senders] == [0, 0, 0, 0]
        (study,) = app.status()["studies"]
        assert study["instance_count"] == 40
    finally:
        assert app.stop() == 0
    # the receivers and the pre-pseudonymiser are waited for by the stop; multiprocessing's
    # resource tracker ends when it reads the end of its pipe, just after the service
    deadline = time.monotonic() + 30
    while any(process_runs(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {p: _command(p) for p in children if process_runs(p)} == {}
