"""``aifi-app feedback`` (the report command is tested in tests/report/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.cli import main
from aifi_app.service import open_database
from aifi_app.store import feedback
from tests.helpers import evaluation_data


def test_feedback_records_a_verdict(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = open_database(tmp_path / "d")
    evaluation_data.populate(db)
    d = str(tmp_path / "d")
    assert main(["feedback", "5", "agree", "--data-dir", d]) == 1  # rejected: no result
    assert "no result" in capsys.readouterr().err
    assert main(["feedback", "1", "agree", "--data-dir", d, "--who", "Jan Jansen"]) == 1
    assert "initials" in capsys.readouterr().err
    args = ["feedback", "1", "false-positive", "--data-dir", d, "--who", "JD"]
    assert main([*args, "--comment", "atelectasis"]) == 0
    assert "job 1: false-positive recorded for JD" in capsys.readouterr().out
    latest = feedback.latest(db, 1)
    assert latest is not None
    assert (latest.verdict, latest.who, latest.comment) == ("false_positive", "JD", "atelectasis")
    assert main(["feedback", "2", "missed", "--data-dir", d]) == 0
    latest = feedback.latest(db, 2)
    assert latest is not None and latest.who == feedback.current_user()
    with pytest.raises(SystemExit):
        main(["feedback", "2", "wrong", "--data-dir", d])
    db.close()
