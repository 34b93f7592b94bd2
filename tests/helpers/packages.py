"""Build algorithm packages for tests the way a vendor would: files, manifest, signature."""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifi_app.algorithms.package import builtin_package_dir
from aifi_app.algorithms.signing import sign_manifest

BUILTIN = builtin_package_dir() / "pneumonia-cxr"


def _files_table(folder: Path) -> str:
    lines = ["[files]"]
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in ("manifest.toml", "manifest.sig"):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f'"{path.relative_to(folder).as_posix()}" = "{digest}"')
    return "\n".join(lines) + "\n"


def rehash(folder: Path) -> None:
    """Rewrite the manifest's [files] table from the files now in ``folder``."""
    manifest = folder / "manifest.toml"
    text = manifest.read_text()
    text = re.sub(r"\[files\]\n(?:\"[^\n]*\n)*", _files_table(folder), text)
    manifest.write_text(text)


def make_package(
    dest: Path,
    *,
    package_id: str = "vendor-cxr",
    version: str = "2.0.0",
    replace: dict[str, str] | None = None,
    append: str = "",
    key: Ed25519PrivateKey | None = None,
) -> Path:
    """A copy of the built-in chest X-ray package under another id (and edits), rehashed
    and, with ``key``, signed."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(BUILTIN, dest)
    manifest = dest / "manifest.toml"
    text = manifest.read_text()
    text = text.replace('id = "pneumonia-cxr"', f'id = "{package_id}"')
    text = text.replace('version = "1.0.0"', f'version = "{version}"')
    text = text.replace('vendor = "AIFI Appliance (built-in)"', 'vendor = "Example Vendor B.V."')
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    manifest.write_text(text + append)
    rehash(dest)
    if key is not None:
        sign_manifest(dest, key)
    return dest


def zip_package(folder: Path, archive: Path, *, top_folder: bool = False) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                zf.write(path, f"{folder.name}/{name}" if top_folder else name)
    return archive


REMOTE_MANIFEST = """schema_version = 1
id = "bonexpert-remote"
name = "BoneXpert (remote DICOM node)"
version = "3.2.0"
vendor = "Visiana (simulated)"
intended_use = "Bone age from a hand radiograph (test template)."
model_card = "MODEL_CARD.md"

[files]

[input]
modalities = ["CR", "DX"]
patient_age_years = { max = 19 }

[input.selection]
scope = "image"
max_images = 1

[pseudonymisation]
options = ["retain_patient_characteristics"]

[runner]
kind = "dicom_node"
node = "{node}"
result_timeout_seconds = {timeout}

[output]
kind = "dicom"
code = { value = "443849008", scheme = "SCT", meaning = "Bone age" }
description = "The vendor's secondary capture and SR, delivered as they are"

[results]
objects = ["sc", "sr"]
"""


def make_remote_package(
    dest: Path, *, node: str = "vendor", timeout: float = 30.0, results_extra: str = ""
) -> Path:
    """A remote DICOM-node package whose runner is the settings' node ``node``
    (``results_extra``: more lines for its ``[results]`` table)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "MODEL_CARD.md").write_text("# Simulated vendor gateway\n")
    text = REMOTE_MANIFEST.replace("{node}", node).replace("{timeout}", str(timeout))
    if results_extra:
        text = text.replace(
            'objects = ["sc", "sr"]\n', f'objects = ["sc", "sr"]\n{results_extra}\n'
        )
    (dest / "manifest.toml").write_text(text)
    rehash(dest)
    return dest


def make_dicomweb_package(
    dest: Path,
    *,
    node: str = "vendor-web",
    timeout: float = 30.0,
    idle: float = 0.5,
    poll: float = 0.2,
) -> Path:
    """The remote package above, run by a vendor's DICOMweb service (settings node ``node``)."""
    make_remote_package(dest, node=node, timeout=timeout)
    manifest = dest / "manifest.toml"
    text = manifest.read_text().replace('kind = "dicom_node"', 'kind = "dicomweb"')
    text = text.replace(
        f"result_timeout_seconds = {timeout}",
        f"result_timeout_seconds = {timeout}\nresult_idle_seconds = {idle}\npoll_seconds = {poll}",
    )
    text = text.replace('id = "bonexpert-remote"', 'id = "bonexpert-web"')
    manifest.write_text(text)
    rehash(dest)
    return dest


HTTP_MANIFEST = """schema_version = 1
id = "{id}"
name = "Fracture finder (REST/JSON, simulated)"
version = "1.4.0"
vendor = "Example Vendor B.V. (simulated)"
intended_use = "Fracture detection on radiographs (test package)."
model_card = "MODEL_CARD.md"

[files]

[input]
modalities = ["CR", "DX"]

[input.selection]
scope = "image"
max_images = 1

[pseudonymisation]
options = []

[runner]
kind = "http"
node = "{node}"
path = "/v1/analyze"
upload = "{upload}"
request_timeout_seconds = {timeout}

[runner.response]
{response}

{output}

[results]
objects = ["sc", "sr"]
"""

HTTP_CLASSIFICATION = """[output]
kind = "classification"
code = { value = "72704001", scheme = "SCT", meaning = "Fracture" }
threshold = 0.5
positive_label = "Fracture suspected"
negative_label = "No fracture detected"
"""

HTTP_MEASUREMENT = """[output]
kind = "measurement"
code = { value = "443849008", scheme = "SCT", meaning = "Bone age" }
quantity = { value = "443849008", scheme = "SCT", meaning = "Bone age" }
unit = { value = "a", scheme = "UCUM", meaning = "year" }
"""


def make_http_package(
    dest: Path,
    *,
    package_id: str = "fracture-http",
    node: str = "vendor-api",
    upload: str = "multipart",
    timeout: float = 10.0,
    response: str = 'score = "result.probability"',
    output: str = HTTP_CLASSIFICATION,
) -> Path:
    """A REST/JSON package whose runner is the settings' http node ``node``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "MODEL_CARD.md").write_text("# Simulated REST/JSON vendor\n")
    text = HTTP_MANIFEST
    for key, value in {
        "{id}": package_id,
        "{node}": node,
        "{upload}": upload,
        "{timeout}": str(timeout),
        "{response}": response,
        "{output}": output,
    }.items():
        text = text.replace(key, value)
    (dest / "manifest.toml").write_text(text)
    rehash(dest)
    return dest
