"""The service (``aifi-app serve``) killed right after a C-STORE success keeps the instance.

The node's commits for received instances are not flushed one by one (the spool file is):
a SIGKILL loses none of them (they are in the operating system's hands), and a power cut
that takes the last ones leaves spool files that the next start records
(:mod:`aifi_app.dicom_node.spool_recovery`). The power cut's effect on the queue is made
by putting back a copy of the database taken before the instances arrived.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from aifi_app.dicom_node.spare_files import is_spare
from aifi_app.dicom_node.spool_recovery import MARKER_NAME
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]

DB_FILES = ("aifi.sqlite3", "aifi.sqlite3-wal", "aifi.sqlite3-shm")


def _studies(tmp_path: Path) -> tuple[list[Path], set[str]]:
    datasets = [chest_radiograph(demo_patient(n), phantom_chest(seed=n)) for n in (1, 2)]
    paths = [write(ds, tmp_path / f"study{n}") for n, ds in enumerate(datasets)]
    return paths, {str(ds.SOPInstanceUID) for ds in datasets}


def _queued(data_dir: Path) -> dict[str, str]:
    """With the service dead: SOP Instance UID -> calling AE of every queued instance."""
    db = sqlite3.connect(data_dir / "aifi.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(db.execute("SELECT sop_instance_uid, calling_ae FROM instances"))
    finally:
        db.close()


def test_sigkill_right_after_success_loses_nothing(tmp_path: Path) -> None:
    paths, sent = _studies(tmp_path)
    app = ApplianceProcess(tmp_path / "app", pacs=None, idle_seconds=600).start()
    try:
        storescu(paths, app.port)  # check=True: success for every instance
        assert app.proc is not None
        dead = app.proc.pid
        app.kill()
        assert set(_queued(app.data_dir)) == sent
        # the instances arrived in files made ahead: only empty ones are left
        left = list((app.data_dir / "incoming").iterdir())
        assert left and all(is_spare(p) and p.name.startswith(f"{dead}-") for p in left)
        assert all(p.stat().st_size == 0 and p.stat().st_nlink == 1 for p in left)
        app.start()
        studies = app.status()["studies"]
        assert sum(s["instance_count"] for s in studies) == len(sent)
    finally:
        app.stop()


def test_rows_a_power_cut_took_are_recorded_from_the_spool_at_restart(tmp_path: Path) -> None:
    paths, sent = _studies(tmp_path)
    app = ApplianceProcess(tmp_path / "app", pacs=None, idle_seconds=600).start()
    before = tmp_path / "db-before"
    try:
        assert app.stop() == 0
        assert not (app.data_dir / MARKER_NAME).exists()  # a clean stop
        before.mkdir()
        for name in DB_FILES:
            if (app.data_dir / name).exists():
                shutil.copy2(app.data_dir / name, before / name)

        app.start()
        storescu(paths, app.port)
        app.kill()
        # the power cut: the queue as the disk had it before the instances came
        for name in DB_FILES:
            (app.data_dir / name).unlink(missing_ok=True)
            if (before / name).exists():
                shutil.copy2(before / name, app.data_dir / name)
        assert _queued(app.data_dir) == {}
        assert (app.data_dir / MARKER_NAME).exists()

        app.start()
        studies = app.status()["studies"]
        assert sum(s["instance_count"] for s in studies) == len(sent)
        assert app.stop() == 0
        assert _queued(app.data_dir) == dict.fromkeys(sent, "STORESCU")
    finally:
        app.stop()
