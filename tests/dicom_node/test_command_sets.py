"""The hand-packed file meta and responses are byte for byte what pydicom writes; a
request's command set is read as pydicom decodes it (or left to pydicom)."""

from __future__ import annotations

import warnings
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize(("sending", "receiving"), [("STORESCU", "AIFI"), ("CT01", "AIFI_NODE1")])
def test_file_meta_with_ae_titles_is_what_pydicom_writes(sending: str, receiving: str) -> None:
    meta = create_file_meta(
        sop_class_uid=UID(CT),
        sop_instance_uid=UID("1.2.3.4"),
        transfer_syntax=UID("1.2.840.10008.1.2.1"),
        implementation_uid=UID("1.2.826.0.1.3680043.9.3811.3.0.4"),
        implementation_version="AIFI_1",
    )
    meta.SendingApplicationEntityTitle = sending
    meta.ReceivingApplicationEntityTitle = receiving
    ours = command_sets.file_meta(
        CT,
        "1.2.3.4",
        "1.2.840.10008.1.2.1",
        "1.2.826.0.1.3680043.9.3811.3.0.4",
        "AIFI_1",
        sending_ae_title=sending,
        receiving_ae_title=receiving,
    )
    assert ours == encode_file_meta(meta)
    read = dcmread(BytesIO(b"\0" * 128 + b"DICM" + ours + b"\x08\x00\x16\x00UI\x02\x001\x00"))
    assert read.file_meta.SendingApplicationEntityTitle == sending
    assert read.file_meta.ReceivingApplicationEntityTitle == receiving


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


def _pydicom_command(data: bytes) -> command_sets.Command | None:
    """What pydicom decodes (None: it raised or warned)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return command_sets._decode_command(data)
    except Exception:
        return None


_UID_TEXTS = st.one_of(
    st.sampled_from([*UIDS, CT, "", "1.2.", "01.2", "1..2", "1.2\\3.4", " 1.2", "1.2 "]),
    st.from_regex(r"[0-9.]{1,70}", fullmatch=True),
    st.text(max_size=20),
)


@st.composite
def command_bytes(draw: st.DrawFn) -> bytes:
    """A C-STORE/C-ECHO request as a sender encodes it, or with odd values, or mutated."""
    ds = Dataset()
    for keyword in ("AffectedSOPClassUID", "AffectedSOPInstanceUID"):
        if draw(st.booleans()):
            ds.add_new(keyword, "UI", None)
            ds[keyword]._value = draw(_UID_TEXTS)
    for keyword in ("CommandField", "MessageID", "CommandDataSetType"):
        if draw(st.integers(0, 9)):
            ds.add_new(keyword, "US", draw(st.sampled_from([1, 0x30, 0x0101, 0, 7, 65535])))
    if draw(st.booleans()):
        ds.Priority = 0
    if draw(st.booleans()):
        ds.MoveOriginatorApplicationEntityTitle = "MOVER"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = bytearray(encode(ds, True, True) or b"")
    except Exception:
        data = bytearray()
    for position, value in draw(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)))):
        if position < len(data):
            data[position] = value
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.integers(0, 3)) == 0 else bytes(data)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(command_bytes())
def test_a_command_set_is_read_as_pydicom_decodes_it_or_left_to_pydicom(data: bytes) -> None:
    scanned = command_sets._scan_command(data)
    if scanned is not None:
        assert scanned == _pydicom_command(data)


@pytest.mark.parametrize("instance", UIDS)
def test_a_senders_c_store_request_is_read_without_pydicom(instance: str) -> None:
    request = Dataset()
    request.AffectedSOPClassUID = CT
    request.CommandField = 0x0001
    request.MessageID = 7
    request.Priority = 0
    request.CommandDataSetType = 0x0000
    request.AffectedSOPInstanceUID = instance
    data = encode(request, True, True)
    assert data is not None
    expected = command_sets.Command(0x0001, 7, True, CT, instance)
    assert command_sets._scan_command(data) == expected
    assert command_sets.read_command(data) == expected == _pydicom_command(data)


def test_a_command_set_missing_its_command_field_cannot_be_read() -> None:
    request = Dataset()
    request.MessageID = 7
    request.CommandDataSetType = 0x0101
    data = encode(request, True, True)
    assert data is not None
    with pytest.raises(AttributeError):
        command_sets.read_command(data)
