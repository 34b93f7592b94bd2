"""Spool retention: received images of finished studies are removed after a set time.

Queue rows, audit events and the pseudonym mapping stay; only image files go.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from aifi_app.store import audit
from aifi_app.store.database import Database, now

log = logging.getLogger(__name__)

_FINISHED = ("delivered", "rejected", "failed", "cancelled")


def sweep_spool(db: Database, data_dir: Path, retention_days: float) -> int:
    """Remove the files of studies finished more than ``retention_days`` ago; returns how
    many studies were swept. 0 days keeps everything."""
    if retention_days <= 0:
        return 0
    cutoff = now() - retention_days * 86400
    rows = db.query(
        "SELECT s.id, s.study_uid FROM studies s WHERE s.spool_removed_at IS NULL"
        " AND s.state IN ('routed', 'no_match', 'recorded') AND s.last_received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_id = s.id AND"
        " (j.state NOT IN (?, ?, ?, ?) OR j.updated_at >= ?))",
        (cutoff, *_FINISHED, cutoff),
    )
    for row in rows:
        paths = db.query("SELECT path FROM instances WHERE study_id = ?", (row["id"],))
        for p in paths:
            (data_dir / p["path"]).unlink(missing_ok=True)
        job_ids = db.query("SELECT id FROM jobs WHERE study_id = ?", (row["id"],))
        for j in job_ids:
            shutil.rmtree(data_dir / "work" / str(j["id"]), ignore_errors=True)
        study_dir = data_dir / "spool" / row["study_uid"]
        if study_dir.is_dir() and not any(study_dir.iterdir()):
            study_dir.rmdir()
        with db.transaction() as conn:
            conn.execute("UPDATE studies SET spool_removed_at = ? WHERE id = ?", (now(), row["id"]))
            audit.record(
                conn,
                "retention",
                "spool_removed",
                study_id=row["id"],
                detail=f"{len(paths)} file(s) removed after {retention_days:g} day(s)",
            )
    if rows:
        log.info("retention removed the images of %d studies", len(rows))
    return len(rows)
