"""Remote inference on a server speaking the KServe v2 / Triton HTTP protocol (the Open
Inference Protocol): ``POST <url>/v2/models/<name>[/versions/<v>]/infer``, for a site
that runs its models on an inference cluster instead of the workstation.

The appliance prepares the input tensor exactly as for a local ONNX model (the manifest's
preprocessing) and maps the output tensor with the same code (classification, measurement,
boxes, mask), so a model moves between the workstation and the cluster by changing its
runner only. Only the tensor leaves the box, never a DICOM header. The request uses the
protocol's JSON tensor form (``data`` as a flat list), runs within the package's
``inference_seconds``, and fails in words.

Requests are made with ``requests`` rather than ``tritonclient[http]``: that client is
built on gevent/geventhttpclient, which does not belong in this threaded appliance, and
the protocol's JSON form is a few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import requests
from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.algorithms.onnx_runner import InferenceError, map_output, model_input
from aifi_app.algorithms.package import AlgorithmPackage, KServeV2Spec
from aifi_app.algorithms.vendor_http import (
    VendorHttpError,
    http_failure_words,
    http_node,
    session_for,
)
from aifi_app.config.settings import RemoteNode, Settings

_DTYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


class KServeV2Runner:
    """Runs one package's model on a KServe v2 / Triton inference server."""

    def __init__(self, package: AlgorithmPackage, settings: Callable[[], Settings]) -> None:
        assert isinstance(package.runner, KServeV2Spec)
        self.package = package
        self.spec: KServeV2Spec = package.runner
        self._settings = settings

    def node(self) -> RemoteNode:
        return http_node(self._settings, self.spec.node)

    def infer_url(self, node: RemoteNode) -> str:
        url = f"{node.url.rstrip('/')}/v2/models/{self.spec.model_name}"
        if self.spec.model_version:
            url += f"/versions/{self.spec.model_version}"
        return url + "/infer"

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        node = self.node()
        limit = self.package.inference_timeout_seconds
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": self.spec.input_name,
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "data": batch.ravel().tolist(),
                }
            ],
            "outputs": [{"name": self.spec.output_name}],
        }
        doing = f"inference of {self.spec.model_name}"
        try:
            session = session_for(node)
        except VendorHttpError as exc:
            raise InferenceError(str(exc)) from exc
        with session:
            try:
                response = session.post(
                    self.infer_url(node), json=body, timeout=(min(10.0, limit), limit)
                )
            except (requests.exceptions.RequestException, OSError) as exc:
                raise InferenceError(http_failure_words(exc, node, doing, limit)) from exc
        if response.status_code != 200:
            # the server's words: it only ever saw a tensor, so they hold no identifier
            words = _error_text(response)
            raise InferenceError(
                f"{doing}: {node.name} answered HTTP {response.status_code}"
                + (f": {words}" if words else "")
            )
        return self._output(response, node)

    def _output(self, response: requests.Response, node: RemoteNode) -> npt.NDArray[np.float32]:
        try:
            answer: Any = response.json()
            outputs = {o["name"]: o for o in answer["outputs"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise InferenceError(
                f"the answer of {node.name} is not a KServe v2 inference response"
            ) from exc
        out = outputs.get(self.spec.output_name)
        if out is None:
            raise InferenceError(
                f"the answer of {node.name} has no output {self.spec.output_name!r}"
                f" (it has {', '.join(sorted(outputs)) or 'none'})"
            )
        try:
            dtype = _DTYPES[str(out["datatype"])]
            shape = [int(d) for d in out["shape"]]
            values: npt.NDArray[Any] = np.asarray(out["data"], dtype=dtype).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(
                f"the answer of {node.name} has output {self.spec.output_name!r} in a form"
                " this appliance does not read (datatype, shape and flat data expected)"
            ) from exc
        return values.astype(np.float32)

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        if not images:
            raise InferenceError("no image to run the algorithm on")
        batch = model_input(images, self.spec.preprocessing)
        raw = self.infer(batch)
        return map_output(raw, images, self.package, self.spec.preprocessing.size)


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error", "")
    except (ValueError, AttributeError):
        return ""
    return str(error)[:200]
