"""Sending instances to a remote node (C-STORE SCU) and verifying nodes (C-ECHO SCU).

Runs on the calling thread and blocks until the association ends. Every instance's
status is checked; the caller decides what to retry.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.low_latency import LowLatencyAE, requestor_handlers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class SendOutcome:
    path: Path
    status: int | None
    """The C-STORE status, or None when no response came (association failed)."""
    error: str = ""

    @property
    def ok(self) -> bool:
        # 0xB000, 0xB007, 0xB006 are warnings: the peer stored the instance
        return self.status is not None and (self.status == 0 or self.status >> 12 == 0xB)


class AssociationFailed(ConnectionError):
    """No association: peer down, refused, or not answering within the timeout."""


def _check_reachable(peer: Peer, timeout: float) -> None:
    """Fail fast, with the reason in words, when nothing accepts TCP connections there.

    Also keeps pynetdicom's connect path (which leaks its socket when the connection is
    refused) out of the common "PACS is down" case.
    """
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AssociationFailed(
            f"cannot connect to {peer.ae_title}@{peer.host}:{peer.port} ({reason})"
        ) from exc


def _ae(calling_ae_title: str, timeout: float) -> LowLatencyAE:
    ae = LowLatencyAE(ae_title=calling_ae_title)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.maximum_pdu_size = 131072
    return ae


def send_files(
    peer: Peer, paths: Sequence[Path], *, calling_ae_title: str, timeout: float = 60.0
) -> list[SendOutcome]:
    """C-STORE each file (as stored, with its own transfer syntax) over one association.

    Raises :class:`AssociationFailed` when no association can be made.
    """
    _check_reachable(peer, timeout)
    ae = _ae(calling_ae_title, timeout)
    contexts: set[tuple[str, str]] = set()
    for path in paths:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
        contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, [syntax])
    # stream each file from disk in PDU-sized pieces instead of decoding it into memory
    _config.STORE_SEND_CHUNKED_DATASET = True
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=requestor_handlers()
    )
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
        raise AssociationFailed(
            f"no association with {peer.ae_title}@{peer.host}:{peer.port} ({why})"
        )
    outcomes: list[SendOutcome] = []
    try:
        for path in paths:
            if not assoc.is_established:
                outcomes.append(SendOutcome(path, None, "association ended"))
                continue
            try:
                rsp = assoc.send_c_store(path)
            except (OSError, ValueError, RuntimeError) as exc:
                outcomes.append(SendOutcome(path, None, f"{type(exc).__name__}"))
                continue
            status = rsp.get("Status") if rsp else None
            outcomes.append(
                SendOutcome(
                    path,
                    int(status) if status is not None else None,
                    "" if status is not None else "no response (timeout or abort)",
                )
            )
    finally:
        if assoc.is_established:
            assoc.release()
    return outcomes


def echo(peer: Peer, *, calling_ae_title: str, timeout: float = 10.0) -> int:
    """C-ECHO the peer; returns the status (0 is success). Raises AssociationFailed."""
    _check_reachable(peer, timeout)
    ae = _ae(calling_ae_title, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=requestor_handlers()
    )
    if not assoc.is_established:
        raise AssociationFailed(f"no association with {peer.ae_title}@{peer.host}:{peer.port}")
    try:
        rsp = assoc.send_c_echo()
        status = rsp.get("Status") if rsp else None
        if status is None:
            raise AssociationFailed("no C-ECHO response")
        return int(status)
    finally:
        if assoc.is_established:
            assoc.release()
