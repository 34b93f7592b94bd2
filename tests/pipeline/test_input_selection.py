"""Input conformance from the manifest: each rule's rejection reason, and series selection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom import Dataset

from aifi_app.algorithms.input_rules import Range, SeriesRules
from aifi_app.algorithms.package import InputSpec, Selection
from aifi_app.pipeline.input_selection import (
    Image,
    InputNotConforming,
    group_series,
    select_images,
)

CT = InputSpec(
    rules=SeriesRules(
        modalities=("CT",),
        body_parts=("CHEST",),
        patient_age_years=Range(18, None),
        slice_thickness_mm=Range(None, 2.5),
        pixel_spacing_mm=Range(0.3, 1.0),
        convolution_kernels=("B30f", "STANDARD"),
        contrast="with",
        contrast_phases=("ARTERIAL",),
    ),
    views=(),
    images=Range(3, 1000),
    selection=Selection(scope="series", prefer="thinnest"),
)


def _header(series: str = "1.2.3", n: int = 1, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.PatientAge = "045Y"
    ds.SliceThickness = "1.0"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ConvolutionKernel = "B30f"
    ds.ContrastBolusAgent = "Iomeron"
    ds.ContrastBolusAgentPhase = "ARTERIAL"
    ds.InstanceNumber = n
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def _series(count: int = 5, series: str = "1.2.3", **attrs: object) -> list[Image]:
    return [
        Image(Path(f"/spool/{series}/{n}.dcm"), _header(series, n, **attrs))
        for n in range(count, 0, -1)  # arrives in reverse
    ]


@pytest.mark.parametrize(
    ("attrs", "count", "reason"),
    [
        ({"Modality": "MR"}, 5, "modality MR, algorithm needs CT"),
        ({"BodyPartExamined": "HEAD"}, 5, "body part HEAD, algorithm needs CHEST"),
        ({"PatientAge": "012Y"}, 5, "patient age 12.0 y, algorithm needs at least 18 y"),
        ({"SliceThickness": "5.0"}, 5, "slice thickness 5 mm, algorithm needs at most 2.5 mm"),
        ({"SliceThickness": None}, 5, "slice thickness unknown, algorithm has a thickness range"),
        ({"PixelSpacing": ["0.2", "0.2"]}, 5, "pixel spacing 0.2 mm, algorithm needs at least 0.3"),
        (
            {"ConvolutionKernel": "B70f"},
            5,
            "convolution kernel B70f, algorithm needs B30f/STANDARD",
        ),
        ({"ContrastBolusAgent": None}, 5, "no contrast agent recorded, algorithm needs a contrast"),
        (
            {"ContrastBolusAgentPhase": "PORTAL_VENOUS"},
            5,
            "contrast phase PORTAL_VENOUS, algorithm needs ARTERIAL",
        ),
        ({}, 2, "2 image(s) in the series, algorithm needs at least 3"),
    ],
)
def test_each_rule_rejects_with_its_reason(
    attrs: dict[str, object], count: int, reason: str
) -> None:
    with pytest.raises(InputNotConforming) as err:
        select_images(CT, group_series(_series(count, **attrs)))
    assert reason in str(err.value)


def test_without_contrast_rule() -> None:
    spec = dataclasses.replace(
        CT, rules=dataclasses.replace(CT.rules, contrast="without", contrast_phases=())
    )
    with pytest.raises(InputNotConforming, match="contrast-enhanced series, algorithm needs one"):
        select_images(spec, group_series(_series()))


def test_thinnest_conforming_series_is_chosen_in_slice_order() -> None:
    images = [
        *_series(5, "thick", SliceThickness="5.0"),
        *_series(4, "two", SliceThickness="2.0"),
        *_series(6, "one", SliceThickness="1.0"),
        *_series(8, "sharp", SliceThickness="0.6", ConvolutionKernel="B70f"),
    ]
    chosen = select_images(CT, group_series(images))
    assert [p.parent.name for p in chosen] == ["one"] * 6
    assert [p.name for p in chosen] == [f"{n}.dcm" for n in range(1, 7)]
    most = dataclasses.replace(CT, selection=Selection(scope="series", prefer="most_images"))
    assert {p.parent.name for p in select_images(most, group_series(images))} == {"one"}


def test_no_conforming_series_lists_every_reason() -> None:
    images = [*_series(5, "a", SliceThickness="5.0"), *_series(5, "b", ConvolutionKernel="B70f")]
    with pytest.raises(InputNotConforming) as err:
        select_images(CT, group_series(images))
    assert str(err.value) == (
        "no series conforms: slice thickness 5 mm, algorithm needs at most 2.5 mm; "
        "convolution kernel B70f, algorithm needs B30f/STANDARD"
    )


def test_image_scope_takes_frontal_views_first_and_checks_views() -> None:
    spec = InputSpec(
        rules=SeriesRules(modalities=("DX", "CR")),
        views=("PA", "AP", "LL"),
        images=Range(),
        selection=Selection(scope="image", prefer="frontal", max_images=1),
    )
    lateral = Image(Path("lat.dcm"), _header("s1", Modality="DX", ViewPosition="LL"))
    frontal = Image(Path("pa.dcm"), _header("s2", Modality="DX", ViewPosition="PA"))
    assert select_images(spec, group_series([lateral, frontal])) == [Path("pa.dcm")]
    oblique = Image(Path("obl.dcm"), _header("s3", Modality="DX", ViewPosition="OBL"))
    with pytest.raises(InputNotConforming, match="view OBL, algorithm needs PA/AP/LL"):
        select_images(spec, group_series([oblique]))
