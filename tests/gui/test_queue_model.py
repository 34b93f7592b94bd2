"""The queue table model: row changes from snapshots, Qt's model rules, filters, sorting."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt

from aifi_app.gui.queue_model import (
    ALGORITHM,
    RECEIVED,
    STATE,
    QueueFilterProxy,
    QueueTableModel,
)
from aifi_app.store.queue_view import QueueRow


def _row(job_id: int, state: str = "queued", algorithm: str = "pneumonia-cxr", **kw) -> QueueRow:  # type: ignore[no-untyped-def]
    base = QueueRow(
        key=("job", job_id),
        study_id=job_id,
        job_id=job_id,
        received_at=1_700_000_000.0 + job_id,
        modality="DX",
        study_description=f"X thorax {job_id}",
        algorithm=algorithm,
        route="chest",
        state=state,
        stage_since=1_700_000_100.0,
        reason="",
        instance_count=1,
        calling_ae="MOD",
    )
    return dataclasses.replace(base, **kw)


def test_model_passes_qtmodeltester_through_updates(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = QueueTableModel()
    qtmodeltester.check(model)
    model.apply([_row(1), _row(2), _row(3)])
    qtmodeltester.check(model)
    model.apply([_row(3, "failed", reason="model crashed"), _row(1), _row(4)])
    qtmodeltester.check(model)
    assert model.rowCount() == 3
    assert {model.row_at(i).job_id for i in range(3)} == {1, 3, 4}
    failed = model.index(model.row_of(("job", 3)) or 0, STATE)
    assert failed.data() == "failed"
    assert failed.data(Qt.ItemDataRole.ToolTipRole) == "model crashed"
    assert failed.data(Qt.ItemDataRole.DecorationRole) is not None
    assert failed.data(Qt.ItemDataRole.BackgroundRole) is not None
    model.apply([])
    assert model.rowCount() == 0


def test_unchanged_rows_send_no_signals(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = QueueTableModel()
    model.apply([_row(1), _row(2)])
    with qtbot.assertNotEmitted(model.dataChanged), qtbot.assertNotEmitted(model.rowsInserted):
        model.apply([_row(2), _row(1)])
    with qtbot.waitSignal(model.dataChanged):
        model.apply([_row(2), _row(1, "submitted")])


def test_proxy_filters_and_sorts(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = QueueTableModel()
    model.apply(
        [
            _row(1, "delivered"),
            _row(2, "failed", reason="PACS not reachable"),
            _row(3, "queued", algorithm="fracture"),
            _row(4, "rejected", study_description="CT hoofd"),
        ]
    )
    proxy = QueueFilterProxy()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy)

    def shown() -> list[int]:
        return sorted(
            proxy.index(i, 0).data(Qt.ItemDataRole.UserRole + 1).job_id
            for i in range(proxy.rowCount())
        )

    proxy.set_state("failed")
    assert shown() == [2]
    proxy.set_state(QueueFilterProxy.ATTENTION_FILTER)
    assert shown() == [2, 4]
    proxy.set_state("")
    proxy.set_algorithm("fracture")
    assert shown() == [3]
    proxy.set_algorithm("")
    proxy.set_text("pacs NOT")
    assert shown() == [2]
    proxy.set_text("hoofd")
    assert shown() == [4]
    proxy.set_text("#3")
    assert shown() == [3]
    proxy.set_text("")
    proxy.set_received_since(1_700_000_003.0)
    assert shown() == [3, 4]
    proxy.set_received_since(None)
    proxy.set_sender("CT01")
    assert shown() == []
    proxy.set_sender("MOD")
    assert shown() == [1, 2, 3, 4]
    proxy.set_sender("")
    proxy.sort(RECEIVED, Qt.SortOrder.DescendingOrder)
    assert proxy.index(0, ALGORITHM).data() == "pneumonia-cxr"
    assert proxy.index(0, RECEIVED).data(Qt.ItemDataRole.UserRole + 1).job_id == 4
