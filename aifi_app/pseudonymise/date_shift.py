"""Shift DICOM DA and DT values back by a whole number of days.

The functions return None for any value they cannot parse as a valid date, so that the caller
removes it rather than keeping (and leaking) it. Times of day and UTC offsets are kept.
"""

from __future__ import annotations

import datetime
import re
from typing import Final

_DA: Final = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_DT: Final = re.compile(
    r"(?P<date>\d{4}(?:\d{2}(?:\d{2})?)?)"
    r"(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?"
    r"(?P<zone>[+-]\d{4})?"
)


def _shift(year: int, month: int, day: int, days: int) -> datetime.date | None:
    try:
        return datetime.date(year, month, day) - datetime.timedelta(days=days)
    except (ValueError, OverflowError):
        return None


def shift_da(value: str, days: int) -> str | None:
    """Return the DA ``value`` (YYYYMMDD, or ACR-NEMA YYYY.MM.DD) ``days`` earlier, as YYYYMMDD.

    An empty value stays empty. Returns None for anything else (ranges, partial or invalid
    dates, dates before year 1 after the shift).
    """
    text = value.strip()
    if not text:
        return ""
    match = _DA.fullmatch(text)
    if match is None:
        return None
    shifted = _shift(int(match[1]), int(match[2]), int(match[3]), days)
    if shifted is None:
        return None
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"


def shift_dt(value: str, days: int) -> str | None:
    """Return the DT ``value`` with its date part ``days`` earlier, at the same precision.

    YYYY, YYYYMM and YYYYMMDD date parts are supported (a partial date is shifted from its
    first day and cut back to its precision); time, fraction and UTC offset are kept as they
    are. An empty value stays empty; None for anything unparsable or invalid.
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT.fullmatch(text)
    if match is None:
        return None
    date_part = match["date"]
    if match["time"] and len(date_part) != 8:
        return None
    month = int(date_part[4:6]) if len(date_part) >= 6 else 1
    day = int(date_part[6:8]) if len(date_part) == 8 else 1
    shifted = _shift(int(date_part[:4]), month, day, days)
    if shifted is None:
        return None
    new_date = f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"[: len(date_part)]
    return new_date + (match["time"] or "") + (match["zone"] or "")
