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
from PIL import Image
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from aifi_app.algorithms.findings import (
    AlgorithmResult,
    Finding,
    MeasurementFinding,
    RegionFinding,
    SegmentationMask,
)
from aifi_app.algorithms.package import (
    AlgorithmPackage,
    BoxesSpec,
    FindingSpec,
    MaskSpec,
    MeasurementSpec,
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
        # imported on first use: ONNX Runtime takes 0.1-0.6 s to import, which the service's
        # start would otherwise spend before it accepts associations
        import onnxruntime as ort

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

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's raw output for a batch, stopped after the package's inference
        timeout (ONNX Runtime's ``RunOptions.terminate``, set from a timer thread; the
        session stays usable)."""
        import onnxruntime as ort  # loaded already: __init__ imported it

        limit = self.package.inference_timeout_seconds
        options = ort.RunOptions()
        timer = threading.Timer(limit, setattr, args=(options, "terminate", True))
        timer.daemon = True
        timer.start()
        try:
            out = self.session.run(
                [self.spec.output_name], {self.spec.input_name: batch}, run_options=options
            )[0]
        except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
            if options.terminate:
                raise InferenceError(f"inference did not finish within {limit:g} s") from exc
            raise InferenceError(f"the model could not run: {str(exc)[:300]}") from exc
        finally:
            timer.cancel()
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The finding's probability for a model input batch (see :func:`model_input`)."""
        return class_probability(self.infer(batch), self.package.finding)

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        """The findings on the (pseudonymised) data sets the job selected, by the
        manifest's output kind: classification, measurement, boxes or mask."""
        if not images:
            raise InferenceError("no image to run the algorithm on")
        raw = self.infer(model_input(images, self.spec.preprocessing))
        return map_output(raw, images, self.package, self.spec.preprocessing.size)


def map_output(
    raw: npt.NDArray[np.float32],
    images: Sequence[Dataset],
    package: AlgorithmPackage,
    input_size: tuple[int, int],
) -> AlgorithmResult:
    """A model's raw output tensor as findings, by the manifest's output kind
    (classification, measurement, boxes or mask); shared by local and remote models."""
    out = package.output
    identity = package.identity
    if isinstance(out, MeasurementSpec):
        return AlgorithmResult(identity, measurements=measurements(raw, images, out))
    if isinstance(out, BoxesSpec):
        findings, regions = boxes(raw, images, out, input_size)
        return AlgorithmResult(identity, findings=findings, regions=regions)
    if isinstance(out, MaskSpec):
        return AlgorithmResult(identity, segmentations=(segmentation(raw, images, out),))
    return AlgorithmResult(identity, findings=classifications(raw, images, package.finding))


def _source(ds: Dataset) -> dict[str, str]:
    return {
        "source_sop_instance_uid": str(ds.SOPInstanceUID),
        "source_sop_class_uid": str(ds.SOPClassUID),
        "source_series_instance_uid": str(ds.SeriesInstanceUID),
    }


def classifications(
    raw: npt.NDArray[np.float32], images: Sequence[Dataset], finding: FindingSpec
) -> tuple[Finding, ...]:
    """One finding per image from a classifier's output."""
    scores = class_probability(raw, finding)
    found = []
    for ds, score in zip(images, scores, strict=True):
        positive = bool(score >= finding.threshold)
        found.append(
            Finding(
                concept=finding.concept,
                score=round(float(score), 6),
                threshold=finding.threshold,
                positive=positive,
                **_source(ds),
                label=finding.positive_label if positive else finding.negative_label,
            )
        )
    return tuple(found)


def measurements(
    raw: npt.NDArray[np.float32], images: Sequence[Dataset], spec: MeasurementSpec
) -> tuple[MeasurementFinding, ...]:
    """One measurement per image: output value ``value_index`` * scale + offset."""
    values = raw.reshape(len(images), -1).astype(np.float64)
    if spec.value_index >= values.shape[1]:
        raise InferenceError(
            f"model gives {values.shape[1]} value(s) per image; the manifest names value"
            f" {spec.value_index}"
        )
    found = []
    for ds, row in zip(images, values, strict=True):
        value = round(float(row[spec.value_index]) * spec.scale + spec.offset, 6)
        found.append(
            MeasurementFinding(
                concept=spec.concept,
                quantity=spec.quantity,
                value=value,
                unit=spec.unit,
                method="regression by a local ONNX model",
                source_series_instance_uid=str(ds.SeriesInstanceUID),
                source_sop_instance_uids=(str(ds.SOPInstanceUID),),
                source_sop_class_uid=str(ds.SOPClassUID),
                label=f"{spec.quantity.meaning} {value:g} {spec.unit.value}",
            )
        )
    return tuple(found)


def _corners(row: npt.NDArray[np.float64], fields: tuple[str, ...]) -> tuple[float, ...]:
    """(x0, y0, x1, y1) of one output row, from corners or from centre and size."""
    get = {name: float(row[i]) for i, name in enumerate(fields) if name != "ignore"}
    if {"x0", "y0", "x1", "y1"} <= get.keys():
        return get["x0"], get["y0"], get["x1"], get["y1"]
    half_w, half_h = get["w"] / 2.0, get["h"] / 2.0
    return get["cx"] - half_w, get["cy"] - half_h, get["cx"] + half_w, get["cy"] + half_h


def boxes(
    raw: npt.NDArray[np.float32],
    images: Sequence[Dataset],
    spec: BoxesSpec,
    input_size: tuple[int, int],
) -> tuple[tuple[Finding, ...], tuple[RegionFinding, ...]]:
    """Boxes scored at or above the threshold, scaled from the model input back to each
    source image's pixels (and clipped to it); and per image a finding with the best box
    score (positive when any box is kept)."""
    width = len(spec.fields)
    try:
        rows = raw.astype(np.float64).reshape(len(images), -1, width)
    except ValueError as exc:
        raise InferenceError(
            f"model output of shape {tuple(raw.shape)} is not rows of the manifest's"
            f" {width} output.fields per image"
        ) from exc
    in_rows, in_cols = input_size
    score_at = spec.fields.index("score")
    findings: list[Finding] = []
    regions: list[RegionFinding] = []
    for ds, image_rows in zip(images, rows, strict=True):
        columns, height = int(ds.Columns), int(ds.Rows)
        if spec.coordinates == "normalised":
            sx, sy = float(columns), float(height)
        else:
            sx, sy = columns / in_cols, height / in_rows
        kept = sorted(
            (r for r in image_rows if r[score_at] >= spec.score_threshold),
            key=lambda r: -float(r[score_at]),
        )[: spec.max_boxes]
        for row in kept:
            x0, y0, x1, y1 = _corners(row, spec.fields)
            x0, x1 = sorted((min(max(x0 * sx, 0.0), columns), min(max(x1 * sx, 0.0), columns)))
            y0, y1 = sorted((min(max(y0 * sy, 0.0), height), min(max(y1 * sy, 0.0), height)))
            score = round(float(row[score_at]), 6)
            regions.append(
                RegionFinding(
                    concept=spec.concept,
                    label=f"{spec.label} ({score:.2f})",
                    shape="box",
                    points=((round(x0, 4), round(y0, 4)), (round(x1, 4), round(y1, 4))),
                    source_sop_instance_uid=str(ds.SOPInstanceUID),
                    source_sop_class_uid=str(ds.SOPClassUID),
                    source_series_instance_uid=str(ds.SeriesInstanceUID),
                    score=score,
                )
            )
        best = max((float(r[score_at]) for r in image_rows), default=0.0)
        findings.append(
            Finding(
                concept=spec.concept,
                score=round(min(max(best, 0.0), 1.0), 6),
                threshold=spec.score_threshold,
                positive=bool(kept),
                **_source(ds),
                label=spec.positive_label if kept else spec.negative_label,
            )
        )
    return tuple(findings), tuple(regions)


def segmentation(
    raw: npt.NDArray[np.float32], images: Sequence[Dataset], spec: MaskSpec
) -> SegmentationMask:
    """The heat map of every image, resized back to its source geometry and thresholded."""
    maps = raw.astype(np.float32)
    if maps.ndim == 4:
        if spec.channel >= maps.shape[1]:
            raise InferenceError(
                f"model output has {maps.shape[1]} channel(s); the manifest names channel"
                f" {spec.channel}"
            )
        maps = maps[:, spec.channel]
    if maps.ndim != 3 or maps.shape[0] != len(images):
        raise InferenceError(
            f"model output of shape {tuple(raw.shape)} is not one heat map per image"
            " (N, h, w) or (N, C, h, w)"
        )
    if spec.activation == "sigmoid":
        maps = (1.0 / (1.0 + np.exp(-maps))).astype(np.float32)
    geometry = {(int(ds.Rows), int(ds.Columns)) for ds in images}
    if len(geometry) != 1:
        raise InferenceError("a mask needs source images of one size; they differ")
    ((rows, columns),) = geometry
    frames = []
    for heat in maps:
        if heat.shape != (rows, columns):
            img = Image.fromarray(np.ascontiguousarray(heat), mode="F")
            heat = np.asarray(img.resize((columns, rows), _RESAMPLING[spec.resample]))
        frames.append(heat >= spec.threshold)
    return SegmentationMask.from_array(
        spec.concept,
        spec.label,
        tuple(str(ds.SOPInstanceUID) for ds in images),
        np.stack(frames).astype(bool),
    )
