from __future__ import annotations

import pytest
from pydicom import Dataset

from aifi_app.config.settings import BUILTIN_ROUTES, Route
from aifi_app.pipeline.routing import evaluate, no_match_reason, patient_age_years


def _series(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = "1.2.3"
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_builtin_route_takes_a_chest_radiograph() -> None:
    (decision,) = evaluate(BUILTIN_ROUTES, [_series(Modality="DX", BodyPartExamined="CHEST")])
    assert decision.matched and decision.series_uids == ("1.2.3",)


def test_one_matching_series_is_enough() -> None:
    (decision,) = evaluate(
        BUILTIN_ROUTES,
        [_series(Modality="PR"), _series(Modality="CR", BodyPartExamined="CHEST")],
    )
    assert decision.matched


@pytest.mark.parametrize(
    ("route", "series", "reason"),
    [
        (
            Route("r", "a", modalities=("CR", "DX")),
            _series(Modality="CT"),
            "modality CT, route needs CR/DX",
        ),
        (
            Route("r", "a", body_parts=("CHEST",)),
            _series(BodyPartExamined="HAND"),
            "body part HAND, route needs CHEST",
        ),
        (
            Route("r", "a", max_slice_thickness_mm=2.5),
            _series(SliceThickness="5.0"),
            "slice thickness 5 mm, route needs at most 2.5 mm",
        ),
        (
            Route("r", "a", min_slice_thickness_mm=1.0),
            _series(),
            "slice thickness unknown, route has a thickness range",
        ),
        (
            Route("r", "a", convolution_kernels=("B30f",)),
            _series(ConvolutionKernel="B70f"),
            "convolution kernel B70f, route needs B30f",
        ),
        (
            Route("r", "a", max_patient_age_years=18),
            _series(PatientAge="045Y"),
            "patient age 45.0 y, route needs at most 18 y",
        ),
        (
            Route("r", "a", study_description="thorax"),
            _series(StudyDescription="CT abdomen"),
            "study description does not match the route's pattern",
        ),
        (
            Route("r", "a", series_description="^PA$"),
            _series(SeriesDescription="LAT"),
            "series description does not match the route's pattern",
        ),
    ],
)
def test_mismatch_reasons_are_words(route: Route, series: Dataset, reason: str) -> None:
    (decision,) = evaluate([route], [series])
    assert not decision.matched
    assert decision.reason == reason
    assert reason in no_match_reason([decision])


def test_kernel_match_is_case_insensitive_and_multi_valued() -> None:
    route = Route("r", "a", convolution_kernels=("b30f",))
    assert evaluate([route], [_series(ConvolutionKernel=["B30f", "3"])])[0].matched


def test_no_routes_configured() -> None:
    assert no_match_reason(evaluate([], [_series()])) == "no routes are configured"


@pytest.mark.parametrize(
    ("attrs", "years"),
    [
        ({"PatientAge": "006M"}, 0.5),
        ({"PatientAge": "010Y"}, 10.0),
        ({"PatientBirthDate": "20000101", "StudyDate": "20100101"}, 10.0),
        ({"PatientBirthDate": "junk", "StudyDate": "20100101"}, None),
    ],
)
def test_patient_age(attrs: dict[str, str], years: float | None) -> None:
    age = patient_age_years(_series(**attrs))
    assert age == pytest.approx(years, abs=0.01) if years is not None else age is None
