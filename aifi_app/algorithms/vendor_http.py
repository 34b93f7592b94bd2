"""Talking to a vendor over HTTP(S): one ``requests`` session per node, with certificate
verification always on (the node's ``ca_file`` or the system's authorities) and the node's
bearer token from the OS keyring; and what went wrong, in words for the queue (no PHI:
only the node's name and address, the HTTP status, or the operating system's reason)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.config.settings import NodeUnusableError, RemoteNode, Settings
from aifi_app.net.https import InsecureUrlError, check_url
from aifi_app.secrets import KeyringUnavailableError, node_token


class VendorHttpError(Exception):
    """A vendor's HTTP service could not be used (reason in words, no PHI)."""


class _NodeSession(requests.Session):
    """A session whose own CA file wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (requests
    lets those environment variables replace a session's ``verify``)."""

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        if isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


def http_node(settings: Callable[[], Settings], name: str) -> RemoteNode:
    """The HTTP(S) node ``name`` in the current settings; :class:`InferenceError` when it
    is missing or unusable (looked up per run: the settings may have changed)."""
    try:
        return settings().remote_node_of(name, "http")
    except NodeUnusableError as exc:
        raise InferenceError(str(exc)) from exc


def session_for(node: RemoteNode) -> requests.Session:
    """A session for ``node``: certificates verified, its bearer token (if any) set.

    Plain http is refused unless it goes to this machine or the node sets
    ``allow_plain_http`` (:func:`aifi_app.net.https.check_url`)."""
    try:
        check_url(node.url, allow_plain_http=node.allow_plain_http)
    except InsecureUrlError as exc:
        raise VendorHttpError(f"{node.name}: {exc}") from exc
    session = _NodeSession()
    session.verify = node.ca_file or True
    try:
        token = node_token(node.name)
    except KeyringUnavailableError as exc:
        raise VendorHttpError(f"the token of {node.name} could not be read: {exc}") from exc
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _os_reason(exc: BaseException) -> str:
    """The operating system's words for the first socket error under ``exc``."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "reason", None),
                *current.args,
            ]
        )
    return "connection failed"


def http_failure_words(
    exc: Exception, node: RemoteNode, doing: str, timeout: float | None = None
) -> str:
    """What went wrong with an HTTP request to ``node``, in words for the queue."""
    where = f"{node.name} ({node.url})"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"{doing}: {where} refused: its HTTPS certificate could not be verified"
    if isinstance(exc, requests.exceptions.Timeout):
        within = f"within {timeout:g} s" if timeout is not None else "in time"
        return f"{doing}: {where} did not answer {within} (timed out)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"{doing}: {where} not reachable ({_os_reason(exc)})"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        reason = exc.response.reason or ""
        if status in (401, 403):
            return f"{doing}: {where} refused the credentials (HTTP {status} {reason})".rstrip()
        return f"{doing}: {where} answered HTTP {status} {reason}".rstrip()
    return f"{doing}: {where} failed ({type(exc).__name__})"
