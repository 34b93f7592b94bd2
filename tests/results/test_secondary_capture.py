"""Secondary Capture result images: DICOM validity, burned-in banner, rendering, study."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, Finding
from aifi_app.results import build_secondary_capture
from aifi_app.results.secondary_capture import DISCLAIMER, render_for_display

MakeFinding = Callable[..., Finding]
MakeResult = Callable[..., AlgorithmResult]
Reference = Callable[[np.ndarray], np.ndarray]

SERIES_UID = "2.25.100000000000000000000000000000000001"
SOP_UID = "2.25.100000000000000000000000000000000002"


def _ct_window(stored: np.ndarray) -> np.ndarray:
    return np.clip(stored - 1024.0, 40 - 200, 40 + 200)  # rescale, then window 40/400


# source fixture -> (rows x columns of the image part of the SC, what the SC's grey
# values must correlate with, computed here from the stored values independently)
SOURCES: dict[str, tuple[tuple[int, int], Callable[[np.ndarray], np.ndarray]]] = {
    "dx_source": ((512, 512), lambda stored: stored),  # 28x28 upscaled
    "cr_source": ((2048, 1707), lambda stored: -stored),  # 3000x2500 down, MONOCHROME1
    "ct_source": ((512, 512), _ct_window),
}


@pytest.fixture
def build(make_finding: MakeFinding, make_result: MakeResult) -> Callable[..., Dataset]:
    """build(source, **overrides): an SC for a pneumonia finding on source."""

    def build_for(source: Dataset, **overrides: object) -> Dataset:
        finding = make_finding(source)
        arguments: dict[str, object] = {
            "series_instance_uid": SERIES_UID,
            "sop_instance_uid": SOP_UID,
            "series_number": 9001,
            "instance_number": 1,
            "software_version": "0.3.0",
        }
        arguments.update(overrides)
        return build_secondary_capture(source, make_result(finding), finding, **arguments)  # type: ignore[arg-type]

    return build_for


def image_part(sc: Dataset, shape: tuple[int, int]) -> np.ndarray:
    rows, columns = shape
    pixels = sc.pixel_array
    left = (int(sc.Columns) - columns) // 2
    return pixels[int(sc.Rows) - rows :, left : left + columns]


def banner_part(sc: Dataset, shape: tuple[int, int]) -> np.ndarray:
    return sc.pixel_array[: int(sc.Rows) - shape[0], :]


@pytest.fixture(params=list(SOURCES))
def case(request: pytest.FixtureRequest) -> tuple[str, Dataset, tuple[int, int], Reference]:
    shape, reference = SOURCES[request.param]
    return request.param, request.getfixturevalue(request.param), shape, reference


@pytest.mark.dicom3tools
def test_sc_is_valid_dicom(
    case: tuple[str, Dataset, tuple[int, int], Reference],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    build: Callable[..., Dataset],
) -> None:
    name, source, _, _ = case
    dciodvfy(write_dicom(source, f"{name}-source"))
    sc = build(source)
    path = write_dicom(sc, f"{name}-sc")
    dciodvfy(path)
    again = dcmread(path)
    assert again.SOPClassUID == SecondaryCaptureImageStorage
    assert again.file_meta.MediaStorageSOPInstanceUID == SOP_UID


@pytest.mark.dicom3tools
def test_sc_without_body_part_is_valid(
    dx_source: Dataset,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    build: Callable[..., Dataset],
) -> None:
    del dx_source.BodyPartExamined
    sc = build(dx_source)
    assert "Laterality" in sc
    assert not sc.Laterality  # type 2C, unknown: present and empty
    dciodvfy(write_dicom(sc, "no-body-part-sc"))  # a warning about the empty value is fine


def test_sc_pixels_have_banner_and_rendered_source(
    case: tuple[str, Dataset, tuple[int, int], Reference],
    build: Callable[..., Dataset],
) -> None:
    _, source, shape, reference = case
    sc = build(source)
    assert sc.PhotometricInterpretation == "MONOCHROME2"
    assert (sc.BitsAllocated, sc.BitsStored, sc.SamplesPerPixel) == (8, 8, 1)
    assert min(shape) >= 512 or max(shape) == 2048
    assert max(shape) <= 2048
    assert int(sc.Columns) >= 512

    banner = banner_part(sc, shape)
    assert banner.shape[0] >= 40, "banner too small for three lines of text"
    text_pixels = np.count_nonzero(banner > 200)
    assert text_pixels > 0.01 * banner.size, "banner has no burned-in text"
    assert np.count_nonzero(banner == 0) > 0.5 * banner.size, "banner background not black"

    shown = image_part(sc, shape).astype(np.float64)
    expected = reference(source.pixel_array.astype(np.float64))
    expected_resized = np.asarray(
        Image.fromarray(expected.astype(np.float32)).resize(
            (shape[1], shape[0]), Image.Resampling.BILINEAR
        ),
        dtype=np.float64,
    )
    correlation = float(np.corrcoef(shown.ravel(), expected_resized.ravel())[0, 1])
    assert correlation > 0.95, f"rendering does not follow the source ({correlation})"


def test_sc_is_in_source_study_and_references_source(
    dx_source: Dataset, build: Callable[..., Dataset]
) -> None:
    sc = build(dx_source)
    assert sc.StudyInstanceUID == dx_source.StudyInstanceUID
    assert sc.SeriesInstanceUID == SERIES_UID
    assert sc.SOPInstanceUID == SOP_UID
    assert sc.SeriesInstanceUID != dx_source.SeriesInstanceUID
    assert (sc.SeriesNumber, sc.InstanceNumber) == (9001, 1)
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
    ):
        assert str(sc[keyword].value) == str(dx_source[keyword].value), keyword
    assert sc.DeidentificationMethodCodeSequence == dx_source.DeidentificationMethodCodeSequence
    (reference,) = sc.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == dx_source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == dx_source.SOPClassUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"


def test_sc_says_what_it_is(
    dx_source: Dataset, build: Callable[..., Dataset], algorithm: AlgorithmIdentity
) -> None:
    sc = build(dx_source)
    assert sc.BurnedInAnnotation == "YES"
    assert sc.ConversionType == "WSD"
    assert sc.SeriesDescription == f"AI result: {algorithm.name}"
    assert DISCLAIMER in sc.ImageComments
    assert "Pneumonia suspected (score 0.87, threshold 0.50)" in sc.ImageComments
    assert algorithm.name in sc.DerivationDescription
    assert sc.Manufacturer == "AIFI Appliance"
    assert list(sc.SoftwareVersions) == ["0.3.0", f"{algorithm.name} {algorithm.version}"]
    algorithm_equipment = [
        item
        for item in sc.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
        and item.ManufacturerModelName == algorithm.name
    ]
    assert len(algorithm_equipment) == 1
    assert algorithm_equipment[0].ManufacturerModelName == algorithm.name
    assert algorithm_equipment[0].SoftwareVersions == algorithm.version
    assert algorithm_equipment[0].Manufacturer == algorithm.vendor
    assert sc.PatientOrientation == ["L", "F"]


def test_sc_series_description_is_truncated_to_64(
    dx_source: Dataset, make_finding: MakeFinding, make_result: MakeResult
) -> None:
    long_name = AlgorithmIdentity("x", "A" * 80, "1", "V")
    finding = make_finding(dx_source)
    sc = build_secondary_capture(
        dx_source,
        make_result(finding, algorithm=long_name),
        finding,
        series_instance_uid=SERIES_UID,
        sop_instance_uid=SOP_UID,
        series_number=1,
        instance_number=1,
        software_version="0.3.0",
    )
    assert len(sc.SeriesDescription) == 64


def test_sc_orientation_follows_source(
    cr_source: Dataset, ct_source: Dataset, build: Callable[..., Dataset]
) -> None:
    assert build(ct_source).PatientOrientation == ["L", "P"]  # from Image Orientation
    unknown = build(cr_source)
    assert "PatientOrientation" in unknown
    assert unknown.PatientOrientation in (None, "", [])


def test_building_twice_gives_equal_uids_and_pixels(
    dx_source: Dataset, build: Callable[..., Dataset]
) -> None:
    first, second = build(dx_source), build(dx_source)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert first[keyword].value == second[keyword].value
    assert first.PixelData == second.PixelData
    other = build(dx_source, sop_instance_uid=generate_uid())
    assert other.SOPInstanceUID != first.SOPInstanceUID


def test_source_is_not_modified(ct_source: Dataset, build: Callable[..., Dataset]) -> None:
    before = copy.deepcopy(ct_source)
    build(ct_source)
    assert ct_source == before


def test_finding_of_another_image_is_refused(
    dx_source: Dataset, ct_source: Dataset, make_finding: MakeFinding, make_result: MakeResult
) -> None:
    finding = make_finding(ct_source)
    with pytest.raises(ValueError, match="not on the given source"):
        build_secondary_capture(
            dx_source,
            make_result(finding),
            finding,
            series_instance_uid=SERIES_UID,
            sop_instance_uid=SOP_UID,
            series_number=1,
            instance_number=1,
            software_version="0.3.0",
        )


@pytest.mark.dicom3tools
def test_non_ascii_algorithm_name_switches_to_utf8(
    dx_source: Dataset,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    make_finding: MakeFinding,
    make_result: MakeResult,
) -> None:
    algorithm = AlgorithmIdentity("thorax", "Longröntgen Ω-detector", "2.0", "Société Test")
    finding = make_finding(dx_source)
    sc = build_secondary_capture(
        dx_source,
        make_result(finding, algorithm=algorithm),
        finding,
        series_instance_uid=SERIES_UID,
        sop_instance_uid=SOP_UID,
        series_number=1,
        instance_number=1,
        software_version="0.3.0",
    )
    assert sc.SpecificCharacterSet == "ISO_IR 192"
    path = write_dicom(sc, "utf8-sc")
    dciodvfy(path)
    again = dcmread(path)
    assert again.SeriesDescription == "AI result: Longröntgen Ω-detector"
    assert again.PatientName == dx_source.PatientName


class TestRenderForDisplay:
    """The grey-value pipeline on small hand-made images with known answers."""

    @staticmethod
    def image(values: list[list[int]], photometric: str, bits: int, signed: bool) -> Dataset:
        ds = Dataset()
        array = np.array(values, dtype=np.int16 if signed else np.uint16)
        ds.Rows, ds.Columns = array.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = array.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return ds

    def test_ct_window_after_rescale(self) -> None:
        ds = self.image([[0, 1064, 1224, 1500]], "MONOCHROME2", 16, signed=True)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        # HU -1024 (below window), 40 (centre), 200, 476 (above window)
        assert render_for_display(ds).tolist() == [[0, 128, 230, 255]]

    def test_monochrome1_without_voi_is_inverted_full_range(self) -> None:
        ds = self.image([[0, 2048, 4095]], "MONOCHROME1", 12, signed=False)
        assert render_for_display(ds).tolist() == [[255, 127, 0]]

    def test_sigmoid_window(self) -> None:
        ds = self.image([[0, 100, 200]], "MONOCHROME2", 12, signed=False)
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 100, 50, "SIGMOID"
        assert render_for_display(ds).tolist() == [[0, 128, 255]]

    def test_rgb_is_converted_to_luminance(self) -> None:
        ds = self.image([[0, 0]], "MONOCHROME2", 8, signed=False)
        ds.PhotometricInterpretation = "RGB"
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = bytes([255, 255, 255, 0, 0, 255])  # white, pure blue
        assert render_for_display(ds).tolist() == [[255, 29]]

    def test_palette_color_is_refused(self) -> None:
        ds = self.image([[0, 1]], "PALETTE COLOR", 8, signed=False)
        with pytest.raises(ValueError, match="PALETTE COLOR"):
            render_for_display(ds)
