"""What changed in the settings since the service last started, for the audit log.

Settings hold no secrets (those are in the OS keyring) and no patient data, so the audit
entry names each changed key with its old and new value.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aifi_app.config.settings import Settings


def flatten(settings: Settings) -> dict[str, str]:
    """``{"node.port": "11112", "remote_nodes[PACS].host": "...", ...}`` (values as JSON)."""
    out: dict[str, str] = {}

    def put(prefix: str, value: Any) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                put(f"{prefix}.{f.name}" if prefix else f.name, getattr(value, f.name))
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                name = getattr(item, "name", str(i))
                put(f"{prefix}[{name}]", item)
        else:
            out[prefix] = json.dumps(list(value) if isinstance(value, tuple) else value)

    put("", settings)
    return out


def describe_changes(old: dict[str, str], new: dict[str, str], limit: int = 20) -> str:
    """``"node.port: 11112 -> 104; routes[x]: added"`` ('' when nothing changed)."""
    parts = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            parts.append(f"{key}: set to {new[key]}")
        elif key not in new:
            parts.append(f"{key}: removed (was {old[key]})")
        elif old[key] != new[key]:
            parts.append(f"{key}: {old[key]} -> {new[key]}")
    if len(parts) > limit:
        parts = [*parts[:limit], f"and {len(parts) - limit} more"]
    return "; ".join(parts)
