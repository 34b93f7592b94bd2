"""A vendor's REST/JSON service for tests (no real vendor service runs here): HTTPS on
loopback with a certificate from the test CA, a bearer token, and a JSON answer. It reads
every image posted to it and checks the bytes for original identifiers. Modes: answer,
malformed (an answer that is not JSON), slow (answers after ``slow_seconds``)."""

from __future__ import annotations

import email
import email.policy
import io
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydicom import Dataset, dcmread

from tests.helpers.tls_ca import TlsFiles


class HttpVendor:
    def __init__(
        self,
        tls: TlsFiles,
        *,
        token: str,
        answer: dict[str, Any],
        forbidden: tuple[str, ...] = (),
        mode: str = "answer",
        slow_seconds: float = 5.0,
    ) -> None:
        self.token = token
        self.answer = answer
        self.forbidden = forbidden
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.received: list[Dataset] = []
        self.leaks: list[str] = []
        self.requests: list[tuple[str, str]] = []
        """(path, content type) of every request that got through authentication."""
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Authorization") != f"Bearer {vendor.token}":
                    self._reply(401, b'{"error": "invalid token"}')
                    return
                kind = self.headers.get("Content-Type", "")
                vendor.requests.append((self.path, kind))
                vendor.take(body, kind)
                if vendor.mode == "slow":
                    time.sleep(vendor.slow_seconds)
                if vendor.mode == "malformed":
                    self._reply(200, b"<html>gateway error</html>", "text/html")
                    return
                self._reply(200, json.dumps(vendor.answer).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a client that gave up (the timeout tests) leaves a broken pipe: not worth a traceback
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def take(self, body: bytes, kind: str) -> None:
        for secret in self.forbidden:
            if secret.encode() in body:
                self.leaks.append(secret)
        if kind.startswith("application/dicom"):
            self.received.append(dcmread(io.BytesIO(body)))
            return
        message = email.message_from_bytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + body, policy=email.policy.HTTP
        )
        for part in message.iter_parts():  # type: ignore[attr-defined]
            payload = part.get_payload(decode=True)
            self.received.append(dcmread(io.BytesIO(payload)))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
