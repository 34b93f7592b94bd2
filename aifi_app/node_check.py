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

from aifi_app.config.settings import RemoteNode
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    seconds: float
    words: str
    """What happened, for people (English; the GUI shows it as is)."""


def check_node(node: RemoteNode, calling_ae_title: str, timeout: float = 10.0) -> CheckResult:
    start = time.monotonic()
    checks = {"dicom": _dicom, "dicomweb": _dicomweb, "http": _http, "mllp": _mllp}
    ok, words = checks[node.protocol](node, calling_ae_title, timeout)
    return CheckResult(ok, time.monotonic() - start, words)


def _dicom(node: RemoteNode, calling: str, timeout: float) -> tuple[bool, str]:
    try:
        status = echo(
            Peer(node.ae_title, node.host, node.port), calling_ae_title=calling, timeout=timeout
        )
    except (AssociationFailed, OSError) as exc:
        return False, f"C-ECHO to {node.ae_title}@{node.host}:{node.port} failed: {exc}"
    except (ValueError, RuntimeError) as exc:
        return False, f"{node.ae_title} accepted the association but not C-ECHO: {exc}"
    if status == 0:
        return True, f"C-ECHO answered by {node.ae_title} (status 0x0000, success)"
    return False, f"C-ECHO answered with status 0x{status:04X}"


def _get(url: str, accept: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310 - http(s) only, checked by the loader
    context = ssl.create_default_context()  # certificates and host names verified
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310
            return int(answer.status), ""
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason)


def _web_error(url: str, exc: Exception) -> str:
    reason = getattr(exc, "reason", exc)
    return f"no answer from {url}: {reason}"


def _dicomweb(node: RemoteNode, calling: str, timeout: float) -> tuple[bool, str]:
    url = node.url.rstrip("/") + "/studies?limit=1"
    try:
        status, reason = _get(url, "application/dicom+json", timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, _web_error(url, exc)
    if status in (200, 204):
        return True, f"DICOMweb search (QIDO-RS) answered with HTTP {status}"
    return False, f"DICOMweb search (QIDO-RS) answered with HTTP {status} {reason}".rstrip()


def _http(node: RemoteNode, calling: str, timeout: float) -> tuple[bool, str]:
    try:
        status, reason = _get(node.url, "*/*", timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, _web_error(node.url, exc)
    if status < 400:
        return True, f"{node.url} answered with HTTP {status}"
    return False, f"{node.url} answered with HTTP {status} {reason}".rstrip()


def _mllp(node: RemoteNode, calling: str, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"no MLLP connection to {node.host}:{node.port}: {exc.strerror or exc}"
    return True, f"MLLP port {node.host}:{node.port} accepts connections (no message sent)"
