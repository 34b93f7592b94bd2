"""The dashboard on the known evaluation data set (tests/helpers/evaluation_data.py):
the same figures as the report, computed off the GUI thread, in English and Dutch."""

from __future__ import annotations

import os
from pathlib import Path

from aifi_app.evaluation.stats import Proportion
from aifi_app.gui.accuracy_model import proportion_text
from tests.helpers import evaluation_data
from tests.helpers.evaluation_data import FIRST_DAY, LAST_DAY


def _open(qtbot, make_appliance, make_window, language: str = "en"):  # type: ignore[no-untyped-def]
    appliance = make_appliance()
    evaluation_data.populate(appliance.db)
    window = make_window(appliance, language)
    window.tabs.setCurrentWidget(window.dashboard)
    with qtbot.waitSignal(window.dashboard.loaded, timeout=30_000):
        window.dashboard.set_period(FIRST_DAY, LAST_DAY)
    return window


def test_dashboard_shows_the_figures_of_the_period(qtbot, make_appliance, make_window) -> None:  # type: ignore[no-untyped-def]
    window = _open(qtbot, make_appliance, make_window)
    dash = window.dashboard
    assert window.tabs.tabText(window.tabs.indexOf(dash)) == "Dashboard"
    assert dash.key.text() == (
        "8 jobs · 6 delivered · 1 rejected · 1 failed · median turnaround 55.0 s · "
        "service availability 89.58 % · 6 judged"
    )
    model = dash.accuracy_model
    assert model.rowCount() == 2
    cells = [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(2)]
    # hand computation: agreement 3/5 (Wilson 23-88 %), PPV 2/3 and sensitivity 2/3 (21-94 %)
    assert cells[0] == ["cxr-local", "5", "60 % (23-88 %, n=5)", "67 % (21-94 %, n=3)",
                        "67 % (21-94 %, n=3)", "0"]  # fmt: skip
    assert cells[1] == ["vendor-x", "1", "100 % (21-100 %, n=1)", "-", "-", "0"]
    titles = {name: c.figure.axes[0].get_title() for name, c in dash.canvases.items()}
    assert titles == {
        "turnaround": "Turnaround per algorithm",
        "volume": "Jobs per day",
        "availability": "Availability",
        "agreement": "Agreement with people's verdicts",
    }
    # the turnaround plot holds the five delivered cxr-local jobs and the vendor's one
    ticks = [t.get_text() for t in dash.canvases["turnaround"].figure.axes[0].get_yticklabels()]
    assert ticks == ["cxr-local (n=5)", "vendor-x (n=1)"]


def test_dashboard_writes_the_report_and_speaks_dutch(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window, tmp_path: Path
) -> None:
    window = _open(qtbot, make_appliance, make_window, "nl")
    dash = window.dashboard
    assert window.tabs.tabText(window.tabs.indexOf(dash)) == "Dashboard"
    assert dash.key.text().startswith("8 taken · 6 afgeleverd · 1 afgewezen")
    assert dash.canvases["volume"].figure.axes[0].get_title() == "Taken per dag"
    assert dash.accuracy_model.headerData(2, _horizontal()) == "Overeenstemming"
    out = tmp_path / "report"
    dash.export_to(out)
    qtbot.waitUntil(lambda: (out / "report.html").exists() and "report.html" in dash.status.text(),
                    timeout=30_000)  # fmt: skip
    assert (out / "accuracy.csv").read_text(encoding="utf-8").count("\n") == 3
    shots = Path(os.environ.get("AIFI_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    dash.status.clear()
    window.resize(1200, 900)
    window.show()
    for language in ("nl", "en"):
        window.set_language(language)
        qtbot.wait(100)
        assert window.grab().save(str(shots / f"dashboard-{language}.png"))


def test_proportion_text() -> None:
    assert proportion_text(None) == "-"
    assert proportion_text(Proportion(0, 0)) == "-"
    assert proportion_text(Proportion(3, 5)) == "60 % (23-88 %, n=5)"


def _horizontal():  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    return Qt.Orientation.Horizontal
