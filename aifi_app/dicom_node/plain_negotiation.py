"""The common A-ASSOCIATE-RQ negotiated directly: contexts, maximum length, no roles.

pynetdicom's decoding and encoding of the association PDUs validate every UID through
pydicom: ``storescu``'s request (127 presentation contexts of three transfer syntaxes)
took 57-76 ms on the busy 2-core machine, for a two-image radiograph study about half
the time it took to arrive (a fresh service negotiates each new request once,
:class:`~aifi_app.dicom_node.storage_acceptor.NegotiationCache`). What most modalities
send is simple: an application context, presentation contexts (one abstract syntax and
its transfer syntaxes each), and user information with the maximum length, the
implementation class UID and version name. :func:`negotiate_plain` reads and answers
exactly that (PS3.8 9.3.2 and 9.3.3) as pynetdicom's
:func:`~pynetdicom.presentation.negotiate_as_acceptor` does: for each proposed context
whose abstract syntax we support, the first of *our* transfer syntaxes that the
requestor proposed (0x00), else 0x04 (transfer syntaxes not supported), 0x03 for an
abstract syntax we do not support; results in order of context ID. Anything else (role
selection, extended negotiation, user identity, asynchronous operations, a duplicated
context ID, a UID that is not plain digits and dots, any irregularity of layout) returns
None, and pynetdicom negotiates it as before (tests compare both on the same requests,
byte for byte).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

APPLICATION_CONTEXT_NAME: Final = b"1.2.840.10008.3.1.1.1"
_UID: Final = re.compile(rb"[0-9.]{1,64}")
_FIXED: Final = 74  # the A-ASSOCIATE-RQ's header and fixed fields, PS3.8 Table 9-11


@dataclass(frozen=True)
class Negotiated:
    """What an A-ASSOCIATE-RQ comes to: its caller, the contexts we accept, our AC (made
    here for a plain request, by pynetdicom for the others:
    :func:`aifi_app.dicom_node.storage_acceptor.negotiate`)."""

    calling_ae: str
    peer_max_pdu: int
    accepted: dict[int, str]
    """Context ID -> the transfer syntax accepted on it."""
    proposed: int
    accept_pdu: bytes
    """The A-ASSOCIATE-AC to send if the association is not rejected."""


def _items(data: bytes, start: int, end: int) -> list[tuple[int, bytes]] | None:
    """``(type, value)`` of the items between ``start`` and ``end``; None if they overrun."""
    items = []
    offset = start
    while offset < end:
        if offset + 4 > end:
            return None
        item_type = data[offset]
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        value = data[offset + 4 : offset + 4 + length]
        if len(value) != length or offset + 4 + length > end:
            return None
        items.append((item_type, value))
        offset += 4 + length
    return items


def _uid(value: bytes) -> str | None:
    if value[-1:] == b"\x00":  # (a UID may be padded with one null, as pynetdicom reads it)
        value = value[:-1]
    return value.decode("ascii") if _UID.fullmatch(value) else None


def _item(item_type: int, value: bytes) -> bytes:
    return bytes((item_type, 0)) + len(value).to_bytes(2, "big") + value


def negotiate_plain(
    request_pdu: bytes,
    supported: Mapping[str, Sequence[str]],
    *,
    max_pdu_size: int,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> Negotiated | None:
    """Negotiate a plain A-ASSOCIATE-RQ (the whole PDU, header included); None: let
    pynetdicom do it. ``supported``: abstract syntax -> our transfer syntaxes, in order."""
    pdu = request_pdu
    if len(pdu) < _FIXED or pdu[0] != 0x01:
        return None
    if int.from_bytes(pdu[2:6], "big") != len(pdu) - 6:
        return None
    called_calling = pdu[10:42]
    calling_raw = pdu[26:42]
    if b"\x00" in called_calling or not calling_raw.isascii():
        return None
    items = _items(pdu, _FIXED, len(pdu))
    if items is None:
        return None
    contexts: list[tuple[int, str, list[str]]] = []
    seen: set[int] = set()
    peer_max_pdu: int | None = None
    application_context = False
    user_information = False
    for item_type, value in items:
        if item_type == 0x10:
            if application_context or value.rstrip(b"\x00") != APPLICATION_CONTEXT_NAME:
                return None
            application_context = True
        elif item_type == 0x20:
            context = _context(value)
            if context is None or context[0] in seen:
                return None
            seen.add(context[0])
            contexts.append(context)
        elif item_type == 0x50:
            if user_information:
                return None
            user_information = True
            sub_items = _items(value, 0, len(value))
            if sub_items is None:
                return None
            for sub_type, sub_value in sub_items:
                if sub_type == 0x51 and len(sub_value) == 4 and peer_max_pdu is None:
                    peer_max_pdu = int.from_bytes(sub_value, "big")
                elif not _plain_user_item(sub_type, sub_value):
                    return None  # roles, extended negotiation, user identity, ...
        else:
            return None
    if not application_context or not contexts or peer_max_pdu is None:
        return None

    accepted: dict[int, str] = {}
    results = []
    for context_id, abstract_syntax, transfer_syntaxes in sorted(contexts):
        ours = supported.get(abstract_syntax)
        if ours is None:
            result, chosen = 0x03, transfer_syntaxes[0]
        else:
            match = next((ts for ts in ours if ts in transfer_syntaxes), None)
            if match is None:
                result, chosen = 0x04, transfer_syntaxes[0]
            else:
                result, chosen = 0x00, match
                accepted[context_id] = match
        results.append(
            _item(0x21, bytes((context_id, 0, result, 0)) + _item(0x40, chosen.encode()))
        )
    user = (
        _item(0x51, max_pdu_size.to_bytes(4, "big"))
        + _item(0x52, implementation_class_uid.encode())
        + _item(0x55, implementation_version_name.encode())
    )
    body = (
        b"\x00\x01\x00\x00"
        + called_calling
        + bytes(32)
        + _item(0x10, APPLICATION_CONTEXT_NAME)
        + b"".join(results)
        + _item(0x50, user)
    )
    return Negotiated(
        calling_ae=calling_raw.decode("ascii").strip(),
        peer_max_pdu=peer_max_pdu,
        accepted=accepted,
        proposed=len(contexts),
        accept_pdu=b"\x02\x00" + len(body).to_bytes(4, "big") + body,
    )


def _plain_user_item(sub_type: int, value: bytes) -> bool:
    """An implementation class UID or version name (we need neither)."""
    if sub_type == 0x52:
        return _uid(value) is not None
    return sub_type == 0x55 and 1 <= len(value) <= 16 and value.isascii()


def _context(value: bytes) -> tuple[int, str, list[str]] | None:
    """A presentation context item's (ID, abstract syntax, transfer syntaxes), or None."""
    if len(value) < 4 or value[0] % 2 == 0:  # context IDs are odd
        return None
    sub_items = _items(value, 4, len(value))
    if sub_items is None:
        return None
    abstract_syntax: str | None = None
    transfer_syntaxes = []
    for sub_type, sub_value in sub_items:
        uid = _uid(sub_value)
        if uid is None:
            return None
        if sub_type == 0x30 and abstract_syntax is None:
            abstract_syntax = uid
        elif sub_type == 0x40:
            transfer_syntaxes.append(uid)
        else:
            return None
    if abstract_syntax is None or not transfer_syntaxes:
        return None
    return value[0], abstract_syntax, transfer_syntaxes
