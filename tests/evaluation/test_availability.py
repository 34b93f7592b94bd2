from __future__ import annotations

import pytest

from aifi_app.evaluation import availability
from aifi_app.store.database import Database
from tests.helpers.evaluation_data import EXPECTED, NOW, P0, PERIOD, H


def test_service_availability_from_start_and_stop_events(known_db: Database) -> None:
    found = availability.service_availability(known_db, PERIOD, now=NOW)
    want = EXPECTED["service"]
    assert found.observed_seconds == want["observed"]  # type: ignore[index]
    assert found.up_seconds == pytest.approx(want["up"])  # type: ignore[index]
    assert (found.starts, found.unclean_ends) == (want["starts"], want["unclean"])  # type: ignore[index]
    assert found.longest_outage_seconds == pytest.approx(want["longest"])  # type: ignore[index]
    assert found.fraction == pytest.approx(43 / 48)


def test_service_runs_end_at_last_sign_of_life_or_now(known_db: Database) -> None:
    runs = availability.service_runs(known_db)
    assert [(r.started_at - P0, r.ended_at - P0, r.clean) for r in runs] == [
        (0.0, 10 * H, True),
        (12 * H, 20 * H, False),
        (22 * H, 47 * H, True),
    ]
    with known_db.transaction() as conn:
        conn.execute(
            "INSERT INTO audit_events (at, category, event) VALUES (?, 'service', 'started')",
            (P0 + 50 * H,),
        )
    runs = availability.service_runs(known_db, running_now=P0 + 60 * H)
    assert (runs[-1].ended_at - P0, runs[-1].clean) == (60 * H, True)
    runs = availability.service_runs(known_db)
    assert (runs[-1].ended_at - P0, runs[-1].clean) == (50 * H, False)


def test_node_availability_from_checks(known_db: Database) -> None:
    found = {n.node: n for n in availability.node_availability(known_db, PERIOD, now=NOW)}
    for node, (checks, failures, observed, down) in EXPECTED["nodes"].items():  # type: ignore[attr-defined]
        n = found[node]
        assert (n.checks, n.failures) == (checks, failures), node
        assert n.observed_seconds == pytest.approx(observed), node
        assert n.down_seconds == pytest.approx(down), node
    assert found["PACS"].fraction == pytest.approx(1 - 1 / 47)
    assert found["OLDPACS"].fraction == 0.0
