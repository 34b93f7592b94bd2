"""The local runner's manifest-declared preprocessing and output mapping."""

from __future__ import annotations

import numpy as np
import pytest

from aifi_app.algorithms.findings import CodedConcept
from aifi_app.algorithms.onnx_runner import (
    InferenceError,
    OnnxRunner,
    class_probability,
    image_to_unit_range,
    model_input,
)
from aifi_app.algorithms.package import (
    FindingSpec,
    Preprocessing,
    builtin_package_dir,
    load_package,
)
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.sample_studies import ct_series, demo_patient

SPEC = FindingSpec(CodedConcept("1", "X", "x"), 0.5, "yes", "no")


def _ct():  # type: ignore[no-untyped-def]
    ds = next(ct_series(demo_patient(1), 1, size=8))
    values = np.full((8, 8), 1024 - 1000, dtype=np.int16)  # air: -1000 HU
    values[:, 4:] = 1024 + 40  # soft tissue: 40 HU
    ds.PixelData = values.tobytes()
    return ds


def test_window_maps_modality_values_to_unit_range() -> None:
    pre = Preprocessing(size=(8, 8), intensity="window", window=(40.0, 400.0))
    grey = image_to_unit_range(_ct(), (8, 8), pre)
    assert grey[0, 0] == 0.0
    assert grey[0, 7] == pytest.approx(0.5)


def test_channels_normalisation_and_layout() -> None:
    pre = Preprocessing(
        size=(4, 4),
        intensity="window",
        window=(40.0, 400.0),
        resample="nearest",
        mean=(0.5, 0.0, 0.25),
        std=(0.5, 1.0, 0.25),
        channels=3,
        layout="NHWC",
    )
    tensor = model_input([_ct(), _ct()], pre)
    assert tensor.shape == (2, 4, 4, 3)
    assert tensor.dtype == np.float32
    assert tensor[0, 0, 3].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert tensor[0, 0, 0].tolist() == pytest.approx([-1.0, 0.0, -1.0])


def test_output_activations() -> None:
    logits = np.array([[0.0, 2.0], [1.0, 1.0]], dtype=np.float32)
    soft = FindingSpec(SPEC.concept, 0.5, "y", "n", class_index=1, activation="softmax")
    assert class_probability(logits, soft).tolist() == pytest.approx([0.8808, 0.5], abs=1e-4)
    sig = FindingSpec(SPEC.concept, 0.5, "y", "n", class_index=0, activation="sigmoid")
    assert class_probability(logits, sig).tolist() == pytest.approx([0.5, 0.7311], abs=1e-4)
    bad = FindingSpec(SPEC.concept, 0.5, "y", "n", class_index=5)
    with pytest.raises(InferenceError, match="model gives 2 output"):
        class_probability(logits, bad)


def test_session_is_cached_per_package_and_threads_apply() -> None:
    package = load_package(builtin_package_dir() / "pneumonia-cxr", builtin=True)
    cache = RunnerCache(2, inter_op_threads=1, providers=("NoSuchProvider",))
    runner = cache.get(package)
    assert cache.get(package) is runner
    assert isinstance(runner, OnnxRunner)
    assert runner.session.get_providers() == ["CPUExecutionProvider"]
    assert runner.session.get_session_options().intra_op_num_threads == 2
