"""The verdict control in the queue's detail pane, on the known evaluation data set."""

from __future__ import annotations

from aifi_app.store import feedback
from aifi_app.store.feedback import Verdict
from tests.helpers import evaluation_data


def test_verdict_from_the_detail_pane(qtbot, make_appliance, make_window) -> None:  # type: ignore[no-untyped-def]
    appliance = make_appliance()
    evaluation_data.populate(appliance.db)
    window = make_window(appliance)
    queue = window.queue
    panel = queue.feedback
    qtbot.waitUntil(lambda: queue.select_key(("job", 1)), timeout=20_000)
    # job 1 was judged "agree" by MB in the data set
    qtbot.waitUntil(lambda: panel.state.text().startswith("Last verdict: Agree (MB, "))
    assert all(b.isEnabled() for b in panel.buttons.values())
    panel.comment.setText("consolidation is atelectasis")
    panel.who.setText("JD")
    with qtbot.waitSignal(panel.recorded, timeout=10_000):
        panel.buttons[Verdict.FALSE_POSITIVE].click()
    latest = feedback.latest(appliance.db, 1)
    assert latest is not None
    assert (latest.verdict, latest.who, latest.comment) == (
        Verdict.FALSE_POSITIVE,
        "JD",
        "consolidation is atelectasis",
    )
    assert panel.state.text().startswith("Last verdict: Disagree: false positive (JD, ")
    assert panel.comment.text() == ""
    # bad initials: nothing recorded, the reason shown
    panel.who.setText("J D")
    panel.buttons[Verdict.UNSURE].click()
    qtbot.waitUntil(lambda: panel.state.text().startswith("Not recorded: "), timeout=10_000)
    assert len(feedback.history(appliance.db, 1)) == 2
    # a rejected job has no result to judge; a job without a verdict says so
    assert queue.select_key(("job", 5))
    assert not any(b.isEnabled() for b in panel.buttons.values())
    qtbot.waitUntil(lambda: panel.state.text() == "No verdict yet.")


def test_verdict_control_in_dutch(qtbot, make_appliance, make_window) -> None:  # type: ignore[no-untyped-def]
    window = make_window(make_appliance(), "nl")
    panel = window.queue.feedback
    assert panel.buttons[Verdict.AGREE].text() == "Akkoord"
    assert panel.title() == "Uw oordeel over het resultaat"
    assert not panel.buttons[Verdict.AGREE].isEnabled()
