from __future__ import annotations

import logging

import pytest

from aifi_app.fault_logging import describe, log_fault


def _fail() -> None:
    raise ValueError("Invalid value 'Jansen^Maria' for PN")


def test_fault_lines_hold_type_and_place_not_the_message(caplog: pytest.LogCaptureFixture) -> None:
    try:
        _fail()
    except ValueError as exc:
        text = describe(exc)
        with caplog.at_level(logging.ERROR):
            log_fault(logging.getLogger("t"), "job %d failed", exc, 7)
    assert text.startswith("ValueError at test_fault_logging.py:")
    assert "_fail" in text
    assert "Jansen" not in text
    assert "job 7 failed (ValueError at" in caplog.text
    assert "Jansen" not in caplog.text
