"""The REST/JSON runner: the pseudonymised images (DICOM Part 10) are posted to a vendor's
HTTPS service, and its JSON answer is mapped to findings by the manifest's
``[runner.response]`` paths: a classification score, a measured value, and boxes.

Runs synchronously on the worker thread, within ``request_timeout_seconds``. Certificates
are always verified and the bearer token comes from the OS keyring (``vendor_http``).
Every failure is an :class:`InferenceError` whose words name the node and what went wrong,
never the answer's content (it may echo what was sent).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import requests
from pydicom import Dataset

from aifi_app.algorithms.findings import (
    AlgorithmResult,
    Finding,
    MeasurementFinding,
    RegionFinding,
)
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import (
    AlgorithmPackage,
    FindingSpec,
    HttpRunnerSpec,
    MeasurementSpec,
)
from aifi_app.algorithms.vendor_http import (
    VendorHttpError,
    http_failure_words,
    http_node,
    session_for,
)
from aifi_app.config.settings import RemoteNode, Settings
from aifi_app.part10 import part10_bytes


class _Answer:
    """The vendor's JSON answer, read by the manifest's dotted paths."""

    def __init__(self, data: Any, node: str) -> None:
        self.data = data
        self.node = node

    def lookup(self, path: str, where: Any = None) -> Any:
        current = self.data if where is None else where
        for part in path.split("."):
            if isinstance(current, dict) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                raise InferenceError(
                    f"the answer of {self.node} has nothing at '{path}'"
                    " (runner.response in the manifest)"
                )
        return current

    def number(self, path: str, where: Any = None) -> float:
        value = self.lookup(path, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InferenceError(f"the answer of {self.node} has no number at '{path}'")
        if not math.isfinite(value):
            raise InferenceError(f"the answer of {self.node} has no finite number at '{path}'")
        return float(value)


class HttpRunner:
    """Runs one REST/JSON package; the node is looked up in the current settings per run."""

    def __init__(self, package: AlgorithmPackage, settings: Callable[[], Settings]) -> None:
        assert isinstance(package.runner, HttpRunnerSpec)
        self.package = package
        self.spec: HttpRunnerSpec = package.runner
        self._settings = settings

    def node(self) -> RemoteNode:
        return http_node(self._settings, self.spec.node)

    def post(self, node: RemoteNode, images: Sequence[Dataset]) -> requests.Response:
        spec = self.spec
        url = node.url.rstrip("/") + spec.path
        timeout = (min(10.0, spec.request_timeout_seconds), spec.request_timeout_seconds)
        try:
            session = session_for(node)
        except VendorHttpError as exc:
            raise InferenceError(str(exc)) from exc
        with session:
            try:
                if spec.upload == "dicom":
                    if len(images) != 1:
                        raise InferenceError(
                            f"upload 'dicom' sends one image; {len(images)} were selected"
                            " (set input.selection.max_images = 1, or upload 'multipart')"
                        )
                    response = session.post(
                        url,
                        data=part10_bytes(images[0]),
                        headers={"Content-Type": "application/dicom"},
                        timeout=timeout,
                    )
                else:
                    files = [
                        (spec.upload_field, (f"{n:05d}.dcm", part10_bytes(ds), "application/dicom"))
                        for n, ds in enumerate(images)
                    ]
                    response = session.post(url, files=files, timeout=timeout)
                response.raise_for_status()
            except (requests.exceptions.RequestException, OSError) as exc:
                raise InferenceError(
                    http_failure_words(
                        exc, node, "sending the images", spec.request_timeout_seconds
                    )
                ) from exc
        return response

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        if not images:
            raise InferenceError("no image to send")
        node = self.node()
        response = self.post(node, images)
        try:
            answer = _Answer(response.json(), node.name)
        except ValueError as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise InferenceError(
                f"the answer of {node.name} is not valid JSON ({kind}, {len(response.content)}"
                " bytes)"
            ) from exc
        return self.map(answer, images)

    def map(self, answer: _Answer, images: Sequence[Dataset]) -> AlgorithmResult:
        """The answer as findings, by the manifest's ``runner.response`` paths."""
        out = self.package.output
        mapping = self.spec.response
        first = images[0]
        findings: list[Finding] = []
        measurements: list[MeasurementFinding] = []
        if isinstance(out, FindingSpec):
            score = answer.number(mapping.score)
            if not 0.0 <= score <= 1.0:
                raise InferenceError(
                    f"the answer of {answer.node} has score {score:g} at '{mapping.score}';"
                    " a probability in [0, 1] is needed"
                )
            positive = score >= out.threshold
            findings.append(
                Finding(
                    concept=out.concept,
                    score=round(score, 6),
                    threshold=out.threshold,
                    positive=positive,
                    source_sop_instance_uid=str(first.SOPInstanceUID),
                    source_sop_class_uid=str(first.SOPClassUID),
                    source_series_instance_uid=str(first.SeriesInstanceUID),
                    label=out.positive_label if positive else out.negative_label,
                )
            )
        elif isinstance(out, MeasurementSpec):
            value = answer.number(mapping.value)
            identity = self.package.identity
            measurements.append(
                MeasurementFinding(
                    concept=out.concept,
                    quantity=out.quantity,
                    value=value,
                    unit=out.unit,
                    method=f"{identity.name} {identity.version} by {identity.vendor} (REST/JSON)",
                    source_series_instance_uid=str(first.SeriesInstanceUID),
                    source_sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in images),
                    source_sop_class_uid=str(first.SOPClassUID),
                    label=f"{out.quantity.meaning} {value:g} {out.unit.value}",
                )
            )
        return AlgorithmResult(
            algorithm=self.package.identity,
            findings=tuple(findings),
            measurements=tuple(measurements),
            regions=self.regions(answer, first),
        )

    def regions(self, answer: _Answer, image: Dataset) -> tuple[RegionFinding, ...]:
        mapping = self.spec.response
        if not mapping.regions:
            return ()
        items = answer.lookup(mapping.regions)
        if not isinstance(items, list):
            raise InferenceError(
                f"the answer of {answer.node} has no list of boxes at '{mapping.regions}'"
            )
        concept = self.package.output.concept
        columns, rows = int(image.Columns), int(image.Rows)
        found = []
        for n, item in enumerate(items):
            where = f"{mapping.regions}.{n}"
            x0, y0, x1, y1 = (answer.number(key, item) for key in mapping.region_box)
            if not (0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows):
                raise InferenceError(
                    f"the answer of {answer.node} has box {where} ({x0:g}, {y0:g}, {x1:g},"
                    f" {y1:g}) outside the {columns} x {rows} image or inverted"
                )
            score = answer.number(mapping.region_score, item) if mapping.region_score else None
            if score is not None and score < mapping.region_min_score:
                continue
            words = mapping.region_label or concept.meaning
            found.append(
                RegionFinding(
                    concept=concept,
                    label=f"{words} ({score:.2f})" if score is not None else words,
                    shape="box",
                    points=((x0, y0), (x1, y1)),
                    source_sop_instance_uid=str(image.SOPInstanceUID),
                    source_sop_class_uid=str(image.SOPClassUID),
                    source_series_instance_uid=str(image.SeriesInstanceUID),
                    score=score,
                )
            )
        return tuple(found)
