"""pydicom imported without the libraries of its test-file downloader.

``import pydicom`` imports ``pydicom.data`` (through its pixel-data handlers), whose
downloader of pydicom's own test files imports ``requests`` and ``tqdm`` where they are
installed. They are installed here (``dicomweb-client`` needs ``requests``), and with what
they import (urllib3, charset_normalizer, idna, certifi) they took about 9 MB of every
process that imports pydicom: the service and the fork server whose children share its
pages. The appliance never downloads pydicom's test files (a hospital workstation has no
internet for it, and nothing calls it), so :func:`import_pydicom` imports pydicom with both
unavailable to it (pydicom then falls back to ``urllib`` for that downloader, as it does
where they are not installed) and leaves them importable for the code that needs them
(a DICOMweb or REST vendor's job imports ``requests`` when it runs).

Called once, first, by :mod:`aifi_app` itself, so that every process of the appliance
imports pydicom this way; where pydicom was imported already (a test run), it does
nothing.
"""

from __future__ import annotations

import importlib
import sys

WITHOUT = ("requests", "tqdm")
"""The optional imports of ``pydicom.data.download`` held back."""


def import_pydicom() -> None:
    """Import pydicom without :data:`WITHOUT` (a no-op once pydicom is imported)."""
    if "pydicom" in sys.modules:
        return
    held = [name for name in WITHOUT if name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        importlib.import_module("pydicom")
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
