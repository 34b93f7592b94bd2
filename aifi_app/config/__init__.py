"""Settings: declarations (:mod:`.settings`) and the TOML loader (:mod:`.loading`)."""

from aifi_app.config.loading import ConfigError, load_settings, parse_node_address, with_overrides
from aifi_app.config.settings import RemoteNode, Route, Settings, settings_reference

__all__ = [
    "ConfigError",
    "RemoteNode",
    "Route",
    "Settings",
    "load_settings",
    "parse_node_address",
    "settings_reference",
    "with_overrides",
]
