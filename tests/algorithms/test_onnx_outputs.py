"""The local runner's output kinds on small ONNX models whose outputs are known by hand:
regression, boxes (scaled from the 16 x 16 model input back to source pixels) and heat
maps (resized back and thresholded); the manifest errors; and the inference timeout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset

from aifi_app.algorithms.onnx_runner import InferenceError, OnnxRunner
from aifi_app.algorithms.package import PackageError, load_package
from aifi_app.sample_studies import SamplePatient, chest_radiograph
from tests.helpers.onnx_models import (
    constant_boxes_model,
    identity_heat_map_model,
    make_onnx_package,
    mean_model,
    slow_model,
)

PATIENT = SamplePatient("Test^Model", "PID0001", "19900101", "O", "ACC0001")
CODE = 'code = { value = "72704001", scheme = "SCT", meaning = "Fracture" }'
REGRESSION = f"""[output]
kind = "measurement"
{CODE}
quantity = {{ value = "118565006", scheme = "SCT", meaning = "Volume" }}
unit = {{ value = "mL", scheme = "UCUM", meaning = "milliliter" }}
scale = 255
offset = -0.5
"""
BOXES = f"""[output]
kind = "boxes"
{CODE}
label = "Fracture"
score_threshold = 0.5
positive_label = "Fracture suspected"
negative_label = "No fracture detected"
"""
MASK = f"""[output]
kind = "mask"
{CODE}
label = "Bright region"
threshold = 0.5
resample = "nearest"
"""


def _image(pixels: np.ndarray) -> Dataset:
    return chest_radiograph(PATIENT, pixels.astype(np.uint8))


def _runner(tmp_path: Path, model: bytes, **kw: object) -> OnnxRunner:
    return OnnxRunner(load_package(make_onnx_package(tmp_path / "p", model, **kw)))  # type: ignore[arg-type]


def test_regression_output_is_scaled_into_a_measurement(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64))
    pixels[:, :32] = 255  # mean of the model input: 0.5
    runner = _runner(
        tmp_path, mean_model(), output_name="value", output=REGRESSION, objects='["sr"]'
    )
    image = _image(pixels)
    (measurement,) = runner.run([image]).measurements
    assert measurement.value == 127.0  # 0.5 * 255 - 0.5
    assert measurement.label == "Volume 127 mL"
    assert measurement.source_sop_instance_uids == (str(image.SOPInstanceUID),)


def test_boxes_are_scaled_from_model_input_to_source_pixels(tmp_path: Path) -> None:
    rows = [
        [2, 3, 10, 7, 0.9],  # -> (8, 6) to (40, 14) on a 64 x 32 image (x * 4, y * 2)
        [0, 0, 16, 16, 0.3],  # under the threshold
        [12, 1, 20, 5, 0.7],  # -> (48, 2) to (80 -> clipped 64, 10)
    ]
    runner = _runner(
        tmp_path,
        constant_boxes_model(rows),
        output_name="boxes",
        output=BOXES,
        objects='["sc", "sr"]',
    )
    image = _image(np.full((32, 64), 100))
    result = runner.run([image])
    assert [r.points for r in result.regions] == [
        ((8.0, 6.0), (40.0, 14.0)),
        ((48.0, 2.0), (64.0, 10.0)),
    ]
    assert [r.label for r in result.regions] == ["Fracture (0.90)", "Fracture (0.70)"]
    assert all(
        r.shape == "box" and r.source_sop_instance_uid == image.SOPInstanceUID
        for r in result.regions
    )
    (finding,) = result.findings
    assert (finding.positive, finding.score, finding.label) == (True, 0.9, "Fracture suspected")


def test_centre_size_boxes_in_fractions_of_the_input(tmp_path: Path) -> None:
    output = BOXES + 'fields = ["cx", "cy", "w", "h", "score"]\ncoordinates = "normalised"\n'
    runner = _runner(
        tmp_path,
        constant_boxes_model([[0.5, 0.5, 0.25, 0.5, 0.8], [0.1, 0.1, 0.1, 0.1, 0.2]]),
        output_name="boxes",
        output=output,
        objects='["sc", "sr"]',
    )
    result = runner.run([_image(np.full((32, 64), 100))])
    (region,) = result.regions
    assert region.points == ((24.0, 8.0), (40.0, 24.0))


def test_no_box_over_the_threshold_is_a_negative_finding(tmp_path: Path) -> None:
    runner = _runner(
        tmp_path,
        constant_boxes_model([[1, 1, 2, 2, 0.4]]),
        output_name="boxes",
        output=BOXES,
        objects='["sc", "sr"]',
    )
    result = runner.run([_image(np.full((32, 32), 100))])
    assert result.regions == ()
    (finding,) = result.findings
    assert (finding.positive, finding.score, finding.label) == (False, 0.4, "No fracture detected")


def test_heat_map_is_resized_back_and_thresholded(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64))
    pixels[:, :32] = 255  # -> 1.0 in the 16 x 16 heat map, columns 0-7
    pixels[:32, 32:] = 100  # -> 0.39: under the threshold
    runner = _runner(
        tmp_path, identity_heat_map_model(), output_name="heat", output=MASK, objects='["seg"]'
    )
    image = _image(pixels)
    (segmentation,) = runner.run([image]).segmentations
    expected = np.zeros((1, 64, 64), dtype=bool)
    expected[0, :, :32] = True
    assert segmentation.mask.shape == (1, 64, 64)
    assert np.array_equal(segmentation.mask, expected)
    assert segmentation.source_sop_instance_uids == (str(image.SOPInstanceUID),)


def test_bilinear_heat_map_keeps_the_edge_within_a_pixel(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64))
    pixels[:, :32] = 255
    runner = _runner(
        tmp_path,
        identity_heat_map_model(),
        output_name="heat",
        output=MASK.replace('resample = "nearest"', 'resample = "bilinear"'),
        objects='["seg"]',
    )
    (segmentation,) = runner.run([_image(pixels)]).segmentations
    columns = segmentation.mask[0].all(axis=0)
    assert columns[:31].all() and not columns[33:].any()


@pytest.mark.parametrize(
    ("output", "objects", "words"),
    [
        (
            MASK,
            '["sc", "sr"]',
            "output kind 'mask' cannot make results.objects ['sc', 'sr']; it makes seg",
        ),
        (REGRESSION, '["seg"]', "output kind 'measurement' cannot make results.objects ['seg']"),
        (
            BOXES + 'fields = ["x0", "y0", "x1", "score", "ignore"]\n',
            '["sr"]',
            "output.fields ['x0', 'y0', 'x1', 'score', 'ignore'] needs 'score' and either",
        ),
        (BOXES.replace('label = "Fracture"\n', ""), '["sr"]', "'output.label' is missing"),
    ],
)
def test_manifest_errors_say_what_to_fix(
    tmp_path: Path, output: str, objects: str, words: str
) -> None:
    folder = make_onnx_package(
        tmp_path / "p", mean_model(), output_name="value", output=output, objects=objects
    )
    with pytest.raises(PackageError) as caught:
        load_package(folder)
    assert words in str(caught.value)


def test_inference_timeout_stops_the_run_and_the_session_stays_usable(tmp_path: Path) -> None:
    output = """[output]
kind = "classification"
code = { value = "1", scheme = "99TEST", meaning = "Test" }
threshold = 0.5
positive_label = "yes"
negative_label = "no"
"""
    runner = _runner(
        tmp_path,
        slow_model(),
        output_name="probability",
        output=output,
        objects='["sc", "sr"]',
        timeout=0.001,
    )
    image = _image(np.full((16, 16), 10))
    with pytest.raises(InferenceError, match=r"^inference did not finish within 0\.001 s$"):
        runner.run([image])
    runner.package = dataclasses.replace(runner.package, inference_timeout_seconds=600)
    (finding,) = runner.run([image]).findings  # the same session, now without a hurry
    assert (finding.score, finding.positive) == (0.0, False)
