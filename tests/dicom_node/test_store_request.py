"""C-STORE requests as we build them: the data set exactly as stored, read in blocks, and
command sets equal to pynetdicom's own encoding."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, DigitalXRayImageStorageForPresentation, generate_uid

from aifi_app.dicom_node import store_request
from aifi_app.dicom_node.store_request import (
    InstanceFile,
    Prepared,
    StoreCommands,
    instance_file,
    prepare,
    pynetdicom_store_command,
)
from aifi_app.sample_studies import ct_series, demo_patient, write


@pytest.mark.parametrize("message_id", [1, 2, 300, 0xFFFF])
@pytest.mark.parametrize(
    "sop_instance",
    ["1.2.3", "1.2.34", generate_uid(), "1." + "2" * 61, "1." + "2" * 62],  # odd, even, 64
)
def test_command_set_equals_pynetdicoms(sop_instance: str, message_id: int) -> None:
    commands = StoreCommands()
    for sop_class in (CTImageStorage, DigitalXRayImageStorageForPresentation, CTImageStorage):
        ours = commands.command(sop_class, sop_instance, message_id)
        assert ours == pynetdicom_store_command(sop_class, sop_instance, message_id)


def test_command_set_says_a_data_set_follows() -> None:
    from pynetdicom.dsutils import decode

    command = decode(BytesIO(StoreCommands().command(CTImageStorage, "1.2.3", 7)), True, True)
    assert command.CommandDataSetType == 0x0001
    assert command.CommandField == 0x0001  # C-STORE-RQ
    assert command.MessageID == 7
    assert command.AffectedSOPInstanceUID == "1.2.3"


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    return write(next(ct_series(demo_patient(3), 1, size=128)), tmp_path)


def _data_set_bytes(prepared: Prepared) -> bytes:
    return b"".join(bytes(block) for block in prepared.blocks())


def test_the_data_set_is_the_files_bytes_after_its_file_meta(ct_file: Path) -> None:
    found = instance_file(ct_file)
    assert isinstance(found, InstanceFile)
    stored = dcmread(ct_file)
    assert (found.sop_class, found.sop_instance, found.syntax) == (
        stored.SOPClassUID,
        stored.SOPInstanceUID,
        stored.file_meta.TransferSyntaxUID,
    )
    prepared = prepare(found, 5, StoreCommands())
    assert isinstance(prepared, Prepared)
    data = _data_set_bytes(prepared)
    assert data == ct_file.read_bytes()[found.offset :]
    assert len(data) == prepared.size
    syntax = stored.file_meta.TransferSyntaxUID
    again = read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    assert again.SOPInstanceUID == stored.SOPInstanceUID
    assert again.PixelData == stored.PixelData
    prepared.close()


def test_a_large_data_set_is_read_in_blocks(ct_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_request, "BLOCK_BYTES", 1000)
    found = instance_file(ct_file)
    assert isinstance(found, InstanceFile)
    prepared = prepare(found, 1, StoreCommands())
    assert isinstance(prepared, Prepared)
    assert prepared.source is not None  # the rest is read while sending
    blocks = [bytes(b) for b in prepared.blocks()]
    assert len(blocks) == -(-prepared.size // 1000)
    assert b"".join(blocks) == ct_file.read_bytes()[found.offset :]
    prepared.close()
    assert prepared.source is None


def test_files_that_cannot_be_sent_say_why(tmp_path: Path, ct_file: Path) -> None:
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    assert instance_file(not_dicom) == "unreadable file (InvalidDicomError)"
    assert instance_file(tmp_path / "gone.dcm") == "unreadable file (FileNotFoundError)"
    ds = dcmread(ct_file)
    del ds.file_meta.MediaStorageSOPInstanceUID
    no_uid = tmp_path / "no_uid.dcm"
    ds.save_as(no_uid)
    assert instance_file(no_uid) == "file meta without MediaStorageSOPInstanceUID"
    found = instance_file(ct_file)
    assert isinstance(found, InstanceFile)
    ct_file.unlink()  # gone between the look at its meta and the send
    assert prepare(found, 1, StoreCommands()) == "the file cannot be read (FileNotFoundError)"
