"""Files readable only by the service's account.

The data directory holds patient data (spool, database, results) and logs. On POSIX the
process runs with umask 077, so everything it creates is 0600 (files) or 0700
(directories), and at start-up anything under the data directory that others could read
(an older installation, a file copied in with its mode kept) is tightened.

On Windows modes mean little: the installer (MSI, issue 8) must give the data directory
(``%PROGRAMDATA%\\AIFI Appliance``) an ACL with inheritance that grants full control to
the service account, SYSTEM and Administrators only, and removes the inherited
``Users``/``Authenticated Users`` entries (e.g. ``icacls "<dir>" /inheritance:r /grant:r
"<service account>:(OI)(CI)F" SYSTEM:(OI)(CI)F Administrators:(OI)(CI)F``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> None:
    """Make every file this process creates private to its account (POSIX; process-wide)."""
    if os.name == "posix":
        os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as a directory only the owner can use."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if os.name == "posix":
        with contextlib.suppress(OSError):
            path.chmod(DIR_MODE)
    return path


def is_open(path: Path) -> bool:
    """Whether ``path`` exists with group or other permissions (POSIX): a data directory
    from before the appliance kept its files private, whose contents need
    :func:`tighten_tree` once."""
    if os.name != "posix":
        return False
    try:
        return bool(path.lstat().st_mode & 0o077)
    except OSError:
        return False


def tighten_tree(root: Path) -> int:
    """Remove group and other permissions from everything under ``root`` (POSIX); returns
    how many entries were changed. Symbolic links are left alone."""
    if os.name != "posix" or not root.exists():
        return 0
    changed = 0
    for here, dirs, files in os.walk(root):
        folder = Path(here)
        for path in [folder, *(folder / n for n in (*dirs, *files))]:
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            with contextlib.suppress(OSError):
                path.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
                changed += 1
    if changed:
        log.warning("restricted the permissions of %d entries under the data directory", changed)
    return changed
