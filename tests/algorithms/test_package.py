"""Package manifests: schema errors a person can act on, file hashes, vendor signatures."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifi_app.algorithms.package import (
    FindingSpec,
    OnnxRunnerSpec,
    PackageError,
    builtin_package_dir,
    discover,
    load_package,
)
from aifi_app.algorithms.signing import TrustPolicy, fingerprint, public_key_text
from tests.helpers.packages import make_package

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
TRUST = TrustPolicy(trusted_keys=(public_key_text(KEY.public_key()),))


def test_builtin_package_loads_with_its_declared_preprocessing() -> None:
    package = load_package(builtin_package_dir() / "pneumonia-cxr", builtin=True)
    assert package.identity.algorithm_id == "pneumonia-cxr"
    assert isinstance(package.runner, OnnxRunnerSpec)
    assert package.runner.preprocessing.size == (28, 28)
    assert isinstance(package.output, FindingSpec)
    assert package.input.selection.scope == "image"
    assert package.model_card.name == "MODEL_CARD.md"
    assert set(discover()) == {"pneumonia-cxr", "ct-lung-volume"}


@pytest.mark.parametrize(
    ("replace", "append", "expected"),
    [
        ({'name = "Pneumonia': 'title = "Pneumonia'}, "", "'name' is missing"),
        ({"": ""}, "\n[surprise]\nx = 1\n", "'surprise' was unexpected"),
        ({'scope = "image"': 'scope = "slab"'}, "", "input.selection.scope: 'slab' is not one of"),
        (
            {"threshold = 0.4303969591856003": "threshold = 4.3"},
            "",
            "output.threshold: 4.3 is greater than the maximum of 1",
        ),
        ({'kind = "onnx"': 'kind = "tensorflow"'}, "", "runner.kind: 'tensorflow' is not one of"),
        ({'id = "vendor-cxr"': 'id = "Vendor CXR"'}, "", "id: 'Vendor CXR' has the wrong form"),
        ({'input_name = "image"\n': ""}, "", "'runner.input_name' is missing"),
        ({'model = "model.onnx"': 'model = "other.onnx"'}, "", "runner.model 'other.onnx'"),
    ],
)
def test_schema_errors_name_the_key_and_the_problem(
    tmp_path: Path, replace: dict[str, str], append: str, expected: str
) -> None:
    folder = make_package(tmp_path / "p")
    text = (folder / "manifest.toml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    (folder / "manifest.toml").write_text(text + append)
    with pytest.raises(PackageError) as err:
        load_package(folder)
    assert expected in str(err.value)


def test_not_toml_is_refused_with_the_parser_position(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p")
    (folder / "manifest.toml").write_text("id = ")
    with pytest.raises(PackageError, match="not valid TOML"):
        load_package(folder)


def test_wrong_hash_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p")
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(PackageError, match=r"model.onnx does not match its SHA-256"):
        load_package(folder)


def test_unlisted_and_missing_files_are_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p")
    (folder / "run_me.py").write_text("print('hi')\n")
    with pytest.raises(PackageError, match=r"not listed in \[files\]: run_me.py"):
        load_package(folder)
    (folder / "run_me.py").unlink()
    (folder / "metrics.json").unlink()
    with pytest.raises(PackageError, match=r"metrics\.json is listed in \[files\] but missing"):
        load_package(folder)


def test_signed_package_names_its_signer(tmp_path: Path) -> None:
    package = load_package(make_package(tmp_path / "p", key=KEY), TRUST)
    assert package.signed_by == fingerprint(public_key_text(KEY.public_key()))


def test_manifest_altered_after_signing_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p", key=KEY)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("threshold = 0.43", "threshold = 0.93"))
    with pytest.raises(PackageError, match="does not verify with any trusted vendor key"):
        load_package(folder, TRUST)


def test_signature_by_an_untrusted_vendor_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p", key=OTHER)
    with pytest.raises(PackageError, match="does not verify with any trusted vendor key"):
        load_package(folder, TRUST)
    with pytest.raises(PackageError, match="no vendor key is trusted"):
        load_package(folder, TrustPolicy())


def test_garbled_signature_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "p", key=KEY)
    (folder / "manifest.sig").write_text(base64.b64encode(b"x" * 64).decode())
    with pytest.raises(PackageError, match="does not verify"):
        load_package(folder, TRUST)
    (folder / "manifest.sig").write_text("not base64 at all!")
    with pytest.raises(PackageError, match="not a base64 signature"):
        load_package(folder, TRUST)


def test_signed_only_refuses_unsigned_but_not_builtin(tmp_path: Path) -> None:
    strict = TrustPolicy(trusted_keys=TRUST.trusted_keys, signed_only=True)
    with pytest.raises(PackageError, match="accepts signed packages only"):
        load_package(make_package(tmp_path / "p"), strict)
    assert load_package(make_package(tmp_path / "q", key=KEY), strict).signed_by
    assert load_package(builtin_package_dir() / "pneumonia-cxr", strict, builtin=True)


@pytest.mark.parametrize("template", ["bonexpert-remote", "rbfracture-remote", "cina-ipe-remote"])
def test_vendor_templates_are_valid_remote_packages(template: str) -> None:
    from aifi_app.algorithms.package import RemoteDicomSpec

    root = builtin_package_dir().parent / "algorithm-templates" / template
    package = load_package(root)
    assert isinstance(package.runner, RemoteDicomSpec)
    assert package.input.rules.modalities


def test_dicomweb_runner_reads_its_waiting_times(tmp_path: Path) -> None:
    from aifi_app.algorithms.package import RemoteDicomwebSpec
    from tests.helpers.packages import make_dicomweb_package

    package = load_package(make_dicomweb_package(tmp_path / "w", timeout=90, idle=1.5, poll=3))
    assert package.runner == RemoteDicomwebSpec(
        node="vendor-web", result_timeout_seconds=90, result_idle_seconds=1.5, poll_seconds=3
    )


def test_dicomweb_runner_without_node_is_refused_in_words(tmp_path: Path) -> None:
    from tests.helpers.packages import make_dicomweb_package, rehash

    folder = make_dicomweb_package(tmp_path / "w")
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('node = "vendor-web"\n', ""))
    rehash(folder)
    with pytest.raises(PackageError, match=r"'runner.node' is missing"):
        load_package(folder)
