"""HTTPS with verification, against a real HTTPS server on loopback (test CA made now)."""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aifi_app.config.settings import NodeSettings, RemoteNode
from aifi_app.net.https import InsecureUrlError, check_url, secure_link
from aifi_app.net.tls import TlsIdentity, server_context
from aifi_app.store.database import Database
from tests.helpers.file_keyring import file_keyring
from tests.helpers.pki import CertificateAuthority


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, CertificateAuthority]]:
    with file_keyring(tmp_path):
        yield (
            CertificateAuthority.create(tmp_path / "pki"),
            CertificateAuthority.create(tmp_path / "pki", "Rogue CA"),
        )


@pytest.fixture
def https_server(
    tmp_path: Path, pki: tuple[CertificateAuthority, CertificateAuthority]
) -> Iterator[int]:
    issued = pki[0].issue(tmp_path / "pki", "vendor", hosts=("127.0.0.1", "localhost"))
    context = server_context(
        TlsIdentity(issued.certificate, issued.key), ca_file=None, require_client_certificate=False
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _node(url: str, ca_file: Path | None = None, **kw: object) -> RemoteNode:
    return RemoteNode(
        name="V", protocol="http", role="vendor", url=url, ca_file=str(ca_file or ""), **kw
    )  # type: ignore[arg-type]


def test_verified_https_works(
    https_server: int, pki: tuple[CertificateAuthority, CertificateAuthority]
) -> None:
    node = _node(f"https://localhost:{https_server}/", pki[0].certificate_file)
    link = secure_link(node, NodeSettings(), None)
    assert link.ssl_context is not None
    with urllib.request.urlopen(link.url, context=link.ssl_context, timeout=10) as rsp:
        assert rsp.read() == b"hello"


def test_unknown_ca_is_refused(
    https_server: int, pki: tuple[CertificateAuthority, CertificateAuthority]
) -> None:
    node = _node(f"https://127.0.0.1:{https_server}/", pki[1].certificate_file)
    link = secure_link(node, NodeSettings(), None)
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(link.url, context=link.ssl_context, timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_host_name_is_checked(
    tmp_path: Path, pki: tuple[CertificateAuthority, CertificateAuthority]
) -> None:
    other = pki[0].issue(tmp_path / "pki", "other", hosts=("vendor.example",))
    context = server_context(
        TlsIdentity(other.certificate, other.key), ca_file=None, require_client_certificate=False
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = _node(f"https://127.0.0.1:{server.server_address[1]}/", pki[0].certificate_file)
        link = secure_link(node, NodeSettings(), None)
        with pytest.raises(urllib.error.URLError) as caught:
            urllib.request.urlopen(link.url, context=link.ssl_context, timeout=10)
        assert "match" in str(caught.value.reason) or "mismatch" in str(caught.value.reason)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("url", "allowed", "secure"),
    [
        ("https://vendor.example/api", False, True),
        ("http://127.0.0.1:8042/dicom-web", False, False),
        ("http://localhost/x", False, False),
        ("http://[::1]:80/x", False, False),
        ("http://vendor.example/api", True, False),
    ],
)
def test_url_rules(url: str, allowed: bool, secure: bool) -> None:
    assert check_url(url, allow_plain_http=allowed) is secure


@pytest.mark.parametrize("url", ["http://vendor.example/api", "ftp://x/y", "https:///nohost"])
def test_insecure_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureUrlError):
        check_url(url)


def test_plain_http_opt_out_is_audited(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    try:
        node = _node("http://10.1.2.3:8080/api", allow_plain_http=True)
        link = secure_link(node, NodeSettings(), db)
        assert link.ssl_context is None
        (row,) = db.query("SELECT category, event, detail FROM audit_events")
        assert row["event"] == "plain_http" and "10.1.2.3" in row["detail"]
        secure_link(_node("http://127.0.0.1:8080/api"), NodeSettings(), db)  # loopback
        assert len(db.query("SELECT id FROM audit_events")) == 1
    finally:
        db.close()
