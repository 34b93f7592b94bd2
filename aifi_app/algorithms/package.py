"""Algorithm packages: a folder with ``manifest.toml``, the model and its model card.

The manifest says who made the algorithm, what it needs (input, pseudonymisation
options), how it runs and what it reports. Files named in the manifest are checked
against their SHA-256 before the package is used.
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept
from aifi_app.pseudonymise.burned_in import BurnedInPolicy

log = logging.getLogger(__name__)

MANIFEST = "manifest.toml"


class PackageError(ValueError):
    """An algorithm package is not usable; the message names the package and the problem."""


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]
    """(rows, columns) the image is resampled to."""


@dataclass(frozen=True)
class OnnxRunnerSpec:
    model: Path
    input_name: str
    output_name: str
    preprocessing: Preprocessing


@dataclass(frozen=True)
class FindingSpec:
    concept: CodedConcept
    threshold: float
    positive_label: str
    negative_label: str


@dataclass(frozen=True)
class AlgorithmPackage:
    identity: AlgorithmIdentity
    intended_use: str
    root: Path
    modalities: tuple[str, ...]
    max_images: int
    pseudonymisation_options: tuple[str, ...]
    burned_in_annotation: BurnedInPolicy
    """What to do with images that may carry burned-in text (default: refuse them)."""
    runner: OnnxRunnerSpec
    finding: FindingSpec
    result_objects: tuple[str, ...]


def _require(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise PackageError(f"{where}: '{key}' is missing")
    value = raw[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise PackageError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_package(root: Path) -> AlgorithmPackage:
    """Read and check one package folder. Raises :class:`PackageError`."""
    where = f"algorithm package {root.name}"
    try:
        with (root / MANIFEST).open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise PackageError(f"{where}: {MANIFEST} is missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PackageError(f"{where}: {MANIFEST} is not valid TOML: {exc}") from exc
    identity = AlgorithmIdentity(
        algorithm_id=_require(raw, "id", str, where),
        name=_require(raw, "name", str, where),
        version=_require(raw, "version", str, where),
        vendor=_require(raw, "vendor", str, where),
    )
    inp = _require(raw, "input", dict, where)
    runner = _require(raw, "runner", dict, where)
    if _require(runner, "kind", str, f"{where} [runner]") != "onnx":
        raise PackageError(f"{where}: runner kind {runner['kind']!r} is not supported here")
    model = root / _require(runner, "model", str, f"{where} [runner]")
    expected = _require(runner, "sha256", str, f"{where} [runner]")
    if not model.is_file():
        raise PackageError(f"{where}: model file {model.name} is missing")
    if _sha256(model) != expected.lower():
        raise PackageError(f"{where}: model file {model.name} does not match its SHA-256")
    pre = _require(runner, "preprocessing", dict, f"{where} [runner]")
    size = _require(pre, "size", list, f"{where} [runner.preprocessing]")
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise PackageError(f"{where}: preprocessing size must be [rows, columns]")
    finding = _require(raw, "finding", dict, where)
    code = _require(finding, "code", dict, f"{where} [finding]")
    threshold = _require(finding, "threshold", float, f"{where} [finding]")
    if not 0.0 <= threshold <= 1.0:
        raise PackageError(f"{where}: finding threshold must lie in [0, 1]")
    results = tuple(_require(raw, "results", dict, where).get("objects", ["sc", "sr"]))
    unknown = sorted(set(results) - {"sc", "sr"})
    if unknown:
        raise PackageError(f"{where}: unknown result object(s) {', '.join(unknown)}")
    pseudonymisation = raw.get("pseudonymisation", {})
    burned_in_text = pseudonymisation.get("burned_in_annotation", BurnedInPolicy.REFUSE.value)
    try:
        burned_in = BurnedInPolicy(burned_in_text)
    except ValueError:
        allowed = ", ".join(repr(p.value) for p in BurnedInPolicy)
        raise PackageError(
            f"{where}: [pseudonymisation] burned_in_annotation must be one of {allowed}"
        ) from None
    return AlgorithmPackage(
        identity=identity,
        intended_use=_require(raw, "intended_use", str, where),
        root=root,
        modalities=tuple(_require(inp, "modalities", list, f"{where} [input]")),
        max_images=int(inp.get("max_images", 1)),
        pseudonymisation_options=tuple(pseudonymisation.get("options", [])),
        burned_in_annotation=burned_in,
        runner=OnnxRunnerSpec(
            model=model,
            input_name=_require(runner, "input_name", str, f"{where} [runner]"),
            output_name=_require(runner, "output_name", str, f"{where} [runner]"),
            preprocessing=Preprocessing(size=(size[0], size[1])),
        ),
        finding=FindingSpec(
            concept=CodedConcept(
                value=_require(code, "value", str, where),
                scheme=_require(code, "scheme", str, where),
                meaning=_require(code, "meaning", str, where),
            ),
            threshold=threshold,
            positive_label=_require(finding, "positive_label", str, where),
            negative_label=_require(finding, "negative_label", str, where),
        ),
        result_objects=results,
    )


def builtin_package_dir() -> Path:
    """The folder of packages installed with the application."""
    return Path(str(resources.files("aifi_app.resources"))) / "algorithms"


def discover(extra_dirs: tuple[str, ...] = ()) -> dict[str, AlgorithmPackage]:
    """All usable packages by id; an unusable one is logged and left out."""
    found: dict[str, AlgorithmPackage] = {}
    for base in (builtin_package_dir(), *(Path(d) for d in extra_dirs)):
        if not base.is_dir():
            continue
        for root in sorted(p for p in base.iterdir() if (p / MANIFEST).is_file()):
            try:
                package = load_package(root)
            except PackageError as exc:
                log.error("%s", exc)
                continue
            found[package.identity.algorithm_id] = package
    return found
