"""A measurement report that refers to an instance nobody pseudonymised: the
re-identification check must quarantine it (tests of the results' safety net)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

UNKNOWN_UID = "2.25.424242"
"""Nobody's pseudonym."""


def make_reports_leak(monkeypatch: pytest.MonkeyPatch, referenced_sop_class: str) -> None:
    """Every measurement report the pipeline builds from now on also references
    :data:`UNKNOWN_UID` (of ``referenced_sop_class``)."""
    from aifi_app import results  # the pipeline takes its builders from here on use

    build = results.build_measurement_report

    def leaky_report(*args: Any, **kwargs: Any) -> Dataset:
        sr = build(*args, **kwargs)
        reference = Dataset()
        reference.ReferencedSOPClassUID = referenced_sop_class
        reference.ReferencedSOPInstanceUID = UNKNOWN_UID
        sr.ReferencedInstanceSequence = Sequence([reference])
        return sr

    monkeypatch.setattr(results, "build_measurement_report", leaky_report)
