"""``aifi-app`` (no command) and ``aifi-app gui``: the desktop application.

Runs the same :class:`~aifi_app.service.Appliance` as ``aifi-app serve``, in this process;
the window is a view on it. Quitting the window stops the appliance.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMessageBox

from aifi_app.config.loading import ConfigError
from aifi_app.gui.main_window import MainWindow
from aifi_app.gui.translations import LANGUAGES, Translations, default_language

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Start the appliance and the window; returns when the user quits."""
    from aifi_app.cli import _settings, _setup_logging
    from aifi_app.secrets import KeyringUnavailableError
    from aifi_app.service import Appliance

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("AIFI Appliance")
    app.setOrganizationName("AIFI")
    translations = Translations()
    translations.use(args.language or default_language())
    try:
        settings = _settings(args)
    except ConfigError as exc:
        QMessageBox.critical(None, "AIFI Appliance", f"settings error: {exc}")
        return 2
    _setup_logging(args.log_level, settings.data_dir)
    faulthandler.enable()
    try:
        appliance = Appliance(settings)
    except KeyringUnavailableError as exc:
        log.error("%s", exc)
        QMessageBox.critical(None, "AIFI Appliance", str(exc))
        return 3
    appliance.start()
    window = MainWindow(
        appliance, translations, settings_path=Path(args.config) if args.config else None
    )
    # Ctrl+C and service stops quit cleanly (the feed's timer gives Python the chance to
    # run the handler while Qt's event loop waits)
    signal.signal(signal.SIGINT, lambda *_: window.quit())
    signal.signal(signal.SIGTERM, lambda *_: window.quit())
    window.show()
    try:
        return int(app.exec())
    finally:
        window.shut_down()
        appliance.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="settings file (TOML)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the file)")
    parser.add_argument(
        "--language", choices=sorted(LANGUAGES), help="interface language (default: the system's)"
    )
    parser.add_argument("--log-level", default="INFO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aifi-app gui", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
