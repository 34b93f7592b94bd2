"""An inference server speaking the KServe v2 / Triton HTTP protocol for tests (no such
server is installed here: KServe's and MLServer's pull in Kubernetes, gRPC and pandas).
It serves ONNX models with ONNX Runtime, so the inference is real; it keeps every request
body so a test can see what left the box. Modes: answer, slow (waits ``slow_seconds``),
no_output (answers without the requested output)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class V2InferenceServer:
    def __init__(self, models: dict[str, Path], *, mode: str = "answer") -> None:
        self.sessions = {
            name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for name, path in models.items()
        }
        self.mode = mode
        self.slow_seconds = 5.0
        self.bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v2/health/ready":
                    self._json(200, {"ready": True})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                match = _INFER.match(self.path)
                if match is None or match.group(1) not in server.sessions:
                    name = match.group(1) if match else self.path
                    self._json(404, {"error": f"Request for unknown model: '{name}' is not found"})
                    return
                request = json.loads(raw)
                server.bodies.append(request)
                if server.mode == "slow":
                    time.sleep(server.slow_seconds)
                self._json(200, server.infer(match.group(1), request))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a client that gave up (the timeout tests) leaves a broken pipe: not worth a traceback
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def infer(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions[name]
        feeds = {
            i["name"]: np.asarray(i["data"], dtype=np.float32).reshape(i["shape"])
            for i in request["inputs"]
        }
        wanted = [o["name"] for o in request.get("outputs", [])] or [
            o.name for o in session.get_outputs()
        ]
        results = session.run(wanted, feeds)
        outputs = [
            {"name": n, "shape": list(r.shape), "datatype": "FP32", "data": r.ravel().tolist()}
            for n, r in zip(wanted, results, strict=True)
        ]
        if self.mode == "no_output":
            outputs = [dict(o, name="something_else") for o in outputs]
        return {"model_name": name, "outputs": outputs}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
