"""A file keyring in a test's own folder (keyrings.alt), restored afterwards: for in-process
tests that store secrets (a CI machine has no Secret Service); never for production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
from keyrings.alt.file import PlaintextKeyring


@contextmanager
def file_keyring(folder: Path) -> Iterator[PlaintextKeyring]:
    """Use a plaintext keyring file under ``folder`` while the block runs."""
    before = keyring.get_keyring()
    backend = PlaintextKeyring()
    folder.mkdir(parents=True, exist_ok=True)
    backend.file_path = str(folder / "keyring_pass.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)
