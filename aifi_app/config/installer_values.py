"""Values given to the Windows installer (``msiexec /qn DICOM_PORT=104 AE_TITLE=AIFI_RAD``).

The MSI writes them under ``HKLM\\SOFTWARE\\AIFI Appliance`` (values ``DicomPort`` and
``AeTitle``; empty when the property was not given). They are this machine's defaults:
the settings file overrides them and the command line overrides both, so an application
manager can deploy the port and AE title silently and still change them in the file.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from aifi_app.config.loading import ConfigError

REGISTRY_KEY = r"SOFTWARE\AIFI Appliance"
# registry value name -> (settings table, key, type)
VALUES: dict[str, tuple[str, str, type]] = {
    "DicomPort": ("node", "port", int),
    "AeTitle": ("node", "ae_title", str),
}


def defaults_from_values(values: Mapping[str, object]) -> dict[str, dict[str, Any]]:
    """Settings tables (``{"node": {"port": 104}}``) from the installer's registry values.

    An empty value means the property was not given and is skipped; a value that is not
    of its type stops start-up with a :class:`ConfigError` naming the registry value.
    """
    tables: dict[str, dict[str, Any]] = {}
    for name, (table, key, kind) in VALUES.items():
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        where = f"HKLM\\{REGISTRY_KEY}\\{name} (installer property)"
        value: Any
        if kind is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                value = raw
            elif isinstance(raw, str) and raw.strip().isdigit():
                value = int(raw.strip())
            else:
                raise ConfigError(f"{where}: {raw!r} is not a port number")
        else:
            if not isinstance(raw, str):
                raise ConfigError(f"{where}: expected text, got {type(raw).__name__}")
            value = raw.strip()
        tables.setdefault(table, {})[key] = value
    return tables


def read_registry_values() -> dict[str, object]:
    """The installer's values from the Windows registry; nothing on other systems."""
    if sys.platform != "win32":
        return {}
    import winreg

    access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, REGISTRY_KEY, 0, access)
    except OSError:
        return {}  # not installed by the MSI (a development checkout)
    found: dict[str, object] = {}
    with key:
        for name in VALUES:
            try:
                value, _ = winreg.QueryValueEx(key, name)
            except OSError:
                continue
            found[name] = value
    return found


def installer_defaults() -> dict[str, dict[str, Any]]:
    """This machine's installer defaults as settings tables (empty off Windows)."""
    return defaults_from_values(read_registry_values())
