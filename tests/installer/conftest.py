"""Two MSI builds (the project's version and a newer one) of a reduced payload, shared.

The reduced payload is the project's own wheel plus keyring and its Windows dependencies
(pywin32-ctypes among them), taken from the real lock with their hashes and downloaded
from PyPI; the runtime is the signed stand-in (tests/helpers/msi.py). The full build is
the same command without --lock and with python.org's runtime (installer/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.msi import Build, installer_modules, make_pki, stand_in_runtime

REDUCED = ("keyring", "pywin32-ctypes", "jaraco-classes", "jaraco-context", "jaraco-functools",
           "more-itertools")  # fmt: skip


def reduced_lock(target: Path) -> Path:
    _, _, payload, _ = installer_modules()
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in payload.LOCK.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            name = re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
            current = blocks.setdefault(name, [])
            current.append(line)
        elif current is not None and line.strip().startswith("--hash"):
            current.append(line)
        else:
            current = None
    chosen = ["\n".join(blocks[name]) for name in REDUCED]
    target.write_text("\n".join(chosen) + "\n")
    return target


@pytest.fixture(scope="session")
def msi_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    import contextlib
    import io
    import os

    build_msi, _, payload, _ = installer_modules()
    root = tmp_path_factory.mktemp("msi")
    pki = make_pki(root / "pki")
    runtime = stand_in_runtime(root, pki)
    signer = pki.signer("AIFI Test Signer", password="s3cret")
    lock = reduced_lock(root / "lock.txt")
    os.environ["AIFI_TEST_PFX_PASSWORD"] = "s3cret"
    builds: dict[str, Build] = {}
    wheels = root / "wheels"
    for key, version in (("old", None), ("new", "0.99.1")):
        work = root / f"work-{key}"
        args = ["--runtime", str(runtime), "--ca-file", str(pki.ca_file), "--lock", str(lock),
                "--work", str(work), "--out", str(root / "dist"),
                "--sign-pkcs12", str(signer),
                "--sign-password-env", "AIFI_TEST_PFX_PASSWORD"]  # fmt: skip
        if version:
            args += ["--version", version]
        if wheels.exists():
            args += ["--wheels", str(wheels)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert build_msi.main(args) == 0
        if not wheels.exists():
            (work / "wheels").rename(wheels)
        v = payload.msi_version(version or payload.project_version())
        builds[key] = Build(root / "dist" / f"aifi-appliance-{v}.msi", v, work / "payload",
                            pki.ca_file, out.getvalue())  # fmt: skip
    del os.environ["AIFI_TEST_PFX_PASSWORD"]
    return builds
