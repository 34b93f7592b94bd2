"""The free-space floor on a real, small filesystem: a 32 MB tmpfs holds the data
directory of ``aifi-app serve``; DCMTK ``storescu`` sends 1 MB images until the floor
is reached.

Needs root (mounting a tmpfs); skipped where it cannot mount one. The same behaviour is
tested with an injected reading in ``tests/dicom_node/test_storage_scp.py``.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.tools import acknowledged_files, start_storescu_verbose, storescu

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "vol"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_floor_refuses_before_anything_is_half_written(small_volume: Path, tmp_path: Path) -> None:
    filler = small_volume / "filler.bin"
    filler.write_bytes(b"\0" * (8 << 20))
    app = ApplianceProcess(
        small_volume / "app",
        pacs=None,
        idle_seconds=3600,  # nothing is processed while the volume fills
        storage_toml="min_free_mb = 12",
    )
    study = chest_radiograph(demo_patient(1), phantom_chest(size=1024))
    files = [write(study, tmp_path / "modality")]
    for n in range(1, 20):
        ds = chest_radiograph(
            demo_patient(1), phantom_chest(size=1024, seed=n), study_uid=study.StudyInstanceUID
        )
        files.append(write(ds, tmp_path / "modality"))
    app.start()
    try:
        modality = start_storescu_verbose(files, app.port)
        out, _ = modality.communicate(timeout=300)
        acked = acknowledged_files(out)
        assert 0 < len(acked) < len(files), out[-2000:]
        assert "Refused: OutOfResources" in out  # the C-STOREs past the floor: 0xA7xx
        # a refused instance's bytes are removed, so our own data never passes the floor;
        # when something else fills the volume, new associations are refused
        (small_volume / "other.bin").write_bytes(b"\0" * (4 << 20))
        refused = storescu(files[-1:], app.port, check=False)  # a new association
        assert "Rejected Transient" in refused.stdout + refused.stderr
        assert "Local Limit Exceeded" in refused.stdout + refused.stderr

        snap = app.status()
        assert snap["disk"]["below_floor"] is True
        (warning,) = snap["warnings"]
        assert "below the floor of 12 MB" in warning and "new studies are refused" in warning

        filler.unlink()  # space is freed: the node takes data again
        (small_volume / "other.bin").unlink()
        storescu(files[-1:], app.port)
        assert app.status()["warnings"] == []
    finally:
        assert app.stop() == 0

    db = sqlite3.connect(app.data_dir / "aifi.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = dict(db.execute("SELECT sop_instance_uid, path FROM instances").fetchall())
        events = [e for (e,) in db.execute("SELECT event FROM audit_events")]
        details = " ".join(d for (d,) in db.execute("SELECT detail FROM audit_events"))
    finally:
        db.close()
    expected = {dcmread(p).SOPInstanceUID for p in {*acked, files[-1]}}
    assert set(kept) == expected  # exactly what got success, nothing half-kept
    for path in kept.values():
        assert dcmread(app.data_dir / path).PixelData
    assert "store_refused" in events and "association_refused" in events
    assert "status 0xA700: free disk space" in details
    # nothing half-received is left (the empty files made ahead stay for the next start)
    assert [p for p in (app.data_dir / "incoming").iterdir() if p.stat().st_size] == []
