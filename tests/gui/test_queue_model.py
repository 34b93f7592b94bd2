"""The queue table model: row changes from snapshots, Qt's model rules, filters, sorting."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt

from aifi_app.gui.queue_model import (
    ALGORITHM,
    ATTENTION_FILTER,
    HL7,
    PRIORITY,
    RECEIVED,
    STATE,
    URGENT_COLOUR,
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


def test_model_filters_and_sorts(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = QueueTableModel()
    model.apply(
        [
            _row(1, "delivered"),
            _row(2, "failed", reason="PACS not reachable"),
            _row(3, "queued", algorithm="fracture"),
            _row(4, "rejected", study_description="CT hoofd"),
        ]
    )
    qtmodeltester.check(model)

    def shown() -> list[int]:
        return sorted(model.row_at(i).job_id or 0 for i in range(model.rowCount()))

    model.set_state("failed")
    assert shown() == [2]
    model.set_state(ATTENTION_FILTER)
    assert shown() == [2, 4]
    model.set_state("")
    model.set_algorithm("fracture")
    assert shown() == [3]
    model.set_algorithm("")
    model.set_text("pacs NOT")
    assert shown() == [2]
    model.set_text("hoofd")
    assert shown() == [4]
    model.set_text("#3")
    assert shown() == [3]
    model.set_text("at the algorithm")  # a state's name in words
    assert shown() == []
    model.set_text("delivered")
    assert shown() == [1]
    model.set_text("")
    model.set_received_since(1_700_000_003.0)
    assert shown() == [3, 4]
    model.set_received_since(None)
    model.set_sender("CT01")
    assert shown() == []
    model.set_sender("MOD")
    assert shown() == [1, 2, 3, 4]
    model.set_sender("")
    model.sort(RECEIVED, Qt.SortOrder.DescendingOrder)
    assert model.index(0, ALGORITHM).data() == "pneumonia-cxr"
    assert model.index(0, RECEIVED).data(Qt.ItemDataRole.UserRole + 1).job_id == 4
    model.sort(ALGORITHM, Qt.SortOrder.AscendingOrder)
    assert model.row_at(0).job_id == 3


def test_updates_keep_order_and_filter(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    """Rows that change, arrive or leave under an active filter and sort order land where
    a full sort and filter would put them."""
    model = QueueTableModel()
    qtmodeltester.check(model)
    rows = {i: _row(i, "delivered" if i % 3 else "failed") for i in range(1, 40)}
    model.apply(list(rows.values()))
    model.sort(STATE, Qt.SortOrder.AscendingOrder)
    model.set_text("x thorax")

    def expected() -> list[int]:
        wanted = [r for r in rows.values() if "x thorax" in r.search_text]
        return [r.job_id or 0 for r in sorted(wanted, key=lambda r: (r.state, r.key))]

    for step in range(1, 30):
        if step % 5 == 0:
            del rows[step]
        elif step % 4 == 0:
            rows[100 + step] = _row(100 + step, "queued")
        elif step % 7 == 0:
            rows[step] = _row(step, "failed", study_description="CT hoofd")  # leaves the filter
        else:
            rows[step] = _row(step, "submitted" if rows[step].state != "submitted" else "failed")
        model.apply(list(rows.values()))
        assert [model.row_at(i).job_id for i in range(model.rowCount())] == expected()
    model.set_text("")
    assert model.rowCount() == len(rows) == model.total()


def test_urgent_jobs_and_hl7_states_are_shown_sorted_and_found(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = QueueTableModel()
    model.apply(
        [
            _row(1, "delivered", hl7="sent"),
            _row(2, "delivered", urgent=True, hl7="failed"),
            _row(3, "queued"),
            _row(4, "delivered", urgent=True, hl7="pending"),
        ]
    )
    qtmodeltester.check(model)
    assert model.headerData(PRIORITY, Qt.Orientation.Horizontal) == "Priority"
    assert model.headerData(HL7, Qt.Orientation.Horizontal) == "RIS"
    model.sort(PRIORITY, Qt.SortOrder.DescendingOrder)  # urgent first
    assert [model.row_at(i).job_id for i in range(2)] == [4, 2]
    cells = {
        model.row_at(i).job_id: (model.display_text(i, PRIORITY), model.display_text(i, HL7))
        for i in range(model.rowCount())
    }
    assert cells == {
        1: ("", "Acknowledged"),
        2: ("Urgent", "Failed"),
        3: ("", ""),
        4: ("Urgent", "Waiting"),
    }
    urgent = model.index(0, PRIORITY)
    assert urgent.data(Qt.ItemDataRole.FontRole).bold()
    assert urgent.data(Qt.ItemDataRole.ForegroundRole).color().name() == URGENT_COLOUR
    assert model.index(2, PRIORITY).data(Qt.ItemDataRole.FontRole) is None
    model.set_text("urg")
    assert sorted(model.row_at(i).job_id or 0 for i in range(model.rowCount())) == [2, 4]
    # a job whose result raised the priority later: the row changes in place
    model.apply([_row(1, "delivered", hl7="sent"), _row(3, "delivered", urgent=True)])
    assert sorted(model.row_at(i).job_id or 0 for i in range(model.rowCount())) == [3]
    qtmodeltester.check(model)
