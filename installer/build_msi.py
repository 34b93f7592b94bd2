"""Build the AIFI Appliance MSI on a Linux build machine.

    python installer/build_msi.py --runtime python-3.13.N-embed-amd64.zip --out dist/

See installer/README.md. Steps: the pinned Windows wheels (downloaded with their hashes
checked, or taken from --wheels DIR), the project's own wheel, the python.org embeddable
runtime (its Authenticode signatures verified first), the payload folder, the WiX source,
``wixl``, and with --sign-pkcs12 an Authenticode signature on the MSI (osslsigncode).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msi_authenticode
import msi_payload
import msi_wxs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build_msi.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    sub.add_parser("relock", help="re-resolve installer/windows-requirements.lock (needs uv)")
    p.add_argument(
        "--runtime",
        required=False,
        metavar="ZIP|none",
        help="python.org Windows embeddable zip (x64) of CPython "
        f"{msi_payload.RUNTIME_PYTHON}; 'none' builds a payload-only MSI for checks, "
        "which cannot run on Windows",
    )
    p.add_argument("--out", default="dist", type=Path, help="output folder (default dist/)")
    p.add_argument("--wheels", type=Path, help="cached folder of the pinned wheels")
    p.add_argument("--lock", type=Path, default=msi_payload.LOCK, help=argparse.SUPPRESS)
    p.add_argument("--version", help="MSI version instead of the project's (tests, rebuilds)")
    p.add_argument(
        "--work", type=Path, help="work folder, kept: wheels, payload, .wxs (default: temporary)"
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        default=msi_authenticode.DEFAULT_CA_FILE,
        help="trusted roots for the runtime's signatures (PEM)",
    )
    p.add_argument("--sign-pkcs12", type=Path, help="code-signing certificate and key (.pfx)")
    p.add_argument(
        "--sign-password-env",
        metavar="VAR",
        help="environment variable holding the .pfx password",
    )
    p.add_argument("--timestamp-url", help="RFC 3161 timestamp server for the signature")
    return p


def build(args: argparse.Namespace) -> Path:
    started = time.monotonic()
    if args.runtime is None:
        raise SystemExit("--runtime ZIP (or --runtime none) is required")
    runtime = None if args.runtime == "none" else Path(args.runtime)
    version = msi_payload.msi_version(args.version or msi_payload.project_version())
    if args.work is None:  # a temporary work folder, removed afterwards
        with tempfile.TemporaryDirectory(prefix="aifi-msi-") as tmp:
            args.work = Path(tmp)
            try:
                return build(args)
            finally:
                args.work = None
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    wheels_dir = args.wheels or work / "wheels"

    if args.wheels is None:
        print(f"== downloading the pinned Windows wheels into {wheels_dir}")
        wheels = msi_payload.download_wheels(wheels_dir, args.lock)
    else:
        wheels = msi_payload.wheels_for_lock(wheels_dir, args.lock)
    own = msi_payload.build_project_wheel(work / "own")
    print(f"== {len(wheels)} pinned wheels (hashes checked) + {own.name}")

    payload = work / "payload"
    if runtime is not None:
        print(f"== verifying the runtime's Authenticode signatures ({runtime.name})")
        check = work / "runtime-check"
        shutil.rmtree(check, ignore_errors=True)
        msi_payload.unpack_runtime(runtime, check)
        verified = msi_authenticode.verify_runtime(check, args.ca_file)
        print(f"   {len(verified)} files signed by {sorted({v.signer for v in verified})}")
    msi_payload.layout(payload, [*wheels, own], runtime)
    files = msi_payload.payload_files(payload)
    print(f"== payload: {len(files)} files")

    wxs = work / "aifi-appliance.wxs"
    opts = msi_wxs.WxsOptions(
        version=version,
        payload=Path(os.path.relpath(payload, wxs.parent)),
        with_service=runtime is not None,
    )
    wxs.write_text(msi_wxs.generate(opts, files), encoding="utf-8")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    suffix = "" if runtime is not None else "-no-runtime"
    out: Path = args.out
    msi = out / f"aifi-appliance-{version}{suffix}.msi"
    unsigned = msi.with_suffix(".unsigned.msi") if args.sign_pkcs12 else msi
    print(f"== wixl -> {unsigned}")
    subprocess.run(["wixl", "-a", "x64", "-o", str(unsigned), str(wxs)], check=True)
    for query in msi_wxs.post_build_queries(opts.with_service):
        subprocess.run(["msibuild", str(unsigned), "-q", query], check=True)
    if args.sign_pkcs12:
        password = os.environ.get(args.sign_password_env) if args.sign_password_env else None
        print("== signing")
        msi_authenticode.sign(
            unsigned, msi, args.sign_pkcs12, password, args.timestamp_url, msi_wxs.PRODUCT
        )
        unsigned.unlink()
    size = msi.stat().st_size
    print(f"== {msi}: {size / 2**20:.1f} MiB, {time.monotonic() - started:.0f} s")
    return msi


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "relock":
            msi_payload.relock(args.lock)
            print(f"wrote {args.lock}")
            return 0
        build(args)
    except (msi_payload.PayloadError, msi_authenticode.SignatureError) as exc:
        print(f"build_msi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
