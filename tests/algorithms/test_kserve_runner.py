"""The KServe v2 / Triton runner against an Open Inference Protocol server on loopback
that runs the built-in pneumonia model with ONNX Runtime: the same score as the local
runner, only a tensor leaves the box, and the failures in words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset

from aifi_app.algorithms.kserve_runner import KServeV2Runner
from aifi_app.algorithms.onnx_runner import InferenceError, OnnxRunner
from aifi_app.algorithms.package import builtin_package_dir, load_package
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.config.settings import RemoteNode, Settings
from aifi_app.pseudonymise import Pseudonymiser
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest
from tests.helpers.file_keyring import file_keyring
from tests.helpers.packages import make_package, rehash
from tests.helpers.v2_inference_server import V2InferenceServer

BUILTIN = builtin_package_dir() / "pneumonia-cxr"
PATIENT = SamplePatient("Visser^Daan", "PID3131", "20010203", "M", "ACC3131")
LOCAL_RUNNER = """kind = "onnx"
model = "model.onnx"
"""


@pytest.fixture(autouse=True)
def keyring_in_tmp(tmp_path: Path) -> Iterator[None]:
    with file_keyring(tmp_path / "keyring"):
        yield


@pytest.fixture
def image() -> Dataset:
    return Pseudonymiser(b"k" * 32, frozenset()).pseudonymise(
        chest_radiograph(PATIENT, phantom_chest())
    )


def _package(tmp_path: Path, model_name: str = "pneumonia", timeout: float = 30):  # type: ignore[no-untyped-def]
    runner = f'kind = "kserve_v2"\nnode = "cluster"\nmodel_name = "{model_name}"\n'
    folder = make_package(
        tmp_path / "p",
        package_id="pneumonia-cluster",
        replace={LOCAL_RUNNER: runner, "inference_seconds = 60": f"inference_seconds = {timeout}"},
    )
    (folder / "model.onnx").unlink()  # the model lives on the server
    rehash(folder)
    return load_package(folder)


def _runner(package, url: str) -> KServeV2Runner:  # type: ignore[no-untyped-def]
    node = RemoteNode("cluster", protocol="http", url=url, role="vendor")
    return KServeV2Runner(package, lambda: Settings(remote_nodes=(node,)))


def test_remote_score_equals_the_local_one_and_only_a_tensor_left(
    tmp_path: Path, image: Dataset
) -> None:
    server = V2InferenceServer({"pneumonia": BUILTIN / "model.onnx"})
    try:
        remote = _runner(_package(tmp_path), server.url).run([image])
    finally:
        server.stop()
    local = OnnxRunner(load_package(BUILTIN, builtin=True)).run([image])
    assert remote.findings[0].score == local.findings[0].score
    assert remote.findings[0].positive == local.findings[0].positive
    assert remote.findings[0].source_sop_instance_uid == image.SOPInstanceUID
    (body,) = server.bodies
    assert set(body) == {"inputs", "outputs"}
    assert body["inputs"][0]["shape"] == [1, 1, 28, 28]
    assert str(image.SOPInstanceUID) not in json.dumps(body)


def test_runner_cache_makes_a_kserve_runner(tmp_path: Path) -> None:
    cache = RunnerCache(settings=lambda: Settings())
    assert isinstance(cache.get(_package(tmp_path)), KServeV2Runner)


def test_unknown_model_fails_with_the_servers_words(tmp_path: Path, image: Dataset) -> None:
    server = V2InferenceServer({"pneumonia": BUILTIN / "model.onnx"})
    try:
        with pytest.raises(InferenceError) as caught:
            _runner(_package(tmp_path, "nomodel"), server.url).run([image])
    finally:
        server.stop()
    assert str(caught.value) == (
        "inference of nomodel: cluster answered HTTP 404:"
        " Request for unknown model: 'nomodel' is not found"
    )


def test_slow_server_times_out_at_the_inference_timeout(tmp_path: Path, image: Dataset) -> None:
    server = V2InferenceServer({"pneumonia": BUILTIN / "model.onnx"}, mode="slow")
    server.slow_seconds = 3
    try:
        with pytest.raises(InferenceError) as caught:
            _runner(_package(tmp_path, timeout=0.5), server.url).run([image])
    finally:
        server.stop()
    assert str(caught.value) == (
        f"inference of pneumonia: cluster ({server.url}) did not answer within 0.5 s (timed out)"
    )


def test_answer_without_the_output(tmp_path: Path, image: Dataset) -> None:
    server = V2InferenceServer({"pneumonia": BUILTIN / "model.onnx"}, mode="no_output")
    try:
        with pytest.raises(InferenceError) as caught:
            _runner(_package(tmp_path), server.url).run([image])
    finally:
        server.stop()
    assert str(caught.value) == (
        "the answer of cluster has no output 'probability' (it has something_else)"
    )
