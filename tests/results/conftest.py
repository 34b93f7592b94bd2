"""Fixtures for the result-object tests: pseudonymised-like source images built with
pydicom (DX 28x28 8-bit MONOCHROME2, CR 3000x2500 16-bit MONOCHROME1 with a VOI LUT,
CT 512x512 int16 with rescale and window), algorithm results, and the DICOM validators
(dciodvfy from dicom3tools, dsrdump from DCMTK) as helpers that skip when missing."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, CodedConcept, Finding

DCIODVFY = "/usr/bin/dciodvfy"
DSRDUMP = "/usr/bin/dsrdump"

PNEUMONIA = CodedConcept("233604007", "SCT", "Pneumonia")
PNEUMOTHORAX = CodedConcept("36118008", "SCT", "Pneumothorax")
HEMORRHAGE = CodedConcept("1386000", "SCT", "Intracranial hemorrhage")

CHEST_STUDY_UID = "2.25.311480225412312866339165931925573170001"
CT_STUDY_UID = "2.25.311480225412312866339165931925573170002"


def _uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'aifi-test:{name}').int}"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _pseudonymised_patient_and_study(ds: Dataset, study_uid: str, accession: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "PSEUDO^7F3A9C"
    ds.PatientID = "PSN-7F3A9C21"
    ds.PatientBirthDate = "19560101"
    ds.PatientSex = "F"
    ds.PatientAge = "068Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "AIFI Appliance pseudonymisation"
    ds.DeidentificationMethodCodeSequence = Sequence(
        [
            _code("113100", "DCM", "Basic Application Confidentiality Profile"),
            _code("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates"),
        ]
    )
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20240311"
    ds.StudyTime = "101500"
    ds.StudyID = "S7F3A"
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Thorax"


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta


def _phantom(rows: int, columns: int) -> np.ndarray:
    """Smooth chest-like pattern in [0, 1]: two dark 'lungs' in a bright body."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    y /= rows
    x /= columns
    body = np.exp(-((((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2) ** 2))
    lung_left = np.exp(-(((x - 0.32) / 0.12) ** 2 + ((y - 0.45) / 0.25) ** 2))
    lung_right = np.exp(-(((x - 0.68) / 0.12) ** 2 + ((y - 0.45) / 0.25) ** 2))
    image = 0.15 + 0.75 * body - 0.5 * (lung_left + lung_right) + 0.1 * x
    clipped: np.ndarray = np.clip(image, 0.0, 1.0)
    return clipped


def _make_dx_source() -> Dataset:
    """DX For Presentation, 28x28, 8 bits, MONOCHROME2, frontal chest."""
    ds = Dataset()
    _pseudonymised_patient_and_study(ds, CHEST_STUDY_UID, "PSA7F3A01")
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = _uid("dx-instance")
    ds.Modality = "DX"
    ds.SeriesInstanceUID = _uid("dx-series")
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Thorax PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "Example Medical"
    ds.ManufacturerModelName = "DR-1000"
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.ContentDate = "20240311"
    ds.ContentTime = "101700"
    ds.AcquisitionDate = "20240311"
    ds.AcquisitionTime = "101650"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = "PA"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = Sequence()
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = Sequence([_code("51185008", "SCT", "Thorax")])
    ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "postero-anterior")])
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [12.5, 12.5]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.WindowCenter = 128
    ds.WindowWidth = 256
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 28
    ds.Columns = 28
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    pixels = np.rint(_phantom(28, 28) * 255).astype(np.uint8)
    ds.PixelData = pixels.tobytes()
    _file_meta(ds)
    return ds


def _make_cr_source(rows: int = 3000, columns: int = 2500) -> Dataset:
    """CR, 16 bits allocated / 12 stored, MONOCHROME1 (bright = less dense), VOI LUT."""
    ds = Dataset()
    _pseudonymised_patient_and_study(ds, CHEST_STUDY_UID, "PSA7F3A01")
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = _uid("cr-instance")
    ds.Modality = "CR"
    ds.SeriesInstanceUID = _uid("cr-series")
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Thorax lateraal"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "LL"
    ds.Manufacturer = "Example Medical"
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = "20240311"
    ds.ContentTime = "101900"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.KVP = 110
    ds.PixelSpacing = [0.15, 0.15]
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    # A smooth S-shaped VOI LUT over the 12-bit input, 16-bit output.
    lut_in = np.arange(4096, dtype=np.float64)
    lut = np.rint(65535 / (1 + np.exp(-(lut_in - 2048) / 500))).astype(np.uint16)
    voi = Dataset()
    voi.LUTDescriptor = [4096, 0, 16]
    voi.LUTExplanation = "Chest"
    voi.add_new(0x00283006, "US", lut.tolist())  # LUT Data; US, not the ambiguous OW
    ds.VOILUTSequence = Sequence([voi])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    # MONOCHROME1: dense (bright on screen) body gets LOW stored values.
    pixels = np.rint((1.0 - _phantom(rows, columns)) * 4095).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    _file_meta(ds)
    return ds


def _make_ct_source() -> Dataset:
    """CT axial slice, 512x512 int16, rescale -1024/1 HU, soft-tissue window 40/400."""
    ds = Dataset()
    _pseudonymised_patient_and_study(ds, CT_STUDY_UID, "PSA7F3A02")
    ds.StudyDescription = "CT hersenen"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = _uid("ct-instance")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = _uid("ct-series")
    ds.SeriesNumber = 3
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.Manufacturer = "Example Medical"
    ds.FrameOfReferenceUID = _uid("ct-frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 12
    ds.ContentDate = "20240311"
    ds.ContentTime = "103000"
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-125.0, -125.0, 40.0]
    ds.SliceThickness = 5.0
    ds.PixelSpacing = [0.488281, 0.488281]
    ds.KVP = 120
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 512
    ds.Columns = 512
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    hounsfield = -160 + 400 * _phantom(512, 512)  # mostly inside the window
    hounsfield[:40, :] = -1000  # air above the head
    ds.PixelData = np.rint(hounsfield + 1024).astype(np.int16).tobytes()
    _file_meta(ds)
    return ds


@pytest.fixture
def dx_source() -> Dataset:
    return _make_dx_source()


@pytest.fixture
def cr_source() -> Dataset:
    return _make_cr_source()


@pytest.fixture
def ct_source() -> Dataset:
    return _make_ct_source()


def _make_ct_series(slices: int) -> list[Dataset]:
    """``slices`` slices of one CT series, 5 mm apart (the CT source, new instance UIDs)."""
    series = []
    for n in range(slices):
        ds = _make_ct_source()
        ds.SOPInstanceUID = _uid(f"ct-series-instance-{n}")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [-125.0, -125.0, 40.0 + 5.0 * n]
        series.append(ds)
    return series


@pytest.fixture
def ct_series() -> list[Dataset]:
    """Four slices of one CT series (:func:`_make_ct_source`, 5 mm apart)."""
    return _make_ct_series(4)


ALGORITHM = AlgorithmIdentity(
    algorithm_id="cxr-pneumonia",
    name="CXR Pneumonia Detector",
    version="1.4.2",
    vendor="AIFI Test Vendor",
)


def _finding_for(
    source: Dataset,
    concept: CodedConcept = PNEUMONIA,
    score: float = 0.87,
    threshold: float = 0.5,
    label: str | None = None,
) -> Finding:
    positive = score >= threshold
    return Finding(
        concept=concept,
        score=score,
        threshold=threshold,
        positive=positive,
        source_sop_instance_uid=str(source.SOPInstanceUID),
        source_sop_class_uid=str(source.SOPClassUID),
        source_series_instance_uid=str(source.SeriesInstanceUID),
        label=label
        or (f"{concept.meaning} suspected" if positive else f"No {concept.meaning.lower()}"),
    )


def _result_for(*findings: Finding, algorithm: AlgorithmIdentity = ALGORITHM) -> AlgorithmResult:
    return AlgorithmResult(algorithm=algorithm, findings=tuple(findings))


MakeFinding = Callable[..., Finding]
MakeResult = Callable[..., AlgorithmResult]


@pytest.fixture
def algorithm() -> AlgorithmIdentity:
    """The algorithm that "ran": CXR Pneumonia Detector 1.4.2 by AIFI Test Vendor."""
    return ALGORITHM


@pytest.fixture
def make_finding() -> MakeFinding:
    """make_finding(source, concept=Pneumonia, score=0.87, threshold=0.5, label=None)."""
    return _finding_for


@pytest.fixture
def make_result() -> MakeResult:
    """make_result(*findings, algorithm=ALGORITHM) -> AlgorithmResult."""
    return _result_for


@pytest.fixture
def concepts() -> dict[str, CodedConcept]:
    """Finding concepts (SNOMED CT) used by the tests."""
    return {"pneumonia": PNEUMONIA, "pneumothorax": PNEUMOTHORAX, "hemorrhage": HEMORRHAGE}


@pytest.fixture
def write_dicom(tmp_path: Path) -> Callable[[Dataset, str], Path]:
    """Write a dataset as a DICOM file (PS3.10) under tmp_path and return its path."""

    def write(ds: Dataset, name: str) -> Path:
        path = tmp_path / f"{name}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        return path

    return write


@pytest.fixture
def dciodvfy() -> Callable[[Path], list[str]]:
    """Run dciodvfy on a file; return its warning lines, fail on any "Error" line."""
    if not Path(DCIODVFY).exists():
        pytest.skip("dciodvfy (dicom3tools) is not installed")

    def validate(path: Path) -> list[str]:
        run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
        lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [line for line in lines if line.startswith("Warning")]
        for line in warnings:
            print(f"dciodvfy {path.name}: {line}")
        assert not errors, f"dciodvfy errors for {path.name}:\n" + "\n".join(lines)
        return warnings

    return validate


@pytest.fixture
def dsrdump() -> Callable[[Path], str]:
    """Run DCMTK dsrdump on a file; assert it exits 0 and return its output."""
    if not Path(DSRDUMP).exists():
        pytest.skip("dsrdump (DCMTK) is not installed")

    def dump(path: Path) -> str:
        run = subprocess.run(
            [DSRDUMP, "+U8", "+Pl", "+Pu", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        # dsrdump reports SR content problems as "E: ..." / "W: ..." on stderr; with
        # +U8 (output in UTF-8) its VR checker always says it cannot check ISO_IR 192.
        problems = [
            line
            for line in run.stderr.splitlines()
            if line.strip() and "VR checker does not support" not in line
        ]
        assert not [line for line in problems if line.startswith("E:")], run.stderr
        for line in problems:
            print(f"dsrdump {path.name}: {line}")
        return run.stdout

    return dump
