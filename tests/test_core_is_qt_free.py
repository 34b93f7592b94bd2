"""The core runs without Qt: import every core module with Qt made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6'):
            raise ImportError('Qt is blocked in the core: ' + name)
sys.meta_path.insert(0, Block())
import aifi_app
for mod in pkgutil.walk_packages(aifi_app.__path__, 'aifi_app.'):
    if mod.name.startswith('aifi_app.gui') or mod.name == 'aifi_app.__main__':
        continue
    importlib.import_module(mod.name)
loaded = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6')]
assert not loaded, loaded
print('ok')
"""


def test_every_core_module_imports_without_qt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
