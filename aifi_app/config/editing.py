"""Changing the settings file from the application: remote nodes added, edited, deleted.

The file is read as TOML, the ``[[remote_nodes]]`` array is replaced, and the whole
result is validated by the same loader as at start-up
(:func:`aifi_app.config.loading.settings_from_mapping`) before anything is written; the
new file replaces the old one atomically (a temporary file in the same folder, then
``Path.replace``). Every change goes into the audit log with who made it. Other tables and
keys in the file are kept (comments are not: TOML writers do not keep them).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

from aifi_app.config.loading import ConfigError, settings_from_mapping
from aifi_app.config.settings import RemoteNode, Settings
from aifi_app.store import audit
from aifi_app.store.database import Database


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from exc


def _node_table(node: RemoteNode) -> dict[str, Any]:
    """The node as a TOML table, without the fields left at their defaults."""
    defaults = RemoteNode(name=node.name)
    return {
        f.name: getattr(node, f.name)
        for f in dataclasses.fields(node)
        if f.name == "name" or getattr(node, f.name) != getattr(defaults, f.name)
    }


def write_remote_nodes(
    path: Path, nodes: Sequence[RemoteNode], *, db: Database, actor: str, change: str
) -> Settings:
    """Replace the remote nodes in the settings file; returns the validated new settings.

    Raises :class:`ConfigError` (and writes nothing) when the result would not load.
    """
    document = _read(path)
    document["remote_nodes"] = [_node_table(n) for n in nodes]
    settings = settings_from_mapping(document)  # the start-up check, before writing
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".settings-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(document, fh)
            fh.flush()
            os.fsync(fh.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    with db.transaction() as conn:
        audit.record(conn, "config", "remote_nodes_changed", detail=change, actor=actor)
    return settings


def current_nodes(path: Path) -> tuple[RemoteNode, ...]:
    """The remote nodes as the file has them now (not as command-line options changed them)."""
    return settings_from_mapping(_read(path)).remote_nodes


def add_node(path: Path, node: RemoteNode, *, db: Database, actor: str) -> Settings:
    nodes = current_nodes(path)
    if any(n.name == node.name for n in nodes):
        raise ConfigError(f"a remote node named {node.name!r} exists already")
    return write_remote_nodes(
        path,
        (*nodes, node),
        db=db,
        actor=actor,
        change=f"added {node.protocol} node {node.name} ({node.role})",
    )


def edit_node(path: Path, name: str, node: RemoteNode, *, db: Database, actor: str) -> Settings:
    nodes = current_nodes(path)
    if not any(n.name == name for n in nodes):
        raise ConfigError(f"there is no remote node named {name!r}")
    nodes = tuple(node if n.name == name else n for n in nodes)
    return write_remote_nodes(
        path, nodes, db=db, actor=actor, change=f"changed node {name}: {_describe(node)}"
    )


def delete_node(path: Path, name: str, *, db: Database, actor: str) -> Settings:
    nodes = current_nodes(path)
    if not any(n.name == name for n in nodes):
        raise ConfigError(f"there is no remote node named {name!r}")
    nodes = tuple(n for n in nodes if n.name != name)
    return write_remote_nodes(path, nodes, db=db, actor=actor, change=f"deleted node {name}")


def _describe(node: RemoteNode) -> str:
    where = node.url if node.protocol in ("dicomweb", "http") else f"{node.host}:{node.port}"
    ae = f"{node.ae_title}@" if node.protocol == "dicom" else ""
    return f"{node.name} {node.protocol} {ae}{where} ({node.role})"
