from __future__ import annotations

from aifi_app.evaluation import accuracy
from aifi_app.gui.accuracy_model import AccuracyTableModel
from aifi_app.store.database import Database
from tests.helpers import evaluation_data


def test_accuracy_model_passes_qtmodeltester(qtmodeltester, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aifi_app.evaluation import records

    db = Database(tmp_path / "q.db")
    evaluation_data.populate(db)
    rows = accuracy.per_algorithm(records.load(db, evaluation_data.PERIOD))
    model = AccuracyTableModel()
    qtmodeltester.check(model)
    model.set_rows(rows)
    qtmodeltester.check(model)
    assert model.rowCount() == 2 and model.columnCount() == 6
    model.set_rows([])
    qtmodeltester.check(model)
    db.close()
