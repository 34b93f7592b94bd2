"""The MSI's payload: the Windows CPython runtime and the dependencies as Windows wheels.

Layout under the payload folder (it becomes ``C:\\Program Files\\AIFI Appliance``)::

    aifi-app.cmd                      launcher: runtime\\python.exe -m aifi_app %*
    runtime\\python.exe, pythonw.exe, python313.dll, python313.zip, *.pyd, ...
    runtime\\python313._pth           search path: the zip, the folder, Lib\\site-packages
    runtime\\Lib\\site-packages\\...    every pinned wheel, unpacked

The wheels are unpacked here rather than with a wheel installer because an installer
writes console-script launchers that hold an absolute interpreter path, and the install
folder is not known at build time; the appliance is started as ``python -m aifi_app``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

from packaging.utils import parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
LOCK = Path(__file__).resolve().parent / "windows-requirements.lock"
# the CPython minor version the lock is resolved for and the runtime must be
RUNTIME_PYTHON = "3.13"
PLATFORM_TAG = "win_amd64"
SITE_PACKAGES = PurePosixPath("runtime/Lib/site-packages")

LAUNCHER = (
    "@echo off\r\n"
    "rem AIFI Appliance: runs the appliance with the bundled Python runtime.\r\n"
    "rem   aifi-app.cmd            the desktop client\r\n"
    "rem   aifi-app.cmd serve      headless (see aifi-app.cmd --help)\r\n"
    '"%~dp0runtime\\python.exe" -m aifi_app %*\r\n'
)


class PayloadError(RuntimeError):
    """The payload cannot be built as pinned; the message says what is wrong."""


def project_version(repo: Path = REPO) -> str:
    """The project's version, as ``pyproject.toml`` takes it (``aifi_app.__version__``)."""
    text = (repo / "aifi_app" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise PayloadError("aifi_app/__init__.py has no __version__")
    return match.group(1)


def msi_version(version: str) -> str:
    """An MSI ProductVersion (major.minor.build, 255.255.65535 at most) from a PEP 440 one.

    Windows Installer compares only these three fields for upgrades, so a pre-release or
    local version cannot be told apart from its release: it is refused.
    """
    parsed = Version(version)
    if parsed.is_prerelease or parsed.is_devrelease or parsed.local or parsed.is_postrelease:
        raise PayloadError(f"version {version}: an MSI needs a plain release (major.minor.patch)")
    parts = [*parsed.release, 0, 0][:3]
    if len(parsed.release) > 3 and any(parsed.release[3:]):
        raise PayloadError(f"version {version}: an MSI version has three fields at most")
    limits = (255, 255, 65535)
    if any(p > limit for p, limit in zip(parts, limits, strict=True)):
        raise PayloadError(f"version {version}: over the MSI limits 255.255.65535")
    return ".".join(str(p) for p in parts)


def locked_requirements(lock: Path = LOCK) -> dict[str, str]:
    """``{normalised name: version}`` of every pin in the lock; each must carry a hash."""
    pins: dict[str, str] = {}
    text = lock.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--") else line
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)(.*)$", line)
        if not match:
            raise PayloadError(f"{lock.name}: not a pinned requirement: {line[:60]!r}")
        if "--hash=sha256:" not in match.group(3):
            raise PayloadError(f"{lock.name}: {match.group(1)} has no sha256 hash")
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def relock(lock: Path = LOCK, repo: Path = REPO) -> None:
    """Resolve the project's dependencies for Windows (uv) and write the hashed lock."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    cmd = [
        uv, "pip", "compile", str(repo / "pyproject.toml"),
        "--python-platform", "x86_64-pc-windows-msvc",
        "--python-version", RUNTIME_PYTHON,
        "--generate-hashes", "--only-binary", ":all:",
        "--no-header", "--quiet", "-o", str(lock),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    body = lock.read_text(encoding="utf-8")
    header = (
        f"# The AIFI Appliance's dependencies for Windows x64, CPython {RUNTIME_PYTHON}:\n"
        "# resolved for the Windows platform (Windows-only dependencies such as keyring's\n"
        "# pywin32-ctypes included), every wheel pinned by sha256. Regenerate with\n"
        "#   python installer/build_msi.py relock\n"
    )
    lock.write_text(header + body, encoding="utf-8")


def download_wheels(dest: Path, lock: Path = LOCK) -> list[Path]:
    """Download every pinned wheel for win_amd64 with its hash checked (pip)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--isolated", "--quiet",
        "--disable-pip-version-check", "--require-hashes", "--no-deps",
        "--only-binary=:all:", "--platform", PLATFORM_TAG,
        "--python-version", RUNTIME_PYTHON, "--implementation", "cp",
        "-r", str(lock), "-d", str(dest),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return wheels_for_lock(dest, lock)


def wheels_for_lock(folder: Path, lock: Path = LOCK) -> list[Path]:
    """The wheel in ``folder`` for each pin of the lock; a missing or extra one is an error.

    A cached folder is accepted only as the lock pins it: pip checked the hashes when
    it downloaded them, and :func:`check_wheel_hashes` checks them again here.
    """
    pins = locked_requirements(lock)
    found: dict[str, Path] = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if name in pins and Version(pins[name]) == version:
            found[name] = wheel
    missing = sorted(set(pins) - set(found))
    if missing:
        raise PayloadError(f"{folder}: no wheel for {', '.join(missing)}")
    check_wheel_hashes([found[n] for n in sorted(found)], lock)
    return [found[n] for n in sorted(found)]


def check_wheel_hashes(wheels: list[Path], lock: Path = LOCK) -> None:
    import hashlib

    text = lock.read_text(encoding="utf-8")
    allowed = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", text))
    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest not in allowed:
            raise PayloadError(f"{wheel.name}: sha256 {digest} is not in {lock.name}")


def build_project_wheel(dest: Path, repo: Path = REPO) -> Path:
    """The project's own wheel, built from the checkout (pure Python, any platform)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("aifi_appliance-*.whl"):
        old.unlink()
    cmd = [
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--disable-pip-version-check", "-w", str(dest), str(repo),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=dest)
    (wheel,) = dest.glob("aifi_appliance-*.whl")
    return wheel


def unpack_wheel(wheel: Path, site_packages: Path) -> None:
    """Unpack one wheel into site-packages (its ``.data/purelib|platlib`` merged in)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts:
                raise PayloadError(f"{wheel.name}: unsafe path {info.filename!r}")
            if path.parts[0].endswith(".data"):
                kind = path.parts[1]
                if kind in ("purelib", "platlib"):
                    path = PurePosixPath(*path.parts[2:])
                elif kind in ("scripts", "headers"):
                    continue  # console scripts: the appliance runs as python -m aifi_app
                else:
                    raise PayloadError(f"{wheel.name}: unsupported wheel data {kind!r}")
            target = site_packages.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _pth_name(runtime: Path) -> str:
    dlls = sorted(runtime.glob("python3*.dll"))
    names = [d.stem for d in dlls if d.stem != "python3"]
    if len(names) != 1:
        raise PayloadError(f"{runtime}: expected one python3XX.dll, found {names}")
    expected = "python" + RUNTIME_PYTHON.replace(".", "")
    if names[0] != expected:
        raise PayloadError(
            f"the runtime is {names[0]}, the lock is resolved for {expected} (Python "
            f"{RUNTIME_PYTHON}): use a python.org {RUNTIME_PYTHON}.x embeddable zip"
        )
    return names[0]


def unpack_runtime(zip_path: Path, runtime: Path) -> None:
    """Unpack a python.org embeddable zip and point its ``._pth`` at site-packages."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts:
                raise PayloadError(f"{zip_path.name}: unsafe path {info.filename!r}")
        zf.extractall(runtime)
    stem = _pth_name(runtime)
    (runtime / f"{stem}._pth").write_text(
        f"{stem}.zip\n.\nLib\\site-packages\n\n# site: .pth files in Lib\\site-packages\n"
        "import site\n",
        encoding="utf-8",
        newline="\r\n",
    )


def layout(payload: Path, wheels: list[Path], runtime_zip: Path | None) -> None:
    """Lay out the whole payload folder (emptied first)."""
    if payload.exists():
        shutil.rmtree(payload)
    site_packages = payload.joinpath(*SITE_PACKAGES.parts)
    site_packages.mkdir(parents=True)
    if runtime_zip is not None:
        unpack_runtime(runtime_zip, payload / "runtime")
    for wheel in wheels:
        unpack_wheel(wheel, site_packages)
    (payload / "aifi-app.cmd").write_bytes(LAUNCHER.encode("ascii"))


def payload_files(payload: Path) -> list[PurePosixPath]:
    """Every file of the payload, relative, sorted."""
    return sorted(
        PurePosixPath(p.relative_to(payload).as_posix()) for p in payload.rglob("*") if p.is_file()
    )
