"""The interface language: Dutch or English, Dutch by default on a Dutch system."""

from __future__ import annotations

import logging
from importlib import resources

from PySide6.QtCore import QCoreApplication, QLocale, QTranslator

log = logging.getLogger(__name__)

LANGUAGES = {"nl": "Nederlands", "en": "English"}


def default_language(locale: QLocale | None = None) -> str:
    """Dutch on a Dutch system (nl_NL, nl_BE), English elsewhere."""
    language = (locale or QLocale.system()).language()
    return "nl" if language == QLocale.Language.Dutch else "en"


class Translations:
    """Holds the installed translators; :meth:`use` switches the language at run time."""

    def __init__(self) -> None:
        self.language = "en"
        self._installed: list[QTranslator] = []

    def use(self, language: str) -> bool:
        """Install ``language`` ("nl" or "en"); widgets get a LanguageChange event."""
        app = QCoreApplication.instance()
        if app is None:
            raise RuntimeError("no QApplication")
        for translator in self._installed:
            app.removeTranslator(translator)
        self._installed.clear()
        self.language = language
        if language == "en":
            return True
        folder = resources.files("aifi_app.resources") / "translations"
        translator = QTranslator(app)
        with resources.as_file(folder / f"aifi_{language}.qm") as qm:
            loaded = qm.is_file() and translator.load(str(qm))
        if not loaded:
            log.warning("no translation for %s; the interface stays in English", language)
            self.language = "en"
            return False
        app.installTranslator(translator)
        self._installed.append(translator)
        return True
