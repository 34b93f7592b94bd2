"""Small ONNX models whose outputs can be worked out by hand, built with the ``onnx``
package, and algorithm packages around them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.helpers.packages import rehash

OPSET = 13


def _model(
    nodes: list[onnx.NodeProto],
    output: str,
    inits: list[TensorProto],
    shape: list[str | int],
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "test-model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def mean_model() -> bytes:
    """value (N, 1): the mean of each input image."""
    return _model(
        [
            helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["m", "shape"], ["value"]),
        ],
        "value",
        [_const("shape", np.array([-1, 1], dtype=np.int64))],
        ["N", 1],
    )


def constant_boxes_model(rows: list[list[float]]) -> bytes:
    """boxes (N, K, F): the same rows for every image (the input only sets N)."""
    table = np.asarray([rows], dtype=np.float32)
    return _model(
        [
            helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["m", "shape"], ["m3"]),
            helper.make_node("Mul", ["m3", "zero"], ["z"]),
            helper.make_node("Add", ["z", "table"], ["boxes"]),
        ],
        "boxes",
        [
            _const("shape", np.array([-1, 1, 1], dtype=np.int64)),
            _const("zero", np.zeros((1,), dtype=np.float32)),
            _const("table", table),
        ],
        ["N", len(rows), len(rows[0])],
    )


def identity_heat_map_model() -> bytes:
    """heat (N, 1, 16, 16): the model input itself."""
    return _model([helper.make_node("Identity", ["image"], ["heat"])], "heat", [], ["N", 1, 16, 16])


def slow_model(size: int = 1024, steps: int = 6) -> bytes:
    """probability (N, 1), always 0, after ``steps`` chained size x size matrix products
    that depend on the input (so that they are not folded away when the session loads)."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["m"], ["s"], axes=[0], keepdims=0),
        helper.make_node("Add", ["a", "s"], ["x0"]),
    ]
    for i in range(steps):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "a"], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"x{steps}"], ["t"], keepdims=0),
        helper.make_node("Mul", ["t", "zero"], ["tz"]),
        helper.make_node("Mul", ["m", "zero"], ["mz"]),
        helper.make_node("Add", ["mz", "tz"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["probability"]),
    ]
    return _model(
        nodes,
        "probability",
        [
            _const("a", np.full((size, size), 1e-4, dtype=np.float32)),
            _const("zero", np.zeros((), dtype=np.float32)),
            _const("shape", np.array([-1, 1], dtype=np.int64)),
        ],
        ["N", 1],
    )


ONNX_MANIFEST = """schema_version = 1
id = "{id}"
name = "Test model"
version = "0.1.0"
vendor = "Test"
intended_use = "Tests only."
model_card = "MODEL_CARD.md"

[files]

[input]
modalities = ["DX"]

[input.selection]
scope = "image"
max_images = 1

[pseudonymisation]
options = []

[runner]
kind = "onnx"
model = "model.onnx"
input_name = "image"
output_name = "{output_name}"

[runner.preprocessing]
size = [16, 16]
resample = "{resample}"

{output}

[results]
objects = {objects}

[timeouts]
inference_seconds = {timeout}
"""


def make_onnx_package(
    dest: Path,
    model: bytes,
    *,
    output_name: str,
    output: str,
    objects: str,
    package_id: str = "test-model",
    timeout: float = 60,
    resample: str = "box",
) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "model.onnx").write_bytes(model)
    (dest / "MODEL_CARD.md").write_text("# Test model\n")
    text = ONNX_MANIFEST
    for key, value in {
        "{id}": package_id,
        "{output_name}": output_name,
        "{output}": output,
        "{objects}": objects,
        "{timeout}": str(timeout),
        "{resample}": resample,
    }.items():
        text = text.replace(key, value)
    (dest / "manifest.toml").write_text(text)
    rehash(dest)
    return dest
