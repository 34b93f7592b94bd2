"""highdicom's clock stopped, so that two builds of one result object give the same bytes
(highdicom stamps content and instance creation date and time with ``now``)."""

from __future__ import annotations

import datetime
import types

import pytest

STOPPED_AT = datetime.datetime(2026, 11, 29, 12, 0, 0, 250000)


class _Stopped(datetime.datetime):
    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> _Stopped:
        return cls.fromisoformat(STOPPED_AT.isoformat())


def stop_highdicom_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """highdicom's ``datetime.datetime.now()`` is :data:`STOPPED_AT` until the test ends."""
    import highdicom.base
    import highdicom.base_content
    import highdicom.sr.sop

    stopped = types.SimpleNamespace(**vars(datetime))
    stopped.datetime = _Stopped
    for module in (highdicom.base, highdicom.base_content, highdicom.sr.sop):
        monkeypatch.setattr(module, "datetime", stopped)
