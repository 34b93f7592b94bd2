"""HTTPS with verification for the REST and DICOMweb links (remote nodes with protocol
``http`` or ``dicomweb``). Qt-free; for every runner that talks HTTP.

How a runner uses it::

    from aifi_app.net.https import secure_link
    link = secure_link(node, settings.node, db)        # raises InsecureUrlError
    urllib.request.urlopen(url, context=link.ssl_context)   # or http.client / httpx
    requests.get(url, verify=link.requests_verify)           # requests / dicomweb-client

Rules:

- ``https://`` only; the server's certificate is verified against the node's ``ca_file``
  (or the system's trust store) and its host name is checked; TLS 1.2 or newer.
- ``http://`` is allowed to this machine (loopback: localhost, 127.0.0.0/8, ::1), where
  nothing crosses the network, and to other hosts only when the node sets
  ``allow_plain_http``: each such link is written to the audit log (category
  ``security``, event ``plain_http``), because data then crosses the network unencrypted.
- our certificate (``node.tls_certificate_file``) is offered as a client certificate when
  configured.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aifi_app.config.settings import NodeSettings, RemoteNode
from aifi_app.net.tls import TlsIdentity, client_context
from aifi_app.store import audit
from aifi_app.store.database import Database


class InsecureUrlError(ValueError):
    """The URL may not be used: not https, and neither loopback nor explicitly allowed."""


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SecureLink:
    url: str
    ssl_context: ssl.SSLContext | None
    """For https: the verifying context; None for an allowed plain-http URL."""
    requests_verify: str | bool
    """``verify=`` for requests: the CA file, or True (system store)."""


def check_url(url: str, *, allow_plain_http: bool = False) -> bool:
    """Whether ``url`` is https (True) or an allowed plain http URL (False).

    Raises :class:`InsecureUrlError` for anything else.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return True
    if scheme == "http" and parts.hostname:
        if is_loopback(parts.hostname) or allow_plain_http:
            return False
        raise InsecureUrlError(
            f"{url} is plain http to another machine: use https, or set allow_plain_http "
            "for this node (every use is audited)"
        )
    raise InsecureUrlError(f"{url!r} is not an http(s) URL with a host")


def https_context(ca_file: Path | None, identity: TlsIdentity | None = None) -> ssl.SSLContext:
    """A client context: server certificate verified, host name checked, TLS 1.2+."""
    return client_context(ca_file=ca_file, identity=identity, check_hostname=True)


def secure_link(
    node: RemoteNode, own: NodeSettings, db: Database | None, url: str | None = None
) -> SecureLink:
    """Check ``url`` (default: the node's) and give what an HTTP client needs to verify it.

    A plain-http URL to another machine, allowed by the node's ``allow_plain_http``, is
    audited in ``db``. Raises :class:`InsecureUrlError` or
    :class:`~aifi_app.net.tls.TlsConfigError`.
    """
    target = url or node.url
    if not check_url(target, allow_plain_http=node.allow_plain_http):
        host = urlsplit(target).hostname or ""
        if not is_loopback(host) and db is not None:
            with db.transaction() as conn:
                audit.record(
                    conn,
                    "security",
                    "plain_http",
                    detail=f"node {node.name}: unencrypted http to {host} (allow_plain_http)",
                )
        return SecureLink(target, None, False)
    ca_file = Path(node.ca_file) if node.ca_file else None
    identity = None
    if own.tls_certificate_file and own.tls_key_file:
        identity = TlsIdentity(Path(own.tls_certificate_file), Path(own.tls_key_file))
    return SecureLink(
        target,
        https_context(ca_file, identity),
        str(ca_file) if ca_file is not None else True,
    )
