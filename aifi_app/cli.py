"""The ``aifi-app`` command: serve headless, show the queue, act on studies and jobs, demo."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import logging.handlers
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from aifi_app import __version__
from aifi_app.config.loading import ConfigError, load_settings, parse_node_address, with_overrides
from aifi_app.config.settings import Settings, settings_reference
from aifi_app.pseudonymise.profile_options import ProfileOption

if TYPE_CHECKING:
    from aifi_app.algorithms.lifecycle import PackageCatalog

log = logging.getLogger("aifi_app")


def _setup_logging(level: str, data_dir: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if data_dir is not None:
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                logs / "aifi-app.log", maxBytes=10_000_000, backupCount=5, encoding="utf-8"
            )
        )
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # pynetdicom logs data set contents at DEBUG and association details at INFO
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(Path(args.config) if args.config else None)
    return with_overrides(
        settings,
        data_dir=getattr(args, "data_dir", None),
        port=getattr(args, "port", None),
        ae_title=getattr(args, "ae_title", None),
        pacs=getattr(args, "pacs", None),
        allow=tuple(getattr(args, "allow", None) or ()),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from aifi_app.secrets import KeyringUnavailableError
    from aifi_app.service import Appliance

    settings = _settings(args)
    _setup_logging(args.log_level, settings.data_dir)
    faulthandler.enable()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        appliance = Appliance(settings)
    except KeyringUnavailableError as exc:
        log.error("%s", exc)
        return 3
    appliance.start()
    print(
        f"aifi-app {__version__} serving as {settings.node.ae_title} on "
        f"{settings.node.bind_address}:{appliance.node.port}; data in {settings.data_dir}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        appliance.stop()
    return 0


def _open_db(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aifi_app.service import open_database

    return open_database(_settings(args).data_dir)


def cmd_status(args: argparse.Namespace) -> int:
    from aifi_app.service import disk_guard
    from aifi_app.store.status import queue_snapshot

    snap = queue_snapshot(_open_db(args), limit=args.limit, disk=disk_guard(_settings(args)))
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return 0
    for warning in snap["warnings"]:
        print(f"WARNING: {warning}")
    print(f"studies: {snap['counts']['studies']}  jobs: {snap['counts']['jobs']}")
    for j in snap["jobs"]:
        reason = f"  ({j['reason']})" if j["reason"] else ""
        print(
            f"job {j['id']:>5}  study {j['study_id']:>5}  {j['algorithm_id']:<16} "
            f"{j['state']:<15}{reason}"
        )
    for s in snap["studies"]:
        if s["state"] in ("receiving", "complete", "no_match", "recorded"):
            reason = f"  ({s['reason']})" if s["reason"] else ""
            print(
                f"study {s['id']:>5}  {s['modality']:<4} {s['instance_count']:>5} instance(s) "
                f"{s['state']}{reason}"
            )
    return 0


def cmd_process_now(args: argparse.Namespace) -> int:
    from aifi_app.store.jobs import process_now

    if process_now(_open_db(args), args.study_id, actor="cli"):
        print(f"study {args.study_id} will be processed now")
        return 0
    print(f"study {args.study_id} is not receiving", file=sys.stderr)
    return 1


def cmd_retry(args: argparse.Namespace) -> int:
    from aifi_app.store.jobs import InvalidTransitionError, retry_job

    try:
        state = retry_job(_open_db(args), args.job_id, actor="cli")
    except (KeyError, InvalidTransitionError) as exc:
        print(str(exc).strip("'\""), file=sys.stderr)
        return 1
    print(f"job {args.job_id} is {state} again")
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo

    node = parse_node_address(args.node, name="peer")
    try:
        status = echo(Peer(node.ae_title, node.host, node.port), calling_ae_title=args.calling)
    except AssociationFailed as exc:
        print(f"C-ECHO failed: {exc}", file=sys.stderr)
        return 1
    print(f"C-ECHO {node.ae_title}@{node.host}:{node.port}: status 0x{status:04X}")
    return 0 if status == 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from aifi_app.demo import run_demo

    _setup_logging(args.log_level, None)
    return run_demo(
        studies=args.studies,
        images=Path(args.images) if args.images else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        pacs=args.pacs,
    )


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_reference())
    return 0


def _batch_secret(args: argparse.Namespace) -> bytes:
    """The key for ``pseudonymise``: a key file, else this installation's key (keyring)."""
    if args.key_file:
        secret = Path(args.key_file).read_bytes().strip()
        if len(secret) < 16:
            raise ConfigError(f"key file {args.key_file} holds fewer than 16 bytes")
        return secret
    from aifi_app.secrets import installation_secret
    from aifi_app.service import installation_id, open_database

    db = open_database(_settings(args).data_dir)
    try:
        return installation_secret(installation_id(db))
    finally:
        db.close()


def cmd_algorithms(args: argparse.Namespace) -> int:
    """``aifi-app algorithms list|install|remove|enable|disable``; safe while serving (the
    service reloads on its next pass)."""
    from aifi_app.algorithms import lifecycle
    from aifi_app.algorithms.package import PackageError
    from aifi_app.service import open_database, trust_policy
    from aifi_app.store import algorithm_state

    settings = _settings(args)
    db = open_database(settings.data_dir)
    trust = trust_policy(settings)
    catalog = lifecycle.PackageCatalog(
        db, settings.data_dir, settings.algorithms.package_dirs, trust
    )
    action = args.action
    try:
        if action == "list":
            return _list_algorithms(catalog, as_json=args.json)
        if action == "install":
            package, previous = lifecycle.install(Path(args.target), settings.data_dir, db, trust)
            ident = package.identity
            what = f"updated from {previous} to" if previous else "installed"
            signer = f"signed by {package.signed_by}" if package.signed_by else "unsigned"
            print(f"{ident.algorithm_id} {what} {ident.version} ({ident.vendor}; {signer})")
            return 0
        if action == "remove":
            lifecycle.remove(args.target, settings.data_dir, db)
            print(f"{args.target} removed")
            return 0
        if args.target not in catalog.known_ids():
            raise PackageError(f"no usable algorithm package {args.target}")
        algorithm_state.set_enabled(db, args.target, action == "enable", actor="cli")
        print(f"{args.target} {action}d")
        return 0
    except PackageError as exc:
        print(f"aifi-app algorithms {action}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def cmd_pseudonymise(args: argparse.Namespace) -> int:
    from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption, Pseudonymiser
    from aifi_app.pseudonymise.batch import pseudonymise_tree, text_progress
    from aifi_app.secrets import KeyringUnavailableError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        secret = _batch_secret(args)
    except (KeyringUnavailableError, OSError) as exc:
        print(f"aifi-app: no pseudonymisation key: {exc}", file=sys.stderr)
        return 3
    options = frozenset(ProfileOption[name.upper()] for name in args.option or ())
    burned_in = (
        BurnedInPolicy.ACCEPT_CLEANED_BY_VENDOR if args.accept_burned_in else BurnedInPolicy.REFUSE
    )
    pseudonymiser = Pseudonymiser(secret, options, burned_in=burned_in)
    progress = None if args.quiet else text_progress(sys.stderr.write)
    try:
        summary = pseudonymise_tree(pseudonymiser, Path(args.in_dir), Path(args.out_dir), progress)
    except ValueError as exc:
        print(f"aifi-app: {exc}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 0 if summary.failed == 0 and summary.unreadable == 0 else 1


def _list_algorithms(catalog: PackageCatalog, *, as_json: bool) -> int:
    rows = []
    for entry in catalog.scan():
        p = entry.package
        rows.append(
            {
                "id": p.identity.algorithm_id if p else entry.root.name,
                "version": p.identity.version if p else "",
                "name": p.identity.name if p else "",
                "vendor": p.identity.vendor if p else "",
                "source": entry.source,
                "enabled": entry.enabled,
                "signed_by": p.signed_by if p else None,
                "error": entry.error,
                "path": str(entry.root),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "unusable" if r["error"] else ("enabled" if r["enabled"] else "disabled")
        signer = f"signed {r['signed_by']}" if r["signed_by"] else "unsigned"
        print(
            f"{r['id']:<24} {r['version']:<10} {state:<9} {r['source']:<10} {signer:<24} "
            f"{r['name'] or r['error']}"
        )
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    # the only way from the core into Qt, and only on request (pyproject's import contract
    # names this one import as allowed); headless commands never load PySide6
    from aifi_app.gui.app import run

    return run(args)


def _gui_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("PySide6") is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aifi-app", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aifi-app {__version__}")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help="settings file (TOML)")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the file)")

    serve = sub.add_parser("serve", help="run the appliance headless")
    common(serve)
    serve.add_argument("--port", type=int, help="DICOM port (overrides the file)")
    serve.add_argument("--ae-title", metavar="AET", help="own AE title (overrides the file)")
    serve.add_argument("--pacs", metavar="AET@HOST:PORT", help="PACS for results")
    serve.add_argument(
        "--allow",
        metavar="AET",
        action="append",
        help="also allow this calling AE title (repeatable)",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=cmd_serve)

    status = sub.add_parser("status", help="show the queue")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--limit", type=int, default=500)
    status.set_defaults(func=cmd_status)

    now = sub.add_parser("process-now", help="process a receiving study without waiting")
    common(now)
    now.add_argument("study_id", type=int)
    now.set_defaults(func=cmd_process_now)

    retry = sub.add_parser("retry", help="retry a failed, rejected or cancelled job")
    common(retry)
    retry.add_argument("job_id", type=int)
    retry.set_defaults(func=cmd_retry)

    echo = sub.add_parser("echo", help="verify a DICOM node with C-ECHO")
    echo.add_argument("node", metavar="AET@HOST:PORT")
    echo.add_argument("--calling", default="AIFI", metavar="AET")
    echo.set_defaults(func=cmd_echo)

    demo = sub.add_parser("demo", help="run the whole chain on sample studies")
    demo.add_argument("--studies", type=int, default=4)
    demo.add_argument(
        "--images",
        metavar="NPZ",
        help="PneumoniaMNIST .npz to take chest X-rays from (default: phantoms)",
    )
    demo.add_argument("--data-dir", metavar="DIR")
    demo.add_argument("--pacs", metavar="AET@HOST:PORT", help="a real PACS instead of the stand-in")
    demo.add_argument("--log-level", default="WARNING")
    demo.set_defaults(func=cmd_demo)

    pseudo = sub.add_parser(
        "pseudonymise",
        help="pseudonymise a folder of DICOM files (research export)",
        description="Pseudonymise every DICOM file under IN_DIR into OUT_DIR with the"
        " appliance's engine (PS3.15 Annex E, keyed). Prints counts of what was done,"
        " never a value.",
    )
    common(pseudo)
    pseudo.add_argument("in_dir", metavar="IN_DIR")
    pseudo.add_argument("out_dir", metavar="OUT_DIR")
    pseudo.add_argument(
        "--option",
        action="append",
        choices=[o.name.lower() for o in ProfileOption],
        help="PS3.15 profile option (repeatable)",
    )
    pseudo.add_argument(
        "--key-file",
        metavar="FILE",
        help="key for a research export (default: this installation's key from the OS keyring)",
    )
    pseudo.add_argument(
        "--accept-burned-in",
        action="store_true",
        help="also write images that may carry burned-in text (default: skip them)",
    )
    pseudo.add_argument("--quiet", action="store_true", help="no progress bar")
    pseudo.set_defaults(func=cmd_pseudonymise)

    algos = sub.add_parser("algorithms", help="list, install, remove, enable, disable packages")
    algo_sub = algos.add_subparsers(dest="action", required=True)
    listing = algo_sub.add_parser("list", help="every package found, with its state")
    common(listing)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_algorithms)
    for action, target, text in (
        ("install", "FILE", "install or update a package (folder or .zip); checked first"),
        ("remove", "ID", "remove an installed package"),
        ("enable", "ID", "take studies to this package again"),
        ("disable", "ID", "stop running this package (its jobs are rejected)"),
    ):
        p = algo_sub.add_parser(action, help=text)
        common(p)
        p.add_argument("target", metavar=target)
        p.set_defaults(func=cmd_algorithms)

    gui = sub.add_parser("gui", help="open the desktop application (the default command)")
    common(gui)
    gui.add_argument("--language", choices=["en", "nl"], help="interface language")
    gui.add_argument("--log-level", default="INFO")
    gui.set_defaults(func=cmd_gui)

    ref = sub.add_parser("settings", help="print every setting with its default")
    ref.set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if not _gui_available():
            parser.print_help()
            return 0
        args = parser.parse_args(["gui", *(argv if argv is not None else sys.argv[1:])])
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"aifi-app: settings error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
