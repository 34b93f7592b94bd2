"""Desktop client tests: offscreen Qt, a real appliance in this process."""

from __future__ import annotations

import os

# before any QApplication exists: no display needed, in CI or here
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.service import Appliance
from tests.helpers.ports import free_port

KEY = b"k" * 32
MODALITY = "MODALITY"


def gui_settings(tmp_path: Path, pacs_port: int, **delivery: float) -> Settings:
    return Settings(
        node=NodeSettings(port=0, allowed_calling_ae_titles=(MODALITY,)),
        remote_nodes=(RemoteNode("pacs", "DEMO_PACS", "127.0.0.1", pacs_port),),
        completion=CompletionSettings(idle_seconds=0.0),
        delivery=DeliverySettings(
            pacs="pacs", retry_initial_seconds=0.05, retry_max_seconds=0.1, **delivery
        ),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )


@pytest.fixture
def make_appliance(tmp_path: Path) -> Iterator[object]:
    started: list[Appliance] = []

    def make(settings: Settings | None = None) -> Appliance:
        app = Appliance(settings or gui_settings(tmp_path, free_port()), secret_for=lambda _: KEY)
        app.start()
        started.append(app)
        return app

    yield make
    for app in started:
        app.stop()


@pytest.fixture
def make_window(qtbot, make_appliance):  # type: ignore[no-untyped-def]
    from aifi_app.gui.main_window import MainWindow
    from aifi_app.gui.translations import Translations

    windows = []

    def make(
        appliance: Appliance | None = None, language: str = "en", **options: object
    ) -> MainWindow:
        translations = Translations()
        translations.use(language)
        window = MainWindow(appliance or make_appliance(), translations, **options)  # type: ignore[arg-type]
        qtbot.addWidget(window)
        windows.append((window, translations))
        return window

    yield make
    for window, translations in windows:
        window.shut_down()
        translations.use("en")


@pytest.fixture(autouse=True)
def _application(qapp):  # type: ignore[no-untyped-def]
    """Every GUI test has the QApplication (icons are pixmaps, which need one)."""
    return qapp
