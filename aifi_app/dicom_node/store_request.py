"""What a C-STORE request is made of: the instance file's data set, read once and as
stored, and the request's command set.

The data set is the file's bytes after its preamble and file meta information, which
pydicom finds (through pynetdicom's ``split_dataset``): no decoding, no transcoding, so the
peer receives exactly what we stored, in the file's own transfer syntax.

The command set is built and encoded by pynetdicom once per SOP class (a ``C_STORE``
primitive made into a ``C_STORE_RQ`` message and encoded implicit VR little endian); for
each instance only the two values that differ are put in: the Message ID (a US at a fixed
place) and the Affected SOP Instance UID (the set's last element), and the group length
follows. pynetdicom's own encoding costs about 2 ms an instance, a tenth of the time a
512x512 slice takes to send; ``tests/dicom_node/test_store_request.py`` checks that ours
equals it byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset

from aifi_app.dicom_node.requestor import command_set

BLOCK_BYTES = 1 << 20
"""How much of a data set is read (and handed to the kernel) at once. Two blocks are in
memory while a large instance goes (the one read ahead, then the one refilled): 1 MiB
each, not 4 (a CT's 16.7 MB SEG sent early added 8 MB to the service's peak; the
system calls per MiB are as few, each block still fills the socket's buffer)."""
LOW_PRIORITY = 0x0002  # what pynetdicom's send_c_store proposes
_MESSAGE_ID_TAG = bytes.fromhex("00001001") + struct.pack("<L", 2)  # (0000,0110) US
_INSTANCE_UID_TAG = bytes.fromhex("00000010")  # (0000,1000)
_META_UIDS = {
    "MediaStorageSOPClassUID": 0x00020002,
    "MediaStorageSOPInstanceUID": 0x00020003,
    "TransferSyntaxUID": 0x00020010,
}


@dataclass(frozen=True)
class InstanceFile:
    path: Path
    sop_class: str
    sop_instance: str
    syntax: str
    offset: int
    """Where the data set starts in the file (after the preamble and file meta)."""


def instance_file(path: Path) -> InstanceFile | str:
    """What to send from ``path``, or why it cannot be sent, in words."""
    try:
        meta, offset = split_dataset(path)
    except Exception as exc:  # pydicom raises many types for a file that is not DICOM
        return f"unreadable file ({type(exc).__name__})"
    # the raw values: converting the elements to pydicom's types costs as much as the read
    values = {kw: _text(meta.get_item(tag)) for kw, tag in _META_UIDS.items()}
    missing = [kw for kw, value in values.items() if not value]
    if missing:
        return f"file meta without {', '.join(missing)}"
    return InstanceFile(
        path,
        values["MediaStorageSOPClassUID"],
        values["MediaStorageSOPInstanceUID"],
        values["TransferSyntaxUID"],
        offset,
    )


def _text(element: object) -> str:
    value = getattr(element, "value", None)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip("\0 ")


def pynetdicom_store_command(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    """A C-STORE-RQ command set (with a data set), encoded by pynetdicom."""
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = sop_instance
    request.Priority = LOW_PRIORITY
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    # the data set follows from the file; a US like the 0x0101 it replaces: same length
    message.command_set.CommandDataSetType = 0x0001
    return command_set(message)


@dataclass
class StoreCommands:
    """Encoded C-STORE-RQ command sets, from one pynetdicom encoding per SOP class."""

    _heads: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def command(self, sop_class: str, sop_instance: str, message_id: int) -> bytes:
        head_and_place = self._heads.get(sop_class)
        if head_and_place is None:
            encoded = pynetdicom_store_command(sop_class, "1.2", 1)
            uid_at = encoded.rindex(_INSTANCE_UID_TAG)
            id_at = encoded.index(_MESSAGE_ID_TAG) + len(_MESSAGE_ID_TAG)
            head_and_place = (encoded[:uid_at], id_at)
            self._heads[sop_class] = head_and_place
        head, id_at = head_and_place
        uid = sop_instance.encode("ascii")
        if len(uid) % 2:
            uid += b"\0"  # UI values are padded to even length with NUL
        out = bytearray(head)
        out += _INSTANCE_UID_TAG + struct.pack("<L", len(uid)) + uid
        struct.pack_into("<L", out, 8, len(out) - 12)  # (0000,0000) counts what follows it
        struct.pack_into("<H", out, id_at, message_id)
        return bytes(out)


@dataclass
class Prepared:
    """An instance ready to go: its command set and the first block of its data set read
    (so that reading overlaps the peer's work on the previous one). Close it when done."""

    instance: InstanceFile
    message_id: int
    command: bytes
    size: int
    first: bytearray
    source: BinaryIO | None
    """The open file when the data set is larger than the first block."""

    def blocks(self) -> Iterator[memoryview]:
        yield memoryview(self.first)
        if self.source is None:
            return
        block = bytearray(min(BLOCK_BYTES, self.size - len(self.first)))
        left = self.size - len(self.first)
        while left:
            view = memoryview(block)[: min(len(block), left)]
            _read_exactly(self.source, view)
            yield view
            left -= len(view)

    def close(self) -> None:
        if self.source is not None:
            with contextlib.suppress(OSError):
                self.source.close()
            self.source = None


def prepare(instance: InstanceFile, message_id: int, commands: StoreCommands) -> Prepared | str:
    """Read the start of ``instance``'s data set; or why it cannot be read, in words."""
    try:
        source = instance.path.open("rb")
    except OSError as exc:
        return f"the file cannot be read ({type(exc).__name__})"
    try:
        size = os.fstat(source.fileno()).st_size - instance.offset
        if size <= 0:
            source.close()
            return "the file holds no data set"
        source.seek(instance.offset)
        first = bytearray(min(size, BLOCK_BYTES))
        _read_exactly(source, memoryview(first))
    except (OSError, EOFError) as exc:
        source.close()
        return f"the file cannot be read ({type(exc).__name__})"
    if size == len(first):
        source.close()
        rest: BinaryIO | None = None
    else:
        rest = source
    try:
        command = commands.command(instance.sop_class, instance.sop_instance, message_id)
    except ValueError:  # a UID that cannot be a UID (not ASCII, too long)
        if rest is not None:
            rest.close()
        return "its SOP Class or Instance UID cannot be encoded"
    return Prepared(instance, message_id, command, size, first, rest)


def _read_exactly(source: BinaryIO, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = source.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError("the file is shorter than when it was opened")
        got += n
