"""pydicom imported without the libraries of its test-file downloader.

``import pydicom`` imports ``pydicom.data`` (through its pixel-data handlers), whose
downloader of pydicom's own test files (``pydicom.data.download``) imports ``requests``
and ``tqdm`` where they are installed. They are installed here (``dicomweb-client`` needs
``requests``), and with what they import (urllib3, charset_normalizer, idna, certifi) they
took about 9 MB of every process that imports pydicom: the service and the fork server
whose children share its pages. The appliance never downloads pydicom's test files (a
hospital workstation has no internet for it, and nothing calls it).

:func:`hold_back` (called by :mod:`aifi_app` itself, so in every process of the appliance)
puts a finder first on ``sys.meta_path`` that refuses those two imports while, and only
while, that downloader's module runs, in the thread that runs it: pydicom then falls back
to ``urllib`` for it, as it does where they are not installed. Nothing is imported until
something imports pydicom (a process that lowers its priority first stays light), and
``requests`` stays importable for the code that needs it (a DICOMweb or REST vendor's
job imports it when it runs). Where pydicom's downloader was imported already (a test
run), it changes nothing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

DOWNLOADER = "pydicom.data.download"
WITHOUT = frozenset({"requests", "tqdm"})
"""The downloader's optional imports held back."""


class _Downloader(Loader):
    """The downloader module's own loader, run with its optional imports held back."""

    def __init__(self, loader: Loader, finder: _HoldBack) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._finder.running = threading.get_ident()
        try:
            self._loader.exec_module(module)
        finally:
            self._finder.running = None

    def __getattr__(self, name: str) -> Any:  # get_code, get_source... of the real loader
        return getattr(self._loader, name)


class _HoldBack(MetaPathFinder):
    def __init__(self) -> None:
        self.running: int | None = None
        """The thread running the downloader's module, while it runs."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in WITHOUT and self.running == threading.get_ident():
            raise ModuleNotFoundError(f"{fullname} is held back from pydicom", name=fullname)
        if fullname != DOWNLOADER:
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Downloader(spec.loader, self)
        return spec


def hold_back() -> None:
    """Hold ``requests`` and ``tqdm`` back from pydicom's downloader (once a process)."""
    if DOWNLOADER in sys.modules or any(isinstance(f, _HoldBack) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _HoldBack())
