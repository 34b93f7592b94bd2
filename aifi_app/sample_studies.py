"""Sample studies for the demo and for tests: chest radiographs (DX) and a small CT.

The patients are invented ("DEMO^..."); the pixels come from PneumoniaMNIST when its file
is given (research data, CC BY 4.0) or from a drawn phantom otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class SamplePatient:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    accession: str


def phantom_chest(size: int = 256, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A drawn frontal chest: bright body, two darker lungs, a spine, some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size), 40.0)
    img[((x - 0.5) / 0.42) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1] = 170
    for cx in (0.33, 0.67):
        img[((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1] = 70
    img[np.abs(x - 0.5) < 0.03] = 200
    img += rng.normal(0, 6, img.shape)
    out: npt.NDArray[np.uint8] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _base(patient: SamplePatient, study_uid: str, modality: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    today = datetime.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = patient.accession
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "DEMO^REFERRER"
    ds.InstitutionName = "Demo Hospital"
    ds.Manufacturer = "AIFI demo"
    ds.Modality = modality
    ds.SeriesNumber = 1
    return ds


def chest_radiograph(
    patient: SamplePatient, pixels: npt.NDArray[np.uint8], *, study_uid: str | None = None
) -> Dataset:
    """A DX For Presentation image, 8-bit MONOCHROME2, frontal (PA) chest."""
    ds = _base(patient, study_uid or generate_uid(), "DX", DX_FOR_PRESENTATION)
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDescription = "X thorax"
    ds.SeriesDescription = "Thorax PA"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientOrientation = ["L", "F"]
    ds.InstanceNumber = 1
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "NO"
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def ct_series(patient: SamplePatient, slices: int, size: int = 64) -> Iterator[Dataset]:
    """An axial CT series of ``slices`` images (int16, 1 mm), for tests and the demo."""
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    base = (rng.normal(0, 20, (size, size)) + 1024).astype(np.int16)
    for n in range(slices):
        ds = _base(patient, study_uid, "CT", CT_IMAGE)
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.StudyDescription = "CT thorax"
        ds.BodyPartExamined = "CHEST"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = n + 1
        ds.SliceThickness = 1.0
        ds.ConvolutionKernel = "B30f"
        ds.KVP = 120
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [0.0, 0.0, float(n)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = base.tobytes()
        yield ds


def demo_patient(n: int) -> SamplePatient:
    return SamplePatient(
        name=f"DEMO^PATIENT^{n:03d}",
        patient_id=f"DEMO{n:05d}",
        birth_date="20180101",
        sex="F" if n % 2 else "M",
        accession=f"DEMOACC{n:05d}",
    )


def write(ds: Dataset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
