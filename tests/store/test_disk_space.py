from __future__ import annotations

from pathlib import Path

from aifi_app.store.disk_space import MIB, DiskFloor, DiskGuard, DiskReading, read_disk


def test_floor_is_the_larger_of_megabytes_and_percent() -> None:
    assert DiskFloor(500, 0).floor_bytes(100_000 * MIB) == 500 * MIB
    assert DiskFloor(500, 10).floor_bytes(100_000 * MIB) == 10_000 * MIB
    assert DiskFloor(0, 0).floor_bytes(100 * MIB) == 0


def test_shortfall_in_words_only_below_the_floor() -> None:
    floor = DiskFloor(min_free_mb=100)
    assert floor.shortfall(DiskReading(100 * MIB, 1000 * MIB)) is None
    reason = floor.shortfall(DiskReading(99 * MIB, 1000 * MIB))
    assert reason == "free disk space 99 MB is below the floor of 100 MB"


def test_guard_status_warns_and_reads_the_real_volume(tmp_path: Path) -> None:
    real = read_disk(tmp_path)
    assert 0 < real.free_bytes <= real.total_bytes
    readings = [DiskReading(50 * MIB, 1000 * MIB)]
    guard = DiskGuard(tmp_path, DiskFloor(min_free_mb=100), reader=lambda p: readings[-1])
    status = guard.status()
    assert status["below_floor"] is True
    assert status["floor_bytes"] == 100 * MIB
    assert status["warning"] == (
        "free disk space 50 MB is below the floor of 100 MB: new studies are refused"
    )
    readings.append(DiskReading(500 * MIB, 1000 * MIB))
    assert guard.shortfall() is None
    assert guard.status()["warning"] is None


def test_unreadable_volume_counts_as_below_the_floor(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path / "missing", DiskFloor(min_free_mb=1))
    assert guard.shortfall() is not None
    assert guard.status()["below_floor"] is True


def test_status_snapshot_carries_the_disk_warning(tmp_path: Path) -> None:
    from aifi_app.store.database import Database
    from aifi_app.store.status import queue_snapshot

    db = Database(tmp_path / "q.db")
    try:
        low = DiskGuard(tmp_path, DiskFloor(min_free_mb=100), lambda p: DiskReading(MIB, MIB * 10))
        snap = queue_snapshot(db, disk=low)
        assert snap["disk"]["below_floor"] is True
        assert snap["warnings"] == [snap["disk"]["warning"]]
        fine = DiskGuard(
            tmp_path, DiskFloor(min_free_mb=1), lambda p: DiskReading(MIB * 5, MIB * 10)
        )
        assert queue_snapshot(db, disk=fine)["warnings"] == []
        assert "disk" not in queue_snapshot(db)  # callers that do not ask
    finally:
        db.close()
