"""Local inference with ONNX Runtime: DICOM image in, findings out.

Sessions are made once per package and reused (thread-safe for ``run``). CUDA or
DirectML are used when ONNX Runtime offers them, the CPU otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from aifi_app.algorithms.findings import AlgorithmResult, Finding
from aifi_app.algorithms.package import AlgorithmPackage

log = logging.getLogger(__name__)

_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider")


class InferenceError(RuntimeError):
    """The model could not be run on this input; the message says why in words."""


def image_to_unit_range(ds: Dataset, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The first frame of ``ds`` as grey values in [0, 1], resampled to ``size``.

    8-bit images without a VOI window are taken as they are (value / 255), which is how the
    PneumoniaMNIST images the built-in model learnt from were stored. Other images get the
    Modality LUT and the first VOI window (or their full range), then a linear stretch.
    MONOCHROME1 is inverted so that bone is always bright.
    """
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InferenceError(f"pixel data cannot be decoded ({type(exc).__name__})") from exc
    if pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise InferenceError("only single-channel greyscale images are supported")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    has_window = "WindowCenter" in ds or "VOILUTSequence" in ds
    if int(ds.get("BitsStored", 8)) <= 8 and not has_window and "RescaleSlope" not in ds:
        grey = pixels.astype(np.float32) / 255.0
    else:
        values = apply_modality_lut(pixels, ds)
        if has_window:
            values = apply_voi_lut(values, ds, index=0)
        values = values.astype(np.float32)
        low, high = float(values.min()), float(values.max())
        grey = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        grey = 1.0 - grey
    rows, cols = size
    if grey.shape != (rows, cols):
        img = Image.fromarray(grey.astype(np.float32), mode="F")
        img = img.resize((cols, rows), Image.Resampling.BOX)
        grey = np.asarray(img, dtype=np.float32)
    out: npt.NDArray[np.float32] = np.clip(grey, 0.0, 1.0).astype(np.float32)
    return out


class OnnxRunner:
    """Runs one algorithm package's ONNX model. ``run`` may be called from any thread."""

    def __init__(self, package: AlgorithmPackage, *, threads: int = 0) -> None:
        self.package = package
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = [p for p in _PREFERRED_PROVIDERS if p in available]
        self.session = ort.InferenceSession(
            str(package.runner.model), sess_options=options, providers=providers
        )
        log.info(
            "algorithm %s %s loaded (providers %s)",
            package.identity.algorithm_id,
            package.identity.version,
            ",".join(self.session.get_providers()),
        )

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Model output for a batch shaped (N, rows, cols) of values in [0, 1]."""
        spec = self.package.runner
        out = self.session.run([spec.output_name], {spec.input_name: batch[:, None, :, :]})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(batch))

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        """One finding per image (the pseudonymised data sets the job selected)."""
        if not images:
            raise InferenceError("no image to run the algorithm on")
        spec = self.package
        batch = np.stack([image_to_unit_range(ds, spec.runner.preprocessing.size) for ds in images])
        scores = self.probabilities(batch)
        findings = []
        for ds, score in zip(images, scores, strict=True):
            positive = bool(score >= spec.finding.threshold)
            findings.append(
                Finding(
                    concept=spec.finding.concept,
                    score=round(float(score), 6),
                    threshold=spec.finding.threshold,
                    positive=positive,
                    source_sop_instance_uid=str(ds.SOPInstanceUID),
                    source_sop_class_uid=str(ds.SOPClassUID),
                    source_series_instance_uid=str(ds.SeriesInstanceUID),
                    label=spec.finding.positive_label if positive else spec.finding.negative_label,
                )
            )
        return AlgorithmResult(algorithm=spec.identity, findings=tuple(findings))


class RunnerCache:
    """One runner per algorithm package, made on first use."""

    def __init__(self, threads: int = 0) -> None:
        self._threads = threads
        self._runners: dict[str, OnnxRunner] = {}
        self._lock = threading.Lock()

    def get(self, package: AlgorithmPackage) -> OnnxRunner:
        key = f"{package.identity.algorithm_id}@{package.identity.version}"
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = OnnxRunner(package, threads=self._threads)
                self._runners[key] = runner
            return runner
