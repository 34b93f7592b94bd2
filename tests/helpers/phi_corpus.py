"""A generated corpus that plants PHI everywhere, and a scanner that finds any of it.

Each instance carries markers ("PHIxx...", unique per place) in: Patient/Study identifying
attributes, every text VR (AE AS LO LT PN SH ST UC UR UT), table attributes and attributes
the table does not list (CS is not planted: code strings are kept as defined terms),
private blocks (top level and nested), sequences kept by the table
nested three deep, overlays (60xx) and curves (50xx), Data Set Trailing Padding, and names in
other character sets (ISO_IR 100, ISO_IR 192, ISO 2022 IR 87). Used by the leak tests and
by ``bench/pseudonymise_bench.py`` (CT slices and radiographs of realistic size).

:func:`leaks` scans a written file's raw bytes for every marker in every plausible encoding,
and every element value of the read-back dataset at any depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
ORIGINAL_UID_ROOT = "1.2.826.0.1.3680043.10.999"

CHARACTER_SETS: tuple[tuple[str | list[str], str], ...] = (
    ("ISO_IR 100", "PHIMüllerß^Jürgen"),
    ("ISO_IR 192", "PHIMüllerß^Jürgen"),
    (["", "ISO 2022 IR 87"], "PHIYamada^Tarou=山田^太郎=やまだ^たろう"),
)
NAME_PARTS = ("Müllerß", "Jürgen", "山田", "太郎", "やまだ", "たろう")
"""Parts of the planted names that must not survive in any encoding."""
ENCODINGS = ("utf-8", "latin-1", "cp1252", "iso2022_jp", "shift_jis", "euc_jp", "utf-16-le")

TEXT_VR_PLANTS: dict[str, str] = {
    # in Table E.1-1
    "PatientID": "PHIPID{n}",
    "OtherPatientIDs": "PHIOTHERID{n}",
    "PatientAddress": "PHIADDRESS{n} Baker Street",
    "PatientTelephoneNumbers": "PHITEL{n}",
    "AdditionalPatientHistory": "PHIHISTORY{n} of falls",
    "PatientComments": "PHICOMMENT{n}",
    "AccessionNumber": "PHIACC{n}",
    "StudyID": "PHISTUDY{n}",
    "InstitutionName": "PHIHOSP{n} Hospital",
    "InstitutionAddress": "PHIHOSPADDR{n}",
    "StationName": "PHISTATION{n}",
    "DeviceSerialNumber": "PHISERIAL{n}",
    "StudyDescription": "CT HEAD PHISTUDYDESC{n}",
    "SeriesDescription": "AX PHISERIESDESC{n}",
    "ImageComments": "PHIIMGCOMMENT{n}",
    "ProtocolName": "PHIPROTOCOL{n}",
    "RequestingService": "PHISERVICE{n}",
    "ReferringPhysicianName": "PHIREFERRER{n}^Doc",
    "PerformingPhysicianName": "PHIPERFORMER{n}^Doc",
    "OperatorsName": "PHIOPERATOR{n}^Op",
    "PatientAge": "042Y",
    # not in Table E.1-1, one per text VR
    "AcquisitionProtocolName": "PHINTLO{n}",  # LO
    "ReceiveCoilName": "PHINTSH{n}",  # SH
    "TextValue": "PHINTUT{n}",  # UT
    "EvaluatorName": "PHINTPN{n}^X",  # PN
    "RetrieveURI": "http://phi.example/PHINTUR{n}",  # UR
    "StrainAdditionalInformation": "PHINTUC{n}",  # UC (in table? either way removed)
    "AdmittingDiagnosesDescription": "PHIDIAGNOSIS{n}",  # LO, multi-valued
    "RetrieveAETitle": "PHIAE{n}",  # AE
    "DerivationDescription": "PHINTST{n}",  # ST
    "PixelSpacingCalibrationDescription": "PHINTLO2{n}",  # LO
    "VisitComments": "PHINTLT{n}",  # LT
}
"""keyword -> planted value ({n}: instance number); "PHI" marks what must disappear."""


def _uid(*parts: int) -> str:
    return ".".join([ORIGINAL_UID_ROOT, *map(str, parts)])


def _private_block(ds: Dataset, group: int, n: int) -> None:
    ds.add(DataElement((group << 16) | 0x0010, "LO", f"PHIVENDOR{n}"))
    ds.add(DataElement((group << 16) | 0x1001, "LO", f"PHIPRIVATE{n}"))
    ds.add(DataElement((group << 16) | 0x1002, "OB", f"PHIPRIVBYTES{n}".encode()))
    ds.add(DataElement((group << 16) | 0x1003, "UN", f"PHIPRIVUN{n}".encode()))


def _nested(n: int, depth: int) -> Dataset:
    """An item that holds PHI and, above depth 1, a kept sequence holding the next level."""
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE
    item.ReferencedSOPInstanceUID = _uid(9, n, depth)
    item.add(DataElement(0x00100010, "PN", f"PHINESTNAME{n}D{depth}^X"))
    item.add(DataElement(0x00081030, "LO", f"PHINESTDESC{n}D{depth}"))
    item.add(DataElement(0x00324000, "LT", f"PHINESTCOMMENT{n}D{depth}"))
    item.add(DataElement(0x00100030, "DA", "19610405"))
    _private_block(item, 0x0029, n)
    if depth > 1:
        # Source Image Sequence: U in the table, so its items are kept and processed
        item.SourceImageSequence = Sequence([_nested(n, depth - 1)])
    return item


def phi_header(n: int, *, study: int = 1, series: int = 1, modality: str = "CT") -> Dataset:
    """One instance's header with PHI planted everywhere (no Pixel Data)."""
    charset, name = CHARACTER_SETS[n % len(CHARACTER_SETS)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = CT_IMAGE if modality == "CT" else DX_IMAGE
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(_uid(study, series, n))
    ds.file_meta.SourceApplicationEntityTitle = "PHISOURCEAE"
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(study, series, n)
    ds.StudyInstanceUID = _uid(study)
    ds.SeriesInstanceUID = _uid(study, series)
    ds.FrameOfReferenceUID = _uid(study, series, 0)
    ds.Modality = modality
    ds.PatientName = name
    ds.PatientBirthDate = "19610405"
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240229"
    ds.StudyTime = "101112"
    ds.InstanceNumber = n
    for keyword, value in TEXT_VR_PLANTS.items():
        text = value.format(n=n)
        setattr(
            ds, keyword, [text, text + "B"] if keyword == "AdmittingDiagnosesDescription" else text
        )
    ds.ReferencedImageSequence = Sequence([_nested(n, 3)])
    other = Dataset()
    other.PatientID = f"PHIOTHERSEQ{n}"
    ds.OtherPatientIDsSequence = Sequence([other])
    _private_block(ds, 0x0009, n)
    _private_block(ds, 0x0019, n)
    ds.add(DataElement(0x60000010, "US", 16))
    ds.add(DataElement(0x60000011, "US", 16))
    ds.add(DataElement(0x60000022, "LO", f"PHIOVERLAYDESC{n}"))
    ds.add(DataElement(0x60003000, "OW", f"PHIOVERLAYBITS{n:04d}".encode().ljust(32, b"\0")))
    ds.add(DataElement(0x50000022, "LO", f"PHICURVEDESC{n}"))
    ds.add(DataElement(0x50003000, "OW", f"PHICURVEDATA{n:04d}".encode()))
    return ds


def phi_markers(n: int) -> list[str]:
    """Every planted marker of instance ``n`` (what :func:`leaks` looks for)."""
    markers = [v.format(n=n) for v in TEXT_VR_PLANTS.values() if "PHI" in v]
    markers = [m[m.index("PHI") :].split("^")[0].split(" ")[0] for m in markers]
    markers += [f"PHINESTNAME{n}D", f"PHINESTDESC{n}D", f"PHINESTCOMMENT{n}D"]
    markers += [f"PHIVENDOR{n}", f"PHIPRIVATE{n}", f"PHIPRIVBYTES{n}", f"PHIPRIVUN{n}"]
    markers += ["PHIOVERLAY", "PHICURVE", f"PHIOTHERSEQ{n}", "PHISOURCEAE", "PHIYamada"]
    markers += ["PHIPADDING"]
    markers += ["PHIMüller", "19610405", ORIGINAL_UID_ROOT, "20240229"]
    return markers


def _pixels(rows: int, columns: int, dtype: type, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=(rows, columns), dtype=np.int32).astype(dtype).tobytes()


def write_ct(folder: Path, count: int, *, size: int = 512, study: int = 1) -> Iterator[Path]:
    """Write ``count`` CT slices (``size`` square, int16) with PHI; yields their paths."""
    pixels = _pixels(size, size, np.int16, 1)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        ds = phi_header(n, study=study, series=1, modality="CT")
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.ImagePositionPatient = [0, 0, n]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1
        ds.PixelData = pixels
        ds.add(DataElement(0xFFFCFFFC, "OB", b"PHIPADDING!!"))
        path = folder / f"ct{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        yield path


def write_dx(
    folder: Path, count: int, *, rows: int = 2500, columns: int = 2000, study: int = 2
) -> Iterator[Path]:
    """Write ``count`` radiographs (uint16) with PHI; yields their paths."""
    pixels = _pixels(rows, columns, np.uint16, 2)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        ds = phi_header(n, study=study, series=n, modality="DX")
        ds.Rows = rows
        ds.Columns = columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImagerPixelSpacing = [0.15, 0.15]
        ds.ViewPosition = "PA"
        ds.PixelData = pixels
        path = folder / f"dx{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        yield path


def _encoded(marker: str) -> set[bytes]:
    out = set()
    for encoding in ENCODINGS:
        try:
            out.add(marker.encode(encoding))
        except UnicodeEncodeError:
            continue
    return out


def _values(ds: Dataset) -> Iterator[str]:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _values(item)
        elif isinstance(element.value, bytes):
            yield element.value.decode("latin-1")
        else:
            yield str(element.value)


def leaks(path: Path, n: int) -> list[str]:
    """Return the markers of instance ``n`` found in the file at ``path`` (raw or decoded)."""
    raw = path.read_bytes()
    found = []
    for marker in [*phi_markers(n), *NAME_PARTS]:
        if any(encoded in raw for encoded in _encoded(marker)):
            found.append(marker)
    ds = dcmread(path)
    text = "\n".join(_values(ds)) + "\n".join(_values(ds.file_meta))
    found += [m for m in phi_markers(n) if m in text and m not in found]
    return found


def as_series(planted: list[Path], copies: int, *, drop_sequences: bool = False) -> list[Path]:
    """Each planted instance followed by ``copies`` more of its series, written beside it:
    what differs from instance to instance in a series (SOP Instance UID, Instance Number,
    position) differs, the rest is the same, as a modality's series is. The planted file
    itself is kept, except with ``drop_sequences`` (then every instance is a copy without
    its top-level sequences)."""
    out = []
    for path in planted:
        if not drop_sequences:
            out.append(path)
        for copy in range(1, copies + 1):
            ds = dcmread(path)
            if drop_sequences:
                for element in list(ds):
                    if element.VR == "SQ":
                        del ds[element.tag]
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
                f"{ds.SOPInstanceUID}.{copy}"
            )
            ds.InstanceNumber = 100 * ds.InstanceNumber + copy
            if "ImagePositionPatient" in ds:
                ds.ImagePositionPatient = [0, 0, ds.InstanceNumber]
            target = path.with_name(f"{path.stem}{copy:03d}.dcm")
            ds.save_as(target, enforce_file_format=True)
            out.append(target)
    return out
