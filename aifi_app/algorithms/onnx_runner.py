"""Local inference with ONNX Runtime: DICOM image in, findings out.

Sessions are made once per package and reused (thread-safe for ``run``). CUDA or
DirectML are used when ONNX Runtime offers them, the CPU otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from aifi_app.algorithms.findings import AlgorithmResult, Finding
from aifi_app.algorithms.package import (
    AlgorithmPackage,
    FindingSpec,
    OnnxRunnerSpec,
    Preprocessing,
)

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider")


class InferenceError(RuntimeError):
    """The model could not be run on this input; the message says why in words."""


def _grey_values(ds: Dataset, pre: Preprocessing) -> npt.NDArray[np.float32]:
    """The first frame as float grey values in [0, 1] following ``pre.intensity``."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InferenceError(f"pixel data cannot be decoded ({type(exc).__name__})") from exc
    if pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise InferenceError("only single-channel greyscale images are supported")
    has_window = "WindowCenter" in ds or "VOILUTSequence" in ds
    if pre.intensity == "window" and pre.window is not None:
        center, width = pre.window
        values = apply_modality_lut(pixels, ds).astype(np.float32)
        grey = (values - (center - width / 2.0)) / width
    elif pre.intensity == "stored":
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        grey = pixels.astype(np.float32) / top
    elif int(ds.get("BitsStored", 8)) <= 8 and not has_window and "RescaleSlope" not in ds:
        grey = pixels.astype(np.float32) / 255.0
    else:
        values = apply_modality_lut(pixels, ds)
        if has_window:
            values = apply_voi_lut(values, ds, index=0)
        values = values.astype(np.float32)
        low, high = float(values.min()), float(values.max())
        grey = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        grey = 1.0 - grey
    out: npt.NDArray[np.float32] = np.clip(grey, 0.0, 1.0).astype(np.float32)
    return out


_RESAMPLING = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def image_to_unit_range(
    ds: Dataset, size: tuple[int, int], pre: Preprocessing | None = None
) -> npt.NDArray[np.float32]:
    """The first frame of ``ds`` as grey values in [0, 1], resampled to ``size``.

    With ``intensity = "auto"``, 8-bit images without a VOI window are taken as they are
    (value / 255), which is how the PneumoniaMNIST images the built-in model learnt from
    were stored. Other images get the Modality LUT and the first VOI window (or their full
    range), then a linear stretch. ``"window"`` applies the manifest's window to modality
    values (e.g. HU); ``"stored"`` divides stored values by their largest possible value.
    MONOCHROME1 is inverted so that bone is always bright.
    """
    pre = pre or Preprocessing(size=size)
    grey = _grey_values(ds, pre)
    rows, cols = size
    if grey.shape != (rows, cols):
        img = Image.fromarray(grey.astype(np.float32), mode="F")
        img = img.resize((cols, rows), _RESAMPLING[pre.resample])
        grey = np.asarray(img, dtype=np.float32)
    out: npt.NDArray[np.float32] = np.clip(grey, 0.0, 1.0).astype(np.float32)
    return out


def model_input(images: Sequence[Dataset], pre: Preprocessing) -> npt.NDArray[np.float32]:
    """The model's input tensor: resampled, normalised ((x - mean) / std per channel), the
    grey channel repeated to ``pre.channels``, in ``pre.layout`` (NCHW or NHWC)."""
    batch = np.stack([image_to_unit_range(ds, pre.size, pre) for ds in images])
    batch = np.repeat(batch[:, None, :, :], pre.channels, axis=1)  # N, C, H, W
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(1, -1, 1, 1)
    batch = (batch - mean) / std
    if pre.layout == "NHWC":
        batch = batch.transpose(0, 2, 3, 1)
    out: npt.NDArray[np.float32] = np.ascontiguousarray(batch, dtype=np.float32)
    return out


def class_probability(raw: npt.NDArray[np.float32], spec: FindingSpec) -> npt.NDArray[np.float32]:
    """Each image's probability for the finding's class, from the raw output (N, ...)."""
    logits = raw.reshape(len(raw), -1).astype(np.float64)
    if spec.class_index >= logits.shape[1]:
        raise InferenceError(
            f"model gives {logits.shape[1]} output(s); the manifest names class {spec.class_index}"
        )
    if spec.activation == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
    elif spec.activation == "sigmoid":
        probs = 1.0 / (1.0 + np.exp(-logits))
    else:
        probs = logits
    out: npt.NDArray[np.float32] = probs[:, spec.class_index].astype(np.float32)
    return out


class OnnxRunner:
    """Runs one algorithm package's ONNX model. ``run`` may be called from any thread."""

    def __init__(
        self,
        package: AlgorithmPackage,
        *,
        threads: int = 0,
        inter_op_threads: int = 1,
        providers: Sequence[str] = PREFERRED_PROVIDERS,
    ) -> None:
        if not isinstance(package.runner, OnnxRunnerSpec):
            raise InferenceError(f"{package.identity.algorithm_id} is not an ONNX package")
        self.package = package
        self.spec: OnnxRunnerSpec = package.runner
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        if inter_op_threads > 0:
            options.inter_op_num_threads = inter_op_threads
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(
            str(self.spec.model), sess_options=options, providers=chosen
        )
        log.info(
            "algorithm %s %s loaded (providers %s)",
            package.identity.algorithm_id,
            package.identity.version,
            ",".join(self.session.get_providers()),
        )

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The finding's probability for a model input batch (see :func:`model_input`)."""
        out = self.session.run([self.spec.output_name], {self.spec.input_name: batch})[0]
        return class_probability(np.asarray(out, dtype=np.float32), self.package.finding)

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        """One finding per image (the pseudonymised data sets the job selected)."""
        if not images:
            raise InferenceError("no image to run the algorithm on")
        finding = self.package.finding
        scores = self.probabilities(model_input(images, self.spec.preprocessing))
        findings = []
        for ds, score in zip(images, scores, strict=True):
            positive = bool(score >= finding.threshold)
            findings.append(
                Finding(
                    concept=finding.concept,
                    score=round(float(score), 6),
                    threshold=finding.threshold,
                    positive=positive,
                    source_sop_instance_uid=str(ds.SOPInstanceUID),
                    source_sop_class_uid=str(ds.SOPClassUID),
                    source_series_instance_uid=str(ds.SeriesInstanceUID),
                    label=finding.positive_label if positive else finding.negative_label,
                )
            )
        return AlgorithmResult(algorithm=self.package.identity, findings=tuple(findings))
