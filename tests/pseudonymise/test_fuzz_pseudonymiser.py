"""Fuzz campaign: the file parser and the pseudonymiser against malformed data sets.

What the processing step does with a spooled file: ``dcmread`` it, pseudonymise it and
write the result. For every malformed input either that succeeds and the output holds no
planted identifier, or it fails with an exception the worker turns into a failed job
(``PseudonymisationError``/``BurnedInAnnotationRefused`` from the pseudonymiser, a parse
or write error from pydicom); it never hangs, never exhausts memory, never leaks. The
pseudonymiser itself may raise nothing else.

Large run: ``AIFI_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -s
tests/pseudonymise/test_fuzz_pseudonymiser.py``
"""

from __future__ import annotations

import io
from collections import Counter

from hypothesis import HealthCheck, given, settings
from pydicom import dcmread

from aifi_app.part10 import part10_bytes
from aifi_app.pseudonymise.burned_in import BurnedInAnnotationRefused
from aifi_app.pseudonymise.profile_options import ProfileOption
from aifi_app.pseudonymise.pseudonymiser import PseudonymisationError, Pseudonymiser
from tests.helpers.fuzz_data import BASE, EXAMPLES, PLANTED, malformed_files

PSEUDONYMISER = Pseudonymiser(
    b"k" * 32,
    frozenset(
        {
            ProfileOption.RETAIN_PATIENT_CHARACTERISTICS,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        }
    ),
)
OUTCOMES: Counter[str] = Counter()


def _process(data: bytes) -> str:
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception as exc:
        return f"parse refused ({type(exc).__name__})"
    try:
        out = PSEUDONYMISER.pseudonymise(ds)
    except (PseudonymisationError, BurnedInAnnotationRefused):
        return "pseudonymiser refused"
    try:
        written = part10_bytes(out)
    except Exception as exc:
        # e.g. no SOP Class UID left to write file meta from; the worker fails the job
        return f"write refused ({type(exc).__name__})"
    for planted in PLANTED:
        assert planted not in written, "a planted identifier survived pseudonymisation"
    return "pseudonymised"


def test_valid_base_is_pseudonymised() -> None:
    assert _process(BASE) == "pseudonymised"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(malformed_files())
def test_malformed_files_are_refused_or_pseudonymised_without_leaks(data: bytes) -> None:
    OUTCOMES[_process(data)] += 1


def test_report_fuzz_counts() -> None:
    print(f"\nparser+pseudonymiser fuzz: {sum(OUTCOMES.values())} cases: {dict(OUTCOMES)}")
