"""Images that may carry burned-in text are recognised and refused unless accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EncapsulatedPDFStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from aifi_app.algorithms.package import PackageError, load_package
from aifi_app.pseudonymise import (
    BurnedInAnnotationRefused,
    BurnedInPolicy,
    Pseudonymiser,
    burned_in_risk,
)


def _ds(sop_class: str = CTImageStorage, **attributes: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.PatientID = "PHI-BURNED"
    ds.PixelData = b"\0" * 8
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("ds", "words"),
    [
        (_ds(BurnedInAnnotation="YES"), "Burned In Annotation is YES"),
        (_ds(SecondaryCaptureImageStorage), "secondary capture"),
        (_ds(MultiFrameTrueColorSecondaryCaptureImageStorage), "secondary capture"),
        (_ds(UltrasoundImageStorage), "ultrasound"),
        (_ds(UltrasoundMultiFrameImageStorage), "ultrasound"),
        (_ds(CTImageStorage, Modality="US"), "ultrasound"),
        (_ds(EncapsulatedPDFStorage), "encapsulated document"),
        (_ds(DigitalXRayImageStorageForPresentation, ConversionType="SD"), "scanned"),
    ],
)
def test_risky_images_are_refused_with_the_reason(ds: Dataset, words: str) -> None:
    reason = burned_in_risk(ds)
    assert reason is not None and words in reason
    with pytest.raises(BurnedInAnnotationRefused, match="burned-in text") as info:
        Pseudonymiser(b"k", frozenset()).pseudonymise(ds)
    assert "PHI" not in str(info.value)
    accepted = Pseudonymiser(b"k", frozenset(), burned_in=BurnedInPolicy.ACCEPT_CLEANED_BY_VENDOR)
    out = accepted.pseudonymise(ds)
    assert out.PixelData is ds.PixelData  # bytes shared, never decoded


@pytest.mark.parametrize(
    "ds", [_ds(), _ds(BurnedInAnnotation="NO"), _ds(ConversionType="WSD")], ids=str
)
def test_ordinary_images_pass(ds: Dataset) -> None:
    assert burned_in_risk(ds) is None
    assert Pseudonymiser(b"k", frozenset()).pseudonymise(ds).PixelData is ds.PixelData


def _package_with(tmp_path: Path, line: str) -> Path:
    from aifi_app.algorithms import package

    source = Path(package.__file__).parents[2] / "resources" / "algorithms" / "pneumonia-cxr"
    root = tmp_path / "pkg"
    root.mkdir()
    for path in source.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    manifest = root / "manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    text = text.replace('burned_in_annotation = "refuse"', line)
    manifest.write_text(text, encoding="utf-8")
    return root


def test_manifest_declares_the_policy(tmp_path: Path) -> None:
    root = _package_with(tmp_path, 'burned_in_annotation = "accept_cleaned_by_vendor"')
    assert load_package(root).burned_in_annotation is BurnedInPolicy.ACCEPT_CLEANED_BY_VENDOR


def test_manifest_default_refuses(tmp_path: Path) -> None:
    assert load_package(_package_with(tmp_path, "")).burned_in_annotation is BurnedInPolicy.REFUSE


def test_manifest_rejects_unknown_policy(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="burned_in_annotation"):
        load_package(_package_with(tmp_path, 'burned_in_annotation = "ocr"'))
