"""Checks on the committed PneumoniaMNIST ONNX model (resources/algorithms/pneumonia-cxr).

The model is run with onnxruntime only, as the appliance runs it. The figures recomputed here
on the official test split must equal those in metrics.json and meet the targets.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "resources" / "algorithms" / "pneumonia-cxr"
MODEL_PATH = MODEL_DIR / "model.onnx"
METRICS_PATH = MODEL_DIR / "metrics.json"
DATA_PATH = REPO_ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist_28.npz"

TARGET_ACCURACY = 0.90
TARGET_ROC_AUC = 0.96
TOLERANCE = 1e-6


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic, average ranks for ties."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0 + 1.0, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def test_roc_auc_helper_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    scores = np.round(rng.random(200), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    expected = float(np.mean((diff > 0) + 0.5 * (diff == 0)))
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads(METRICS_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    if not DATA_PATH.is_file():
        pytest.skip(f"PneumoniaMNIST not available at {DATA_PATH}")
    with np.load(DATA_PATH) as data:
        images = (data["test_images"].astype(np.float32) / 255.0)[:, None, :, :]
        labels = data["test_labels"].reshape(-1).astype(np.int64)
    return images, labels


def test_model_sha256_matches_metrics(metrics: dict) -> None:
    digest = hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()
    assert digest == metrics["model_sha256"]


def test_model_is_small() -> None:
    assert MODEL_PATH.stat().st_size < 2 * 1024 * 1024


def test_model_signature(session: ort.InferenceSession) -> None:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    assert [i.name for i in inputs] == ["image"]
    assert [o.name for o in outputs] == ["probability"]
    assert inputs[0].type == "tensor(float)"
    assert outputs[0].type == "tensor(float)"
    batch, *rest = inputs[0].shape
    assert isinstance(batch, str)  # dynamic batch axis
    assert rest == [1, 28, 28]
    assert isinstance(outputs[0].shape[0], str)
    assert len(outputs[0].shape) in (1, 2)
    if len(outputs[0].shape) == 2:
        assert outputs[0].shape[1] == 1


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_model_output_is_probability_per_image(session: ort.InferenceSession, batch: int) -> None:
    rng = np.random.default_rng(batch)
    images = rng.random((batch, 1, 28, 28), dtype=np.float32)
    (probability,) = session.run(["probability"], {"image": images})
    assert probability.dtype == np.float32
    assert probability.reshape(-1).shape == (batch,)
    assert np.all((probability >= 0.0) & (probability <= 1.0))


def test_metrics_on_test_split(
    session: ort.InferenceSession, metrics: dict, test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = test_split
    (probability,) = session.run(["probability"], {"image": images})
    probability = np.asarray(probability, dtype=np.float32).reshape(-1)
    threshold = float(metrics["threshold"])
    accuracy = float(np.mean((probability.astype(np.float64) >= threshold) == labels.astype(bool)))
    auc = roc_auc(labels, probability)

    assert metrics["test"]["n"] == labels.size == 624
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=TOLERANCE)
    assert auc == pytest.approx(metrics["test"]["roc_auc"], abs=TOLERANCE)
    assert accuracy >= TARGET_ACCURACY
    assert auc >= TARGET_ROC_AUC
