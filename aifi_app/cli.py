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

from aifi_app import __version__
from aifi_app.config.loading import ConfigError, load_settings, parse_node_address, with_overrides
from aifi_app.config.settings import Settings, settings_reference

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
    from aifi_app.store.status import queue_snapshot

    snap = queue_snapshot(_open_db(args), limit=args.limit)
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return 0
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
