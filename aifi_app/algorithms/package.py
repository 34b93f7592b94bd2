"""Algorithm packages: a folder with ``manifest.toml``, the model, its model card, and
optionally the vendor's signature ``manifest.sig``.

The manifest says who made the algorithm, what it needs (input rules, pseudonymisation
options), how it runs and what it reports. It is checked against the JSON Schema
``resources/algorithm-manifest.schema.json``; every error names the key and what to do.
Every file of the package is listed in the manifest with its SHA-256, and nothing else
may be there, so a signature over the manifest covers the whole package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept, Finding
from aifi_app.algorithms.input_rules import Range, SeriesRules
from aifi_app.algorithms.signing import SIGNATURE, TrustPolicy, verify_signature
from aifi_app.pseudonymise.burned_in import BurnedInPolicy

if TYPE_CHECKING:  # imported where a manifest is validated
    import jsonschema

log = logging.getLogger(__name__)

MANIFEST = "manifest.toml"
SCHEMA_FILE = "algorithm-manifest.schema.json"


class PackageError(ValueError):
    """An algorithm package is not usable; the message names the package and the problem."""


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]
    """(rows, columns) the image is resampled to."""
    intensity: str = "auto"
    """auto, window (``window`` below) or stored (stored values / their maximum)."""
    window: tuple[float, float] | None = None
    """(center, width) in modality units (e.g. HU), for ``intensity = "window"``."""
    resample: str = "box"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: int = 1
    layout: str = "NCHW"


@dataclass(frozen=True)
class OnnxRunnerSpec:
    model: Path
    input_name: str
    output_name: str
    preprocessing: Preprocessing
    model_sha256: str
    kind: str = "ONNX"


@dataclass(frozen=True)
class KServeV2Spec:
    """The model runs on an inference server speaking the KServe v2 / Triton HTTP
    protocol (``POST /v2/models/<name>/infer``); the appliance prepares the input tensor
    exactly as for a local ONNX model and maps the output tensor the same way."""

    node: str
    """Name of a ``[[remote_nodes]]`` entry with protocol http in the settings."""
    model_name: str
    input_name: str
    output_name: str
    preprocessing: Preprocessing
    model_version: str = ""
    kind: str = "KServe v2"


@dataclass(frozen=True)
class BuiltinRunnerSpec:
    """Plain code shipped with the appliance (deterministic measurements)."""

    function: str
    settings: dict[str, Any]
    kind: str = "built-in"


@dataclass(frozen=True)
class RemoteDicomSpec:
    """The algorithm runs at a vendor's DICOM node: the pseudonymised images are sent there
    (C-STORE) and its result objects come back to the appliance's node."""

    node: str
    """Name of a ``[[remote_nodes]]`` entry in the settings."""
    result_timeout_seconds: float = 600.0
    kind: str = "DICOM node"


@dataclass(frozen=True)
class RemoteDicomwebSpec:
    """The algorithm runs at a vendor's DICOMweb service: the pseudonymised images are
    stored there (STOW-RS); the vendor's result objects are found in the same study
    (QIDO-RS) and retrieved (WADO-RS)."""

    node: str
    """Name of a ``[[remote_nodes]]`` entry with protocol dicomweb in the settings."""
    result_timeout_seconds: float = 600.0
    result_idle_seconds: float = 5.0
    """Results are taken once no new object appeared in the study for this long."""
    poll_seconds: float = 2.0
    request_timeout_seconds: float = 60.0
    kind: str = "DICOMweb"


@dataclass(frozen=True)
class ResponseMapping:
    """Where the findings are in a vendor's JSON answer (dotted paths, e.g. ``result.score``;
    a number in a path indexes a list)."""

    score: str = ""
    """Probability in [0, 1] for the output's concept (classification output)."""
    value: str = ""
    """The measured value, in the output's unit (measurement output)."""
    regions: str = ""
    """A list of boxes; each item's keys are named by ``region_box`` and ``region_score``."""
    region_box: tuple[str, str, str, str] = ("x0", "y0", "x1", "y1")
    """Keys of a box's left, top, right and bottom edge, in source image pixels."""
    region_score: str = ""
    region_min_score: float = 0.0
    """Boxes scored below this are left out."""
    region_label: str = ""


@dataclass(frozen=True)
class HttpRunnerSpec:
    """The algorithm runs at a vendor's REST/JSON service: the pseudonymised images are
    posted (DICOM Part 10) and the JSON answer is mapped to findings by ``response``."""

    node: str
    """Name of a ``[[remote_nodes]]`` entry with protocol http in the settings."""
    path: str
    """Appended to the node's URL, e.g. ``/v1/analyze``."""
    response: ResponseMapping
    upload: str = "multipart"
    """multipart: multipart/form-data, one part per image (field ``upload_field``);
    dicom: the single image as the body (application/dicom)."""
    upload_field: str = "file"
    request_timeout_seconds: float = 60.0
    kind: str = "REST/JSON"


REMOTE_SPECS = (RemoteDicomSpec, RemoteDicomwebSpec)
"""Runners whose vendor returns DICOM objects into the pseudonymised study."""


@dataclass(frozen=True)
class DicomOutputSpec:
    """The vendor's own DICOM result objects, delivered re-identified as they are."""

    concept: CodedConcept
    description: str = ""


@dataclass(frozen=True)
class FindingSpec:
    concept: CodedConcept
    threshold: float
    positive_label: str
    negative_label: str
    class_index: int = 0
    activation: str = "none"
    """What turns the model's output into a probability: none, sigmoid or softmax."""


@dataclass(frozen=True)
class MeasurementSpec:
    concept: CodedConcept
    quantity: CodedConcept
    unit: CodedConcept
    normal_range: Range
    value_index: int = 0
    """ONNX: which of the output's values (per image) is the measurement."""
    scale: float = 1.0
    offset: float = 0.0
    """ONNX: value = output * scale + offset, in ``unit``."""


BOX_FIELDS = ("x0", "y0", "x1", "y1", "cx", "cy", "w", "h", "score", "ignore")


@dataclass(frozen=True)
class BoxesSpec:
    """ONNX box detection: the output holds, per image, rows of ``fields`` (N, K, F)."""

    concept: CodedConcept
    label: str
    """Words shown next to each box, e.g. "Fracture"."""
    fields: tuple[str, ...]
    """What each column of a row is: x0, y0, x1, y1 (corners) or cx, cy, w, h (centre and
    size), score, ignore."""
    coordinates: str
    """input_pixels: pixels of the resized model input; normalised: fractions of it."""
    score_threshold: float
    positive_label: str
    negative_label: str
    max_boxes: int | None = None


@dataclass(frozen=True)
class MaskSpec:
    """ONNX heat map or mask: (N, C, h, w) or (N, h, w), resized back to each source image
    and thresholded into a segmentation."""

    concept: CodedConcept
    label: str
    threshold: float = 0.5
    activation: str = "none"
    channel: int = 0
    resample: str = "bilinear"
    """How the heat map is resized back to the source image: bilinear or nearest."""


@dataclass(frozen=True)
class Selection:
    """How the images are picked from a conforming study."""

    scope: str
    """image: conforming images of any series; series: one whole series."""
    prefer: str = "first"
    max_images: int | None = None


@dataclass(frozen=True)
class InputSpec:
    rules: SeriesRules
    views: tuple[str, ...]
    images: Range
    selection: Selection


@dataclass(frozen=True)
class AlgorithmPackage:
    identity: AlgorithmIdentity
    intended_use: str
    root: Path
    model_card: Path
    input: InputSpec
    pseudonymisation_options: tuple[str, ...]
    runner: (
        OnnxRunnerSpec
        | BuiltinRunnerSpec
        | RemoteDicomSpec
        | RemoteDicomwebSpec
        | HttpRunnerSpec
        | KServeV2Spec
    )
    output: FindingSpec | MeasurementSpec | DicomOutputSpec | BoxesSpec | MaskSpec
    result_objects: tuple[str, ...]
    inference_timeout_seconds: float
    signed_by: str | None
    """Fingerprint of the trusted vendor key that signed the package; None if unsigned."""
    builtin: bool = False
    burned_in_annotation: BurnedInPolicy = BurnedInPolicy.REFUSE
    """What to do with images that may carry burned-in text (default: refuse them)."""
    send_oru: bool = True
    """Send an HL7 ORU^R01 with the findings to the site's RIS (when one is configured)."""
    urgent_findings: tuple[CodedConcept, ...] = ()
    """Finding concepts that are urgent when positive: the job is marked urgent and the
    order's priority is raised to STAT at the RIS."""

    def urgent_in(self, findings: Sequence[Finding]) -> list[Finding]:
        """The positive findings among ``findings`` whose concept this manifest marks
        urgent (compared by code value and scheme)."""
        urgent = {(c.value, c.scheme) for c in self.urgent_findings}
        return [f for f in findings if f.positive and (f.concept.value, f.concept.scheme) in urgent]

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.input.rules.modalities

    @property
    def finding(self) -> FindingSpec:
        """The classification output (raises for packages that measure instead)."""
        if not isinstance(self.output, FindingSpec):
            raise PackageError(f"{self.identity.algorithm_id} has no classification output")
        return self.output

    @property
    def cache_key(self) -> str:
        """Changes whenever the package's content does (id, version and its manifest hash)."""
        return f"{self.identity.algorithm_id}@{self.identity.version}#{self._manifest_hash}"

    @property
    def _manifest_hash(self) -> str:
        return sha256_file(self.root / MANIFEST)[:16]


@cache
def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (shipped in ``resources/``)."""
    text = (Path(str(resources.files("aifi_app.resources"))) / SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _error_words(error: jsonschema.ValidationError) -> str:
    """One schema error as a person reads it: where, what is wrong, what is allowed."""
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return f"'{'.'.join([*map(str, error.absolute_path), *missing])}' is missing"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message} (check the spelling against the manifest schema)"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{where}: {error.instance!r} is not one of {allowed}"
    if error.validator == "pattern":
        return f"{where}: {error.instance!r} has the wrong form (pattern {error.validator_value})"
    return f"{where}: {error.message}"


def validate_manifest(raw: dict[str, Any]) -> list[str]:
    """Every way ``raw`` breaks the schema, in words (empty when it conforms). jsonschema
    is imported here, not with the module: the pre-pseudonymiser's child (forked from the
    fork server, which imports the pipeline's modules for it) never validates a manifest
    (jsonschema and what it imports: 43 modules, 3.2 MB)."""
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(
        manifest_schema(), format_checker=jsonschema.FormatChecker()
    )
    errors = list(validator.iter_errors(raw))
    words = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        # if/then failures nest the useful error one level down
        specific = best_match(error.context) if error.context else error
        words.append(_error_words(specific or error))
    return list(dict.fromkeys(words))


def read_manifest(root: Path) -> tuple[bytes, dict[str, Any]]:
    """The manifest's bytes and parsed content. Raises :class:`PackageError`."""
    where = f"algorithm package {root.name}"
    try:
        data = (root / MANIFEST).read_bytes()
    except FileNotFoundError as exc:
        raise PackageError(f"{where}: {MANIFEST} is missing at the top of the package") from exc
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PackageError(f"{where}: {MANIFEST} is not valid TOML: {exc}") from exc
    return data, raw


def check_files(root: Path, listed: dict[str, str], where: str) -> None:
    """Every listed file is there with its hash, and no other file is."""
    for name, expected in sorted(listed.items()):
        path = root / name
        if (
            Path(name).is_absolute()
            or ".." in Path(name).parts
            or not path.resolve().is_relative_to(root.resolve())
        ):
            raise PackageError(f"{where}: file name {name!r} leaves the package")
        if not path.is_file():
            raise PackageError(f"{where}: file {name} is listed in [files] but missing")
        if sha256_file(path) != expected.lower():
            raise PackageError(
                f"{where}: file {name} does not match its SHA-256 in the manifest"
                " (damaged or altered; reinstall the package from its vendor)"
            )
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, SIGNATURE)
    }
    extra = sorted(present - set(listed))
    if extra:
        raise PackageError(f"{where}: file(s) not listed in [files]: {', '.join(extra)}")


def _code(raw: dict[str, Any]) -> CodedConcept:
    return CodedConcept(value=raw["value"], scheme=raw["scheme"], meaning=raw["meaning"])


def _range(raw: dict[str, Any] | None) -> Range:
    raw = raw or {}
    return Range(raw.get("min"), raw.get("max"))


def _input(raw: dict[str, Any]) -> InputSpec:
    sel = raw["selection"]
    return InputSpec(
        rules=SeriesRules(
            modalities=tuple(raw["modalities"]),
            body_parts=tuple(raw.get("body_parts", ())),
            series_description=sel.get("series_description", ""),
            patient_age_years=_range(raw.get("patient_age_years")),
            slice_thickness_mm=_range(raw.get("slice_thickness_mm")),
            pixel_spacing_mm=_range(raw.get("pixel_spacing_mm")),
            convolution_kernels=tuple(raw.get("convolution_kernels", ())),
            contrast=raw.get("contrast", "any"),
            contrast_phases=tuple(raw.get("contrast_phases", ())),
        ),
        views=tuple(raw.get("views", ())),
        images=_range(raw.get("images")),
        selection=Selection(
            scope=sel["scope"],
            prefer=sel.get("prefer", "first"),
            max_images=sel.get("max_images"),
        ),
    )


def _runner(raw: dict[str, Any], root: Path, files: dict[str, str], where: str) -> Any:
    if raw["kind"] == "builtin":
        return BuiltinRunnerSpec(function=raw["function"], settings=dict(raw.get("settings", {})))
    if raw["kind"] == "dicom_node":
        return RemoteDicomSpec(
            node=raw["node"], result_timeout_seconds=float(raw.get("result_timeout_seconds", 600))
        )
    if raw["kind"] == "dicomweb":
        return RemoteDicomwebSpec(
            node=raw["node"],
            result_timeout_seconds=float(raw.get("result_timeout_seconds", 600)),
            result_idle_seconds=float(raw.get("result_idle_seconds", 5)),
            poll_seconds=float(raw.get("poll_seconds", 2)),
            request_timeout_seconds=float(raw.get("request_timeout_seconds", 60)),
        )
    if raw["kind"] == "http":
        response = raw.get("response", {})
        return HttpRunnerSpec(
            node=raw["node"],
            path=raw.get("path", ""),
            response=ResponseMapping(
                score=response.get("score", ""),
                value=response.get("value", ""),
                regions=response.get("regions", ""),
                region_box=tuple(response.get("region_box", ("x0", "y0", "x1", "y1"))),
                region_score=response.get("region_score", ""),
                region_min_score=float(response.get("region_min_score", 0.0)),
                region_label=response.get("region_label", ""),
            ),
            upload=raw.get("upload", "multipart"),
            upload_field=raw.get("upload_field", "file"),
            request_timeout_seconds=float(raw.get("request_timeout_seconds", 60)),
        )
    if raw["kind"] == "kserve_v2":
        return KServeV2Spec(
            node=raw["node"],
            model_name=raw["model_name"],
            model_version=str(raw.get("model_version", "")),
            input_name=raw["input_name"],
            output_name=raw["output_name"],
            preprocessing=_preprocessing(raw["preprocessing"], where),
        )
    if raw["model"] not in files:
        raise PackageError(f"{where}: runner.model {raw['model']!r} is not listed in [files]")
    return OnnxRunnerSpec(
        model=root / raw["model"],
        input_name=raw["input_name"],
        output_name=raw["output_name"],
        preprocessing=_preprocessing(raw["preprocessing"], where),
        model_sha256=files[raw["model"]].lower(),
    )


def _preprocessing(pre: dict[str, Any], where: str) -> Preprocessing:
    window = pre.get("window")
    intensity = pre.get("intensity", "auto")
    if intensity == "window" and window is None:
        raise PackageError(f"{where}: runner.preprocessing.intensity is 'window' but no window")
    channels = int(pre.get("channels", 1))
    mean = tuple(float(v) for v in pre.get("mean", [0.0]))
    std = tuple(float(v) for v in pre.get("std", [1.0]))
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise PackageError(
            f"{where}: runner.preprocessing mean and std need 1 or {channels} value(s)"
        )
    return Preprocessing(
        size=(pre["size"][0], pre["size"][1]),
        intensity=intensity,
        window=(float(window["center"]), float(window["width"])) if window else None,
        resample=pre.get("resample", "box"),
        mean=mean,
        std=std,
        channels=channels,
        layout=pre.get("layout", "NCHW"),
    )


def _boxes(raw: dict[str, Any], where: str) -> BoxesSpec:
    fields = tuple(raw.get("fields", ("x0", "y0", "x1", "y1", "score")))
    corners = {"x0", "y0", "x1", "y1"} <= set(fields)
    centre = {"cx", "cy", "w", "h"} <= set(fields)
    if "score" not in fields or not (corners or centre):
        raise PackageError(
            f"{where}: output.fields {list(fields)} needs 'score' and either x0, y0, x1, y1"
            " or cx, cy, w, h"
        )
    return BoxesSpec(
        concept=_code(raw["code"]),
        label=raw["label"],
        fields=fields,
        coordinates=raw.get("coordinates", "input_pixels"),
        score_threshold=float(raw["score_threshold"]),
        positive_label=raw["positive_label"],
        negative_label=raw["negative_label"],
        max_boxes=raw.get("max_boxes"),
    )


def _output(raw: dict[str, Any], where: str = "manifest") -> Any:
    if raw["kind"] == "boxes":
        return _boxes(raw, where)
    if raw["kind"] == "mask":
        return MaskSpec(
            concept=_code(raw["code"]),
            label=raw["label"],
            threshold=float(raw.get("threshold", 0.5)),
            activation=raw.get("activation", "none"),
            channel=int(raw.get("channel", 0)),
            resample=raw.get("resample", "bilinear"),
        )
    if raw["kind"] == "dicom":
        return DicomOutputSpec(concept=_code(raw["code"]), description=raw.get("description", ""))
    if raw["kind"] == "measurement":
        return MeasurementSpec(
            concept=_code(raw["code"]),
            quantity=_code(raw["quantity"]),
            unit=_code(raw["unit"]),
            normal_range=_range(raw.get("normal_range")),
            value_index=int(raw.get("value_index", 0)),
            scale=float(raw.get("scale", 1.0)),
            offset=float(raw.get("offset", 0.0)),
        )
    return FindingSpec(
        concept=_code(raw["code"]),
        threshold=float(raw["threshold"]),
        positive_label=raw["positive_label"],
        negative_label=raw["negative_label"],
        class_index=int(raw.get("class_index", 0)),
        activation=raw.get("activation", "none"),
    )


def _check_output(runner: Any, output: Any, raw: dict[str, Any], where: str) -> None:
    """The runner can produce the manifest's output kind."""
    if isinstance(runner, HttpRunnerSpec):
        needs = {
            FindingSpec: ("score", "classification"),
            MeasurementSpec: ("value", "measurement"),
        }
        if type(output) not in needs:
            raise PackageError(
                f"{where}: an http runner reports output kind 'classification' or"
                f" 'measurement', not '{raw['output']['kind']}'"
            )
        key, kind = needs[type(output)]
        if not getattr(runner.response, key):
            raise PackageError(
                f"{where}: output kind '{kind}' needs runner.response.{key}: the path of the"
                " value in the vendor's JSON answer"
            )
        return
    if isinstance(runner, (OnnxRunnerSpec, KServeV2Spec)):
        allowed = {
            FindingSpec: {"sc", "sr", "ko"},
            BoxesSpec: {"sc", "sr", "gsps", "ko"},
            MeasurementSpec: {"sr"},
            MaskSpec: {"seg"},
        }.get(type(output))
        if allowed is None:
            raise PackageError(
                f"{where}: a {raw['runner']['kind']} runner reports output kind"
                " 'classification', 'measurement',"
                f" 'boxes' or 'mask', not '{raw['output']['kind']}'"
            )
        extra = sorted(set(raw["results"]["objects"]) - allowed)
        if extra:
            raise PackageError(
                f"{where}: output kind '{raw['output']['kind']}' cannot make results.objects"
                f" {extra}; it makes {', '.join(sorted(allowed))}"
            )
        return
    expected_output = {
        BuiltinRunnerSpec: ("measurement", MeasurementSpec),
        RemoteDicomSpec: ("dicom", DicomOutputSpec),
        RemoteDicomwebSpec: ("dicom", DicomOutputSpec),
    }[type(runner)]
    if not isinstance(output, expected_output[1]):
        raise PackageError(
            f"{where}: a {raw['runner']['kind']} runner reports output kind"
            f" '{expected_output[0]}', not '{raw['output']['kind']}'"
        )


def load_package(
    root: Path, trust: TrustPolicy | None = None, *, builtin: bool = False
) -> AlgorithmPackage:
    """Read and check one package folder: schema, file hashes and signature.

    Raises :class:`PackageError` naming the package and what is wrong. Built-in packages
    (installed with the application) need no signature.
    """
    trust = trust or TrustPolicy()
    data, raw = read_manifest(root)
    label = raw.get("id") if isinstance(raw.get("id"), str) else root.name
    where = f"algorithm package {label}"
    errors = validate_manifest(raw)
    if errors:
        raise PackageError(f"{where}: {MANIFEST} is not valid: " + "; ".join(errors))
    files: dict[str, str] = raw["files"]
    if raw["model_card"] not in files:
        raise PackageError(f"{where}: model_card {raw['model_card']!r} is not listed in [files]")
    check_files(root, files, where)
    signed_by = verify_signature(root / MANIFEST, data, trust, where, builtin=builtin)
    runner = _runner(raw["runner"], root, files, where)
    output = _output(raw["output"], where)
    _check_output(runner, output, raw, where)
    return AlgorithmPackage(
        identity=AlgorithmIdentity(
            algorithm_id=raw["id"], name=raw["name"], version=raw["version"], vendor=raw["vendor"]
        ),
        intended_use=raw["intended_use"],
        root=root,
        model_card=root / raw["model_card"],
        input=_input(raw["input"]),
        pseudonymisation_options=tuple(raw["pseudonymisation"]["options"]),
        runner=runner,
        output=output,
        result_objects=tuple(raw["results"]["objects"]),
        inference_timeout_seconds=float(raw.get("timeouts", {}).get("inference_seconds", 300.0)),
        signed_by=signed_by,
        builtin=builtin,
        burned_in_annotation=BurnedInPolicy(
            raw["pseudonymisation"].get("burned_in_annotation", BurnedInPolicy.REFUSE.value)
        ),
        send_oru=bool(raw["results"].get("send_oru", True)),
        urgent_findings=tuple(_code(c) for c in raw["results"].get("urgent_findings", [])),
    )


def builtin_package_dir() -> Path:
    """The folder of packages installed with the application."""
    return Path(str(resources.files("aifi_app.resources"))) / "algorithms"


def package_roots(base: Path) -> list[Path]:
    """The package folders directly under ``base`` (those with a manifest)."""
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())


def discover(
    extra_dirs: tuple[str, ...] = (), trust: TrustPolicy | None = None
) -> dict[str, AlgorithmPackage]:
    """All usable packages by id (a later directory overrides an earlier one's id); an
    unusable one is logged and left out."""
    found: dict[str, AlgorithmPackage] = {}
    bases = [(builtin_package_dir(), True), *((Path(d), False) for d in extra_dirs)]
    for base, builtin in bases:
        for root in package_roots(base):
            try:
                package = load_package(root, trust, builtin=builtin)
            except PackageError as exc:
                log.error("%s", exc)
                continue
            found[package.identity.algorithm_id] = package
    return found
