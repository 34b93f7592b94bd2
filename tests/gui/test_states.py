"""Every audit event the core records has words in the audit screen (both languages)."""

from __future__ import annotations

import re
from pathlib import Path

from aifi_app.gui.states import event_name

CORE = Path(__file__).resolve().parents[2] / "aifi_app"
_LITERAL = re.compile(r'"([a-z][a-z0-9_]*)"')


def _recorded_events() -> set[str]:
    """Event names in the core's ``audit.record(conn, category, event`` calls (literal,
    or either side of a conditional), and those passed to the node's security audit."""
    events: set[str] = set()
    for path in CORE.rglob("*.py"):
        if "gui" in path.relative_to(CORE).parts:
            continue
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"audit\.record\(\s*[\w.]+,\s*[^,]+,\s*([^,]+),", text):
            events.update(_LITERAL.findall(call.group(1)))
        for call in re.finditer(r'_audit_security\(\s*"([a-z_]+)"', text):
            events.add(call.group(1))
    return events


def test_every_recorded_event_has_words() -> None:
    events = _recorded_events()
    assert {"study_started", "hl7_content_removed", "instances_recovered"} <= events
    assert "late_instances_follow_up" not in events  # an f-string: words by its prefix
    assert event_name("late_instances_follow_up") == "late instances received"
    unnamed = sorted(e for e in events if event_name(e) == e)
    assert unnamed == [], f"add these events to aifi_app/gui/states.py event_name: {unnamed}"
