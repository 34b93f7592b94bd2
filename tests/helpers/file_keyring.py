"""An in-process file keyring for tests (keyrings.alt), restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
from keyrings.alt.file import PlaintextKeyring


@contextmanager
def file_keyring(folder: Path) -> Iterator[PlaintextKeyring]:
    before = keyring.get_keyring()
    backend = PlaintextKeyring()
    backend.file_path = str(folder / "keyring_pass.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)
