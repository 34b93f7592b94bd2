"""The hand-packed file meta and responses are byte for byte what pydicom writes."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta, decode, encode, encode_file_meta

from aifi_app.dicom_node import command_sets

CT = "1.2.840.10008.5.1.4.1.1.2"
UIDS = ["1.2.3", "1.2.34", "1.2.826.0.1.3680043.8.498." + "1" * 37, "9"]


@pytest.mark.parametrize("instance", UIDS)
@pytest.mark.parametrize("version", ["PYNETDICOM_304", "AIFI_1"])
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
def test_file_meta_is_what_pydicom_writes(instance: str, version: str, syntax: str) -> None:
    expected = encode_file_meta(
        create_file_meta(
            sop_class_uid=UID(CT),
            sop_instance_uid=UID(instance),
            transfer_syntax=UID(syntax),
            implementation_uid=UID("1.2.826.0.1.3680043.9.3811.3.0.4"),
            implementation_version=version,
        )
    )
    ours = command_sets.file_meta(CT, instance, syntax, "1.2.826.0.1.3680043.9.3811.3.0.4", version)
    assert ours == expected
    meta = dcmread(BytesIO(b"\0" * 128 + b"DICM" + ours + b"\x08\x00\x16\x00UI\x02\x001\x00"))
    assert meta.file_meta.MediaStorageSOPInstanceUID == instance


def _pydicom_response(fields: dict[str, object]) -> bytes:
    ds = Dataset()
    for key, value in fields.items():
        setattr(ds, key, value)
    body = encode(ds, True, True)
    assert body is not None
    length = Dataset()
    length.CommandGroupLength = len(body)
    head = encode(length, True, True)
    assert head is not None
    return head + body


@pytest.mark.parametrize("instance", UIDS)
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC000])
def test_c_store_response_is_what_pydicom_writes(instance: str, status: int) -> None:
    expected = _pydicom_response(
        {
            "AffectedSOPClassUID": CT,
            "CommandField": 0x8001,
            "MessageIDBeingRespondedTo": 65535,
            "CommandDataSetType": 0x0101,
            "Status": status,
            "AffectedSOPInstanceUID": instance,
        }
    )
    ours = command_sets.response(command_sets.C_STORE_RSP, 65535, status, CT, instance)
    assert ours == expected
    assert decode(BytesIO(ours), True, True).Status == status


def test_c_echo_response_is_what_pydicom_writes() -> None:
    expected = _pydicom_response(
        {
            "AffectedSOPClassUID": "1.2.840.10008.1.1",
            "CommandField": 0x8030,
            "MessageIDBeingRespondedTo": 7,
            "CommandDataSetType": 0x0101,
            "Status": 0,
        }
    )
    assert command_sets.response(command_sets.C_ECHO_RSP, 7, 0, "1.2.840.10008.1.1") == expected
