"""The ``aifi-app`` command: serve headless, show the queue, act on studies and jobs, demo."""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import getpass
import json
import logging
import logging.handlers
import signal
import sys
import threading
from datetime import date
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from aifi_app import __version__
from aifi_app.config.installer_values import installer_defaults
from aifi_app.config.loading import ConfigError, load_settings, parse_node_address, with_overrides
from aifi_app.config.settings import Settings, settings_reference
from aifi_app.pseudonymise.profile_options import ProfileOption

if TYPE_CHECKING:
    from aifi_app.algorithms.lifecycle import PackageCatalog

log = logging.getLogger("aifi_app")


def _setup_logging(level: str, data_dir: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if data_dir is not None:
        from aifi_app.file_modes import private_dir, restrict_umask

        restrict_umask()  # logs, like the data, readable by the service's account only
        private_dir(data_dir)
        logs = private_dir(data_dir / "logs")
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
    settings = load_settings(Path(args.config) if args.config else None, installer_defaults())
    return with_overrides(
        settings,
        data_dir=getattr(args, "data_dir", None),
        port=getattr(args, "port", None),
        ae_title=getattr(args, "ae_title", None),
        pacs=getattr(args, "pacs", None),
        allow=tuple(getattr(args, "allow", None) or ()),
    )


def cli_actor() -> str:
    """Who ran the command, for the audit log: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no user name in this environment
        return "cli"


def cmd_audit(args: argparse.Namespace) -> int:
    from aifi_app.store import audit_chain, audit_log

    db = _open_db(args)
    if args.action == "verify":
        report = audit_chain.verify(db.conn)
        if report.ok:
            print(f"audit log verified: {report.reason}")
            return 0
        print(f"audit log BROKEN at row {report.broken_at}: {report.reason}", file=sys.stderr)
        return 1
    rows = audit_log.entries(db, limit=-1, oldest_first=True)
    out = Path(args.output)
    write = audit_log.write_jsonl if args.format == "jsonl" else audit_log.write_csv
    count = write(rows, out)
    with db.transaction() as conn:
        from aifi_app.store import audit

        audit.record(
            conn,
            "audit",
            "exported",
            detail=f"{count} rows as {args.format} to {out.name}",
            actor=cli_actor(),
        )
    print(f"{count} audit rows written to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return serve(args, stop)


def serve(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run the appliance headless until ``stop`` is set (a signal, or the Windows service
    control manager: :mod:`aifi_app.windows_service`)."""
    from aifi_app.crash import CrashHandler
    from aifi_app.secrets import KeyringUnavailableError
    from aifi_app.service import Appliance, ServiceConfigError

    settings = _settings(args)
    _setup_logging(args.log_level, settings.data_dir)
    faulthandler.enable()
    # from here on an unhandled exception leaves a crash report (the appliance's own
    # handler, installed while it runs, also writes the audit entry)
    CrashHandler(settings.data_dir).install()
    try:
        appliance = Appliance(settings)
    except KeyringUnavailableError as exc:
        log.error("%s", exc)
        return 3
    except ServiceConfigError as exc:
        log.error("%s", exc)
        return 2
    appliance.start()
    print(
        f"aifi-app {__version__} serving as {settings.node.ae_title} on "
        f"{settings.node.bind_address}:{appliance.node.port}; data in {settings.data_dir}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    except Exception as exc:  # the main loop itself failed: report (no PHI), then stop
        appliance.crash_handler.handle(exc, "main")
        return 70  # EX_SOFTWARE
    finally:
        appliance.stop()
    return 0


def _open_db(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aifi_app.service import open_database

    return open_database(_settings(args).data_dir)


def cmd_status(args: argparse.Namespace) -> int:
    from aifi_app import health
    from aifi_app.service import disk_guard
    from aifi_app.store.status import queue_snapshot

    settings = _settings(args)
    db = _open_db(args)
    snap = queue_snapshot(db, limit=args.limit, disk=disk_guard(settings))
    snap["health"] = health.check(db, settings.data_dir)
    code = int(snap["health"]["exit_code"])
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return code
    reasons = "; ".join(snap["health"]["reasons"])
    print(f"health: {snap['health']['status']}" + (f" ({reasons})" if reasons else ""))
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
    return code


def cmd_process_now(args: argparse.Namespace) -> int:
    from aifi_app.store.jobs import process_now

    if process_now(_open_db(args), args.study_id, actor=cli_actor()):
        print(f"study {args.study_id} will be processed now")
        return 0
    print(f"study {args.study_id} is not receiving", file=sys.stderr)
    return 1


def cmd_retry(args: argparse.Namespace) -> int:
    from aifi_app.ris.outbox import retry_failed
    from aifi_app.store.jobs import InvalidTransitionError, retry_job

    db = _open_db(args)
    resent = retry_failed(db, args.job_id, actor=cli_actor())
    if resent:
        print(f"job {args.job_id}: {resent} HL7 message(s) to the RIS queued again")
    try:
        state = retry_job(db, args.job_id, actor=cli_actor())
    except (KeyError, InvalidTransitionError) as exc:
        if resent:
            return 0
        print(str(exc).strip("'\""), file=sys.stderr)
        return 1
    print(f"job {args.job_id} is {state} again")
    return 0


VERDICT_WORDS = {
    "agree": "agree",
    "false-positive": "false_positive",
    "missed": "missed",
    "unsure": "unsure",
}


def cmd_feedback(args: argparse.Namespace) -> int:
    from aifi_app.store.feedback import FeedbackError, Verdict, current_user, record

    try:
        found = record(
            _open_db(args),
            args.job_id,
            Verdict(VERDICT_WORDS[args.verdict]),
            args.who or current_user(),
            args.comment or "",
        )
    except FeedbackError as exc:
        print(f"aifi-app: {exc}", file=sys.stderr)
        return 1
    print(f"job {found.job_id}: {args.verdict} recorded for {found.who}")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from aifi_app.evaluation.period import Period
    from aifi_app.report.figures import compute
    from aifi_app.report.html_page import write_report

    try:
        period = Period.days(args.from_day, args.to_day)
    except ValueError as exc:
        print(f"aifi-app: {exc}", file=sys.stderr)
        return 2
    figures = compute(_open_db(args), period, now=time.time())
    path = write_report(figures, Path(args.out))
    print(f"report of {len(figures.jobs)} job(s), {period.label()}: {path}")
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from aifi_app.dicom_node.peers import dicom_peer
    from aifi_app.dicom_node.storage_scu import AssociationFailed, echo

    settings = _settings(args)
    if "@" in args.node:
        node = dataclasses.replace(
            parse_node_address(args.node, name="peer"),
            tls=args.tls,
            ca_file=args.ca_file or "",
        )
    else:
        found = settings.remote_node(args.node)
        if found is None:
            raise ConfigError(f"no remote node named {args.node!r} in the settings")
        node = found
    calling = args.calling or settings.delivery.calling_ae_title or settings.node.ae_title
    try:
        status = echo(dicom_peer(node, settings.node), calling_ae_title=calling)
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


def cmd_conformance(args: argparse.Namespace) -> int:
    from aifi_app.conformance import conformance_statement

    text = conformance_statement()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
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


def cmd_nodes(args: argparse.Namespace) -> int:
    """``aifi-app nodes set-token NAME``: keep a remote node's bearer token in the OS
    keyring (read from standard input, never from the command line or a file)."""
    import getpass

    from aifi_app.secrets import KeyringUnavailableError, set_node_token

    settings = _settings(args)
    if settings.remote_node(args.name) is None:
        print(f"aifi-app: no remote node named {args.name!r} in the settings", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        token = getpass.getpass(f"Token for {args.name}: ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        print("aifi-app: no token given; nothing stored", file=sys.stderr)
        return 2
    try:
        set_node_token(args.name, token)
    except KeyringUnavailableError as exc:
        print(f"aifi-app: {exc}", file=sys.stderr)
        return 1
    print(f"token of {args.name} stored in the OS keyring")
    return 0


def cmd_package_tools(args: argparse.Namespace) -> int:
    """``aifi-app algorithms keygen|pack|sign``: make packages without hand-edited hashes."""
    from aifi_app.algorithms import packing
    from aifi_app.algorithms.package import PackageError
    from aifi_app.algorithms.signing import SignatureError, fingerprint

    action = args.action
    try:
        if action == "keygen":
            public = packing.generate_key(Path(args.target))
            print(f"private key: {args.target} (keep it secret; it signs your packages)")
            print(f"public key:  {args.target}.pub, fingerprint {fingerprint(public)}")
            print(f'for the appliance\'s settings: trusted_vendor_keys = ["{public}"]')
            return 0
        key = packing.load_private_key(Path(args.key)) if args.key else None
        if action == "sign":
            if key is None:
                raise SignatureError("sign needs --key PRIVATE_KEY")
            package = packing.sign_folder(Path(args.target), key)
            print(
                f"{package.identity.algorithm_id} {package.identity.version} signed by"
                f" {package.signed_by}"
            )
            return 0
        archive, package, left_out = packing.pack(
            Path(args.target), Path(args.output) if args.output else None, key
        )
        signer = f"signed by {package.signed_by}" if package.signed_by else "unsigned"
        print(f"{archive}: {package.identity.algorithm_id} {package.identity.version} ({signer})")
        if left_out:
            print(f"left out: {', '.join(left_out)}")
        return 0
    except (PackageError, SignatureError) as exc:
        print(f"aifi-app algorithms {action}: {exc}", file=sys.stderr)
        return 1


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
            package, previous = lifecycle.install(
                Path(args.target), settings.data_dir, db, trust, actor=cli_actor()
            )
            ident = package.identity
            what = f"updated from {previous} to" if previous else "installed"
            signer = f"signed by {package.signed_by}" if package.signed_by else "unsigned"
            print(f"{ident.algorithm_id} {what} {ident.version} ({ident.vendor}; {signer})")
            return 0
        if action == "remove":
            lifecycle.remove(args.target, settings.data_dir, db, actor=cli_actor())
            print(f"{args.target} removed")
            return 0
        if args.target not in catalog.known_ids():
            raise PackageError(f"no usable algorithm package {args.target}")
        algorithm_state.set_enabled(db, args.target, action == "enable", actor=cli_actor())
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


def cmd_admin(args: argparse.Namespace) -> int:
    """``aifi-app admin set-passphrase``: the application manager's passphrase (its salted
    scrypt hash goes into the OS keyring; the change is audited)."""
    import getpass

    from aifi_app import admin_access
    from aifi_app.secrets import KeyringUnavailableError
    from aifi_app.service import open_database

    if args.stdin:
        passphrase = sys.stdin.readline().rstrip("\n")
    else:
        passphrase = getpass.getpass("New administrator passphrase: ")
        if getpass.getpass("Again: ") != passphrase:
            print("aifi-app admin: the two passphrases differ; nothing changed", file=sys.stderr)
            return 1
    settings = _settings(args)
    db = open_database(settings.data_dir)
    try:
        admin_access.set_passphrase(passphrase, db=db, actor=cli_actor())
    except (admin_access.PassphraseError, KeyringUnavailableError) as exc:
        print(f"aifi-app admin: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print("administrator passphrase set (its hash is in the OS keyring)")
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

    retry = sub.add_parser(
        "retry", help="retry a failed, rejected or cancelled job, and its failed HL7 messages"
    )
    common(retry)
    retry.add_argument("job_id", type=int)
    retry.set_defaults(func=cmd_retry)

    fb = sub.add_parser(
        "feedback",
        help="record a verdict on a job's result",
        description="Record a person's verdict on job JOB's result: agree, false-positive"
        " (a finding that is not there), missed (a finding the algorithm missed) or unsure.",
    )
    common(fb)
    fb.add_argument("job_id", type=int, metavar="JOB")
    fb.add_argument("verdict", choices=list(VERDICT_WORDS))
    fb.add_argument("--comment", help="optional comment (kept locally, never in a report)")
    fb.add_argument("--who", help="your initials (default: the operating-system user)")
    fb.set_defaults(func=cmd_feedback)

    rep = sub.add_parser(
        "report",
        help="write the evaluation report (HTML with plots, and CSV files)",
        description="Write the evaluation of the days FROM to TO (UTC, both included):"
        " turnaround, availability, agreement and input variation, as report.html with"
        " its plots and one CSV file per table. Holds no patient identifiers.",
    )
    common(rep)
    rep.add_argument("--from", dest="from_day", type=_day, required=True, metavar="DATE")
    rep.add_argument("--to", dest="to_day", type=_day, required=True, metavar="DATE")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    rep.set_defaults(func=cmd_report)

    echo = sub.add_parser("echo", help="verify a DICOM node with C-ECHO")
    common(echo)
    echo.add_argument(
        "node", metavar="AET@HOST:PORT|NAME", help="an address, or a remote node's name"
    )
    echo.add_argument("--calling", metavar="AET", help="calling AE title (default: own)")
    echo.add_argument("--tls", action="store_true", help="DICOM TLS (with an address)")
    echo.add_argument("--ca-file", metavar="PEM", help="CA certificates to verify the peer")
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

    nodes = sub.add_parser("nodes", help="secrets of remote nodes (kept in the OS keyring)")
    node_sub = nodes.add_subparsers(dest="action", required=True)
    token = node_sub.add_parser(
        "set-token", help="store a node's bearer token (read from standard input)"
    )
    common(token)
    token.add_argument("name", metavar="NAME", help="the node's name in [[remote_nodes]]")
    token.set_defaults(func=cmd_nodes)

    keygen = algo_sub.add_parser("keygen", help="make an Ed25519 key pair for signing packages")
    keygen.add_argument("target", metavar="PRIVATE_KEY", help="file for the private key (PEM)")
    keygen.set_defaults(func=cmd_package_tools)
    pack = algo_sub.add_parser(
        "pack", help="make a package .zip from a folder: [files] hashes computed, checked, signed"
    )
    pack.add_argument("target", metavar="FOLDER")
    pack.add_argument("--key", metavar="PRIVATE_KEY", help="sign with this key")
    pack.add_argument("--output", metavar="FILE", help="archive to write (default ID-VERSION.zip)")
    pack.set_defaults(func=cmd_package_tools)
    sign = algo_sub.add_parser("sign", help="sign a package folder in place (manifest.sig)")
    sign.add_argument("target", metavar="FOLDER")
    sign.add_argument("--key", metavar="PRIVATE_KEY", required=True)
    sign.set_defaults(func=cmd_package_tools)

    admin = sub.add_parser("admin", help="administrator (application manager) access")
    admin_sub = admin.add_subparsers(dest="action", required=True)
    set_pass = admin_sub.add_parser(
        "set-passphrase",
        help="set the passphrase that unlocks configuration in the desktop application",
    )
    common(set_pass)
    set_pass.add_argument(
        "--stdin", action="store_true", help="read the passphrase from standard input"
    )
    set_pass.set_defaults(func=cmd_admin)

    audit_cmd = sub.add_parser("audit", help="verify or export the audit log")
    audit_sub = audit_cmd.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain; exit 1 if broken")
    common(verify)
    verify.set_defaults(func=cmd_audit)
    export = audit_sub.add_parser("export", help="write every row (with its hashes)")
    common(export)
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", required=True, metavar="FILE")
    export.set_defaults(func=cmd_audit)

    gui = sub.add_parser("gui", help="open the desktop application (the default command)")
    common(gui)
    gui.add_argument("--language", choices=["en", "nl"], help="interface language")
    gui.add_argument("--log-level", default="INFO")
    gui.set_defaults(func=cmd_gui)

    ref = sub.add_parser("settings", help="print every setting with its default")
    ref.set_defaults(func=cmd_settings)
    conf = sub.add_parser(
        "conformance", help="print the DICOM conformance statement (and HL7 interface)"
    )
    conf.add_argument("--output", help="write it to this file instead")
    conf.set_defaults(func=cmd_conformance)
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
