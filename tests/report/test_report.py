"""``aifi-app report`` on a known set of jobs, checks and verdicts: every figure in the CSV
files against the hand computation in tests/helpers/evaluation_data.py, the HTML page and
its plots, and no identifier of the test patients anywhere in what was written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from aifi_app.cli import main
from aifi_app.service import open_database
from tests.helpers import evaluation_data
from tests.helpers.evaluation_data import EXPECTED, H


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    db = open_database(root / "data")
    evaluation_data.populate(db)
    db.close()
    out = root / "out"
    code = main(
        [
            "report",
            "--data-dir",
            str(root / "data"),
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-03",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def _rows(report: Path, name: str) -> list[dict[str, str]]:
    with (report / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(text: str) -> float | None:
    return None if text == "" else float(text)


def test_turnaround_and_stage_figures(report: Path) -> None:
    rows = {(r["algorithm_id"], r["stage"]): r for r in _rows(report, "stage_summary")}
    for algorithm, (count, med, p90, low, high) in EXPECTED["turnaround"].items():  # type: ignore[attr-defined]
        r = rows[(algorithm, "turnaround")]
        assert int(r["count"]) == count
        assert [_num(r[k]) for k in ("median", "p90", "min", "max")] == [med, p90, low, high]
    for algorithm, stages in EXPECTED["stages"].items():  # type: ignore[attr-defined]
        for stage, want in stages.items():
            assert _num(rows[(algorithm, stage)]["median"]) == want, (algorithm, stage)


def test_every_job_with_its_stages(report: Path) -> None:
    rows = {int(r["job_id"]): r for r in _rows(report, "job_stages")}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 8]  # job 9 lies before the period
    assert _num(rows[3]["turnaround"]) == 45.0
    assert _num(rows[3]["deliver"]) == 5.0
    assert rows[5]["state"] == "rejected" and rows[5]["turnaround"] == ""
    assert _num(rows[5]["receiving"]) == 10.0
    assert rows[7]["day"] == "2026-03-02" and rows[4]["day"] == "2026-03-03"


def test_volume_per_day(report: Path) -> None:
    got = {
        (r["day"], r["algorithm_id"]): tuple(
            int(r[k]) for k in ("delivered", "rejected", "failed", "other")
        )
        for r in _rows(report, "volume_per_day")
    }
    assert got == EXPECTED["volume"]
    for r in _rows(report, "volume_per_day"):
        assert int(r["total"]) == sum(
            int(r[k]) for k in ("delivered", "rejected", "failed", "other")
        )


def test_accuracy_with_wilson_intervals(report: Path) -> None:
    rows = {r["algorithm_id"]: r for r in _rows(report, "accuracy")}
    wilson = EXPECTED["wilson"]
    for algorithm, r in rows.items():
        for column, key in (
            ("agreement", "agreement"),
            ("ppv", "ppv"),
            ("sensitivity_reported_misses", "sensitivity"),
        ):
            want = EXPECTED[key][algorithm]  # type: ignore[index]
            if want is None or want[1] == 0:
                assert r[column] == "" and r[f"{column}_n"] == ""
                continue
            k, n = want
            assert (int(r[f"{column}_k"]), int(r[f"{column}_n"])) == (k, n)
            assert _num(r[column]) == round(k / n, 4)
            low, high = wilson[(k, n)]  # type: ignore[index]
            assert _num(r[f"{column}_ci95_low"]) == pytest.approx(low, abs=1e-4)
            assert _num(r[f"{column}_ci95_high"]) == pytest.approx(high, abs=1e-4)
    local = rows["cxr-local"]
    assert [int(local[k]) for k in ("judged", "agree", "false_positive", "missed", "unsure")] == [
        5,
        3,
        1,
        1,
        0,
    ]
    assert (int(local["true_positive"]), int(local["true_negative"])) == (2, 1)
    verdicts = {int(r["job_id"]): (r["result"], r["verdict"]) for r in _rows(report, "verdicts")}
    assert verdicts[6] == ("positive", "agree")
    assert verdicts[3] == ("negative", "missed")
    assert 9 not in verdicts and 5 not in verdicts


def test_availability(report: Path) -> None:
    (service,) = _rows(report, "service_availability")
    want = EXPECTED["service"]
    assert _num(service["observed_seconds"]) == want["observed"]  # type: ignore[index]
    assert _num(service["up_seconds"]) == want["up"]  # type: ignore[index]
    assert _num(service["availability"]) == round(43 / 48, 4)
    assert (int(service["starts"]), int(service["unclean_ends"])) == (3, 1)
    assert _num(service["longest_outage_seconds"]) == 2 * H
    nodes = {r["node"]: r for r in _rows(report, "node_availability")}
    for node, (checks, failures, observed, down) in EXPECTED["nodes"].items():  # type: ignore[attr-defined]
        r = nodes[node]
        assert (int(r["checks"]), int(r["failed_checks"])) == (checks, failures)
        assert (_num(r["observed_seconds"]), _num(r["down_seconds"])) == (observed, down)
        assert _num(r["availability"]) == round(1 - down / observed, 4)


def test_input_variation(report: Path) -> None:
    rows = {
        (r["dimension"], r["algorithm_id"], r["value"]): r for r in _rows(report, "input_variation")
    }
    siemens = rows[("scanner", "cxr-local", "SIEMENS Force")]
    assert [int(siemens[k]) for k in ("jobs", "delivered", "rejected", "positive", "agree")] == [
        3,
        2,
        1,
        1,
        2,
    ]
    thick = rows[("slice_thickness", "cxr-local", "6 mm")]
    assert (int(thick["jobs"]), int(thick["rejected"])) == (1, 1)
    assert int(rows[("kernel", "cxr-local", "STANDARD")]["missed"]) == 1
    assert int(rows[("site", "cxr-local", "CT02")]["jobs"]) == 2
    assert int(rows[("study_description", "cxr-local", "Thorax")]["jobs"]) == 6


def test_html_page_and_plots(report: Path) -> None:
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "2026-03-02 to 2026-03-03 (UTC)" in page
    for name in ("turnaround", "volume", "availability", "agreement"):
        assert f'src="{name}.png"' in page
        with Image.open(report / f"{name}.png") as image:
            assert image.format == "PNG" and image.size == (700, 360)
    for table in ("stage_summary", "accuracy", "input_variation", "node_availability"):
        assert f'href="{table}.csv"' in page
    assert "<b>8</b>jobs" in page and "<b>6</b>delivered" in page
    assert "<b>89.58 %</b>service availability" in page  # 43 / 48


def test_no_patient_identifier_anywhere_in_the_report(report: Path) -> None:
    files = sorted(p for p in report.rglob("*") if p.is_file())
    assert len(files) >= 13
    for path in files:
        data = path.read_bytes().lower()
        for identifier in evaluation_data.PATIENT_IDENTIFIERS:
            assert identifier.lower().encode() not in data, (path.name, identifier)
        assert b"vries" not in data  # a verdict's comment never reaches the report


def test_report_refuses_a_reversed_period(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "d")
    args = ["report", "--data-dir", d, "--from", "2026-03-03", "--to", "2026-03-02"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "before it starts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--data-dir", d, "--from", "3 March", "--to", "2026-03-02", "--out", d])
