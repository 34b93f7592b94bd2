from __future__ import annotations

from aifi_app.pipeline.dispatcher import backoff_seconds


def test_backoff_doubles_and_is_bounded() -> None:
    waits = [backoff_seconds(n, 5.0, 300.0) for n in range(1, 10)]
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(waits) == 300.0
    assert waits == sorted(waits)
