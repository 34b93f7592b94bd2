from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.evaluation import records
from aifi_app.evaluation.records import JobRecord
from aifi_app.store.database import Database
from tests.helpers import evaluation_data


@pytest.fixture
def known_db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "q.db")
    evaluation_data.populate(db)
    return db


@pytest.fixture
def known_jobs(known_db: Database) -> list[JobRecord]:
    return records.load(known_db, evaluation_data.PERIOD)
