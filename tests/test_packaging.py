"""The wheel (and so the MSI) carries every package of the source tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_setuptools() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    in_tree = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "aifi_app").rglob("__init__.py")
    }
    assert in_tree - listed == set(), "add these to [tool.setuptools] packages"
