"""Sending instances to a remote node (C-STORE SCU) and verifying nodes (C-ECHO SCU).

Runs on the calling thread and blocks until the association ends. Every instance's
status is checked; the caller decides what to retry.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.low_latency import LowLatencyAE, requestor_handlers
from aifi_app.net.tls import describe_tls_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    """DICOM TLS (:func:`aifi_app.net.tls.client_context`); None: plain TCP."""

    @property
    def tls_args(self) -> tuple[ssl.SSLContext, str] | None:
        return (self.tls, self.host) if self.tls is not None else None


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
    """Fail fast, with the reason in words, when nothing accepts TCP connections there,
    or (DICOM TLS) when the TLS handshake fails: an unverifiable certificate, a peer that
    refuses ours, or one that does not speak TLS.

    Also keeps pynetdicom's connect path (which leaks its socket when the connection is
    refused, and logs a TLS failure only as a traceback) out of these cases.
    """
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    try:
        raw = socket.create_connection((peer.host, peer.port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AssociationFailed(f"cannot connect to {where} ({reason})") from exc
    with raw:
        if peer.tls is None:
            return
        try:
            tls = peer.tls.wrap_socket(raw, server_hostname=peer.host)
        except OSError as exc:
            raise AssociationFailed(f"TLS with {where} failed: {describe_tls_error(exc)}") from exc
        with contextlib.suppress(OSError):
            tls.close()


def _tls_refusal(peer: Peer, timeout: float) -> str | None:
    """Why the peer refused our TLS connection after the handshake, if it did.

    With TLS 1.3 a client's handshake completes before the server has checked the client
    certificate; a server that refuses it says so in an alert that arrives afterwards.
    Looked for only once an association failed, so a good link pays nothing.
    """
    assert peer.tls is not None
    try:
        with (
            socket.create_connection((peer.host, peer.port), timeout=timeout) as raw,
            peer.tls.wrap_socket(raw, server_hostname=peer.host) as tls,
        ):
            tls.settimeout(min(timeout, 2.0))
            tls.recv(1)
    except ssl.SSLError as exc:
        return describe_tls_error(exc)
    except OSError:
        return None
    return None


def _no_association(peer: Peer, assoc: Any, timeout: float) -> AssociationFailed:
    # pynetdicom leaves the socket of an association aborted by a TLS alert open
    left = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if isinstance(left, socket.socket):
        with contextlib.suppress(OSError):
            left.close()
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    if not assoc.is_rejected and peer.tls is not None:
        refusal = _tls_refusal(peer, timeout)
        if refusal is not None:
            return AssociationFailed(f"TLS with {where} failed: {refusal}")
    why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
    return AssociationFailed(f"no association with {peer.ae_title}@{peer.host}:{peer.port} ({why})")


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
        peer.host,
        peer.port,
        ae_title=peer.ae_title,
        evt_handlers=requestor_handlers(),
        tls_args=peer.tls_args,
    )
    if not assoc.is_established:
        raise _no_association(peer, assoc, timeout)
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
        peer.host,
        peer.port,
        ae_title=peer.ae_title,
        evt_handlers=requestor_handlers(),
        tls_args=peer.tls_args,
    )
    if not assoc.is_established:
        raise _no_association(peer, assoc, timeout)
    try:
        rsp = assoc.send_c_echo()
        status = rsp.get("Status") if rsp else None
        if status is None:
            raise AssociationFailed("no C-ECHO response")
        return int(status)
    finally:
        if assoc.is_established:
            assoc.release()
