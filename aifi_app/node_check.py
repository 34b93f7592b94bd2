""" "Test connection" for a remote node, by its protocol; the answer in words.

- ``dicom``: C-ECHO (Verification) with our AE title;
- ``dicomweb``: a QIDO-RS search for one study (``GET {url}/studies?limit=1``);
- ``http``: ``GET {url}`` (TLS certificates verified);
- ``mllp``: a TCP connection to the host and port (no HL7 message is sent).

Blocking (network): callers run it off the GUI thread. Never raises for network
trouble: the result says what happened.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from aifi_app.config.settings import NodeSettings, RemoteNode
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, echo
from aifi_app.net.https import InsecureUrlError, secure_link
from aifi_app.net.tls import TlsConfigError


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    seconds: float
    words: str
    """What happened, for people (English; the GUI shows it as is)."""


def check_node(
    node: RemoteNode,
    calling_ae_title: str,
    timeout: float = 10.0,
    own: NodeSettings | None = None,
) -> CheckResult:
    """Test the node over its own protocol, as the appliance would reach it: DICOM TLS and
    HTTPS verified with the node's CA file, and our certificate from ``own`` where set."""
    start = time.monotonic()
    checks = {"dicom": _dicom, "dicomweb": _dicomweb, "http": _http, "mllp": _mllp}
    ok, words = checks[node.protocol](node, calling_ae_title, timeout, own or NodeSettings())
    return CheckResult(ok, time.monotonic() - start, words)


def _dicom(node: RemoteNode, calling: str, timeout: float, own: NodeSettings) -> tuple[bool, str]:
    try:
        status = echo(dicom_peer(node, own), calling_ae_title=calling, timeout=timeout)
    except (AssociationFailed, OSError) as exc:
        return False, f"C-ECHO to {node.ae_title}@{node.host}:{node.port} failed: {exc}"
    except (ValueError, RuntimeError) as exc:
        return False, f"{node.ae_title} accepted the association but not C-ECHO: {exc}"
    if status == 0:
        return True, f"C-ECHO answered by {node.ae_title} (status 0x0000, success)"
    return False, f"C-ECHO answered with status 0x{status:04X}"


def _get(
    node: RemoteNode, own: NodeSettings, url: str, accept: str, timeout: float
) -> tuple[int, str]:
    # https verified with the node's CA file; plain http only where net.https allows it
    context: ssl.SSLContext | None = secure_link(node, own, None, url).ssl_context
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310 - http(s) only, checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310
            return int(answer.status), ""
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason)


def _web_error(url: str, exc: Exception) -> str:
    reason = getattr(exc, "reason", exc)
    return f"no answer from {url}: {reason}"


_WEB_ERRORS = (urllib.error.URLError, OSError, ValueError, InsecureUrlError, TlsConfigError)


def _dicomweb(
    node: RemoteNode, calling: str, timeout: float, own: NodeSettings
) -> tuple[bool, str]:
    url = node.url.rstrip("/") + "/studies?limit=1"
    try:
        status, reason = _get(node, own, url, "application/dicom+json", timeout)
    except _WEB_ERRORS as exc:
        return False, _web_error(url, exc)
    if status in (200, 204):
        return True, f"DICOMweb search (QIDO-RS) answered with HTTP {status}"
    return False, f"DICOMweb search (QIDO-RS) answered with HTTP {status} {reason}".rstrip()


def _http(node: RemoteNode, calling: str, timeout: float, own: NodeSettings) -> tuple[bool, str]:
    try:
        status, reason = _get(node, own, node.url, "*/*", timeout)
    except _WEB_ERRORS as exc:
        return False, _web_error(node.url, exc)
    if status < 400:
        return True, f"{node.url} answered with HTTP {status}"
    return False, f"{node.url} answered with HTTP {status} {reason}".rstrip()


def _mllp(node: RemoteNode, calling: str, timeout: float, own: NodeSettings) -> tuple[bool, str]:
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"no MLLP connection to {node.host}:{node.port}: {exc.strerror or exc}"
    return True, f"MLLP port {node.host}:{node.port} accepts connections (no message sent)"
