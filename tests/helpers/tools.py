"""The real DICOM tools the tests use: DCMTK and dicom3tools from Debian.

pynetdicom installs its own ``storescu``/``echoscu`` scripts on PATH, so DCMTK's are
always called by their Debian path. DCMTK runs with TCP_NODELAY=1 (see DEVELOPERS.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

DCMTK_BIN = Path("/usr/bin")
STORESCU = DCMTK_BIN / "storescu"
ECHOSCU = DCMTK_BIN / "echoscu"
DSRDUMP = DCMTK_BIN / "dsrdump"
DCIODVFY = Path("/usr/bin/dciodvfy")


def dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


def storescu(
    files: Sequence[Path] | Path,
    port: int,
    *,
    called: str = "AIFI",
    calling: str = "STORESCU",
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Send files (or a folder, recursively) with DCMTK storescu to 127.0.0.1:port."""
    args = [str(STORESCU), "-aet", calling, "-aec", called, "-nh"]
    if isinstance(files, Path) and files.is_dir():
        args += ["+sd", "+r", "127.0.0.1", str(port), str(files)]
    else:
        args += ["127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(
        args, env=dcmtk_env(), capture_output=True, text=True, check=check, timeout=timeout
    )


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for one file (warnings are not errors)."""
    proc = subprocess.run(
        [str(DCIODVFY), "-new", str(path)], capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    return [line for line in out.splitlines() if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    proc = subprocess.run(
        [str(DSRDUMP), str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout


def start_storescu_verbose(
    files: Sequence[Path], port: int, *, called: str = "AIFI", calling: str = "STORESCU"
) -> subprocess.Popen[str]:
    """Start DCMTK storescu -v in the background; read its acknowledgements with
    :func:`acknowledged_files` once it has ended."""
    args = [str(STORESCU), "-v", "-aet", calling, "-aec", called, "-nh", "127.0.0.1", str(port)]
    return subprocess.Popen(
        [*args, *map(str, files)],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def acknowledged_files(storescu_output: str) -> set[Path]:
    """The files for which storescu -v reported a C-STORE response with status Success."""
    acked: set[Path] = set()
    current: Path | None = None
    for line in storescu_output.splitlines():
        if line.startswith("I: Sending file: "):
            current = Path(line.removeprefix("I: Sending file: ").strip())
        elif line.startswith("I: Received Store Response") and current is not None:
            if line.strip().endswith("(Success)"):
                acked.add(current)
            current = None
    return acked
