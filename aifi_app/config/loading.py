"""Read the TOML settings file into :class:`~aifi_app.config.settings.Settings`.

Every key is checked against its declaration: an unknown key, a wrong type or an
impossible value stops start-up with a :class:`ConfigError` naming the key, so that a typo
in a hospital's settings file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from aifi_app.algorithms.signing import SignatureError, parse_public_key
from aifi_app.config.settings import ARRAYS, SECTIONS, RemoteNode, Settings
from aifi_app.dicom_node.access import AddressRuleError, parse_address_rules

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5: default repertoire, no '\'


class ConfigError(ValueError):
    """The settings file (or a command-line override) is not valid; the message says where."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {annotation!r}")  # pragma: no cover


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        raise ConfigError(f"{where}: missing required setting(s) {', '.join(missing)}") from exc


def settings_from_mapping(raw: dict[str, Any]) -> Settings:
    """Build and validate settings from parsed TOML (or any mapping of the same shape)."""
    unknown = sorted(set(raw) - set(SECTIONS) - set(ARRAYS))
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        if name in raw:
            kwargs[name] = _build(cls, raw[name], name)
    for name, cls in ARRAYS.items():
        if name in raw:
            if not isinstance(raw[name], list):
                raise ConfigError(f"{name}: expected an array of tables ([[{name}]])")
            kwargs[name] = tuple(
                _build(cls, item, f"{name}[{i}]") for i, item in enumerate(raw[name])
            )
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def load_settings(
    path: Path | None, machine_defaults: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Read and validate a settings file; ``None`` gives the built-in defaults.

    ``machine_defaults`` (tables of settings, e.g. what the Windows installer was given:
    :mod:`aifi_app.config.installer_values`) stand below the file: a key the file sets wins.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from exc
    for table, values in (machine_defaults or {}).items():
        section = raw.setdefault(table, {})
        if isinstance(section, dict):
            raw[table] = {**values, **section}
    return settings_from_mapping(raw)


def parse_node_address(text: str, name: str = "PACS", role: str = "pacs") -> RemoteNode:
    """Parse ``AET@HOST:PORT`` (the ``--pacs`` option) into a remote node."""
    match = re.fullmatch(r"([^@]{1,16})@(\[[^\]]+\]|[^:]+):(\d{1,5})", text)
    if not match:
        raise ConfigError(f"{text!r} is not of the form AET@HOST:PORT")
    host = match.group(2).strip("[]")
    node = RemoteNode(
        name=name, ae_title=match.group(1), host=host, port=int(match.group(3)), role=role
    )
    _check_node(node, "--pacs")
    return node


def _check_ae(value: str, where: str) -> None:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(f"{where}: {value!r} is not a valid AE title (1-16 characters, no '\\')")


def _check_port(value: int, where: str) -> None:
    if not 0 < value < 65536:
        raise ConfigError(f"{where}: port {value} is outside 1-65535")


NODE_ROLES = ("pacs", "vendor", "ris")
NODE_PROTOCOLS = ("dicom", "dicomweb", "http", "mllp")
MAX_RECEIVE_PROCESSES = 16
"""The most receiver processes ``[node] receive_processes`` may ask for."""


def _check_node(node: RemoteNode, where: str) -> None:
    if node.role not in NODE_ROLES:
        raise ConfigError(f"{where}.role: {node.role!r} is not one of {', '.join(NODE_ROLES)}")
    if node.protocol not in NODE_PROTOCOLS:
        raise ConfigError(
            f"{where}.protocol: {node.protocol!r} is not one of {', '.join(NODE_PROTOCOLS)}"
        )
    if node.protocol == "dicom":
        _check_ae(node.ae_title, f"{where}.ae_title")
    if node.protocol in ("dicom", "mllp"):
        if not node.host.strip():
            raise ConfigError(f"{where}.host: a {node.protocol} node needs a host")
        _check_port(node.port, f"{where}.port")
    else:
        scheme = node.url.split("://", 1)[0].lower() if "://" in node.url else ""
        if scheme not in ("http", "https"):
            raise ConfigError(f"{where}.url: {node.url!r} is not an http:// or https:// address")
    if node.tls and node.protocol != "dicom":
        raise ConfigError(f"{where}.tls: only for protocol dicom (use an https:// url)")


def validate(settings: Settings) -> None:
    """Check values that a type alone cannot: AE titles, ports, references, patterns."""
    _check_ae(settings.node.ae_title, "node.ae_title")
    if settings.node.port != 0:  # 0: the system picks a free port (demo, tests)
        _check_port(settings.node.port, "node.port")
    for i, aet in enumerate(settings.node.allowed_calling_ae_titles):
        _check_ae(aet, f"node.allowed_calling_ae_titles[{i}]")
    for i, entry in enumerate(settings.node.calling_ae_addresses):
        try:
            parse_address_rules([entry])
        except AddressRuleError as exc:
            raise ConfigError(f"node.calling_ae_addresses[{i}]: {exc}") from exc
        _check_ae(entry.rpartition("@")[0].strip(), f"node.calling_ae_addresses[{i}]")
    if settings.node.tls_port != 0:
        _check_port(settings.node.tls_port, "node.tls_port")
        if not settings.node.tls_certificate_file or not settings.node.tls_key_file:
            raise ConfigError(
                "node.tls_port: a TLS listener needs tls_certificate_file and tls_key_file"
            )
    if not settings.node.plain_tcp and settings.node.tls_port == 0:
        raise ConfigError("node.plain_tcp: false needs a TLS listener (node.tls_port)")
    if settings.node.max_pdu_size < 4096:
        raise ConfigError("node.max_pdu_size: must be at least 4096 bytes")
    if not 0 <= settings.node.receive_processes <= MAX_RECEIVE_PROCESSES:
        raise ConfigError(
            f"node.receive_processes: must be 0 to {MAX_RECEIVE_PROCESSES} (0: no child processes)"
        )
    names = [n.name for n in settings.remote_nodes]
    if len(set(names)) != len(names):
        raise ConfigError("remote_nodes: two nodes have the same name")
    for i, node in enumerate(settings.remote_nodes):
        _check_node(node, f"remote_nodes[{i}]")
    if settings.delivery.pacs and settings.pacs_node is None:
        raise ConfigError(f"delivery.pacs: no remote node named {settings.delivery.pacs!r}")
    if settings.ris.node:
        ris = settings.ris_node
        if ris is None:
            raise ConfigError(f"ris.node: no remote node named {settings.ris.node!r}")
        if ris.role != "ris" or ris.protocol != "mllp":
            raise ConfigError("ris.node: the RIS node needs role ris and protocol mllp")
    if settings.ris.max_attempts < 1 or settings.ris.ack_timeout_seconds <= 0:
        raise ConfigError("ris: max_attempts >= 1 and ack_timeout_seconds > 0 needed")
    if settings.ris.retry_initial_seconds <= 0 or (
        settings.ris.retry_max_seconds < settings.ris.retry_initial_seconds
    ):
        raise ConfigError("ris: retry_initial_seconds > 0 and <= retry_max_seconds needed")
    if settings.delivery.calling_ae_title:
        _check_ae(settings.delivery.calling_ae_title, "delivery.calling_ae_title")
    policies = ("follow_up", "reprocess", "record")
    if settings.completion.late_instance_policy not in policies:
        raise ConfigError(f"completion.late_instance_policy: must be one of {', '.join(policies)}")
    if settings.completion.idle_seconds < 0:
        raise ConfigError("completion.idle_seconds: must not be negative")
    if settings.completion.small_study_lane_images < 0:
        raise ConfigError("completion.small_study_lane_images: must not be negative")
    if settings.delivery.retry_initial_seconds <= 0 or (
        settings.delivery.retry_max_seconds < settings.delivery.retry_initial_seconds
    ):
        raise ConfigError("delivery: retry_initial_seconds > 0 and <= retry_max_seconds needed")
    if settings.delivery.node_check_seconds < 0:
        raise ConfigError("delivery: node_check_seconds must be 0 (off) or more")
    if settings.storage.min_free_mb < 0:
        raise ConfigError("storage.min_free_mb: must not be negative")
    if not 0 <= settings.storage.min_free_percent < 100:
        raise ConfigError("storage.min_free_percent: must be at least 0 and below 100")
    for i, key in enumerate(settings.algorithms.trusted_vendor_keys):
        try:
            parse_public_key(key)
        except SignatureError as exc:
            raise ConfigError(f"algorithms.trusted_vendor_keys[{i}]: {exc}") from exc
    if settings.algorithms.onnx_threads < 0 or settings.algorithms.onnx_inter_op_threads < 0:
        raise ConfigError("algorithms: thread counts must not be negative")
    for i, route in enumerate(settings.routes):
        for attr in ("study_description", "series_description"):
            try:
                re.compile(getattr(route, attr))
            except re.error as exc:
                raise ConfigError(f"routes[{i}].{attr}: not a regular expression: {exc}") from exc


def with_overrides(
    settings: Settings,
    *,
    data_dir: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    pacs: str | None = None,
    allow: tuple[str, ...] = (),
) -> Settings:
    """Apply the command-line overrides of ``aifi-app serve`` on top of the file's settings."""
    node = settings.node
    if port is not None:
        node = dataclasses.replace(node, port=port)
    if ae_title is not None:
        node = dataclasses.replace(node, ae_title=ae_title)
    if allow:
        node = dataclasses.replace(
            node, allowed_calling_ae_titles=(*node.allowed_calling_ae_titles, *allow)
        )
    storage = settings.storage
    if data_dir is not None:
        storage = dataclasses.replace(storage, data_dir=data_dir)
    remote_nodes = settings.remote_nodes
    delivery = settings.delivery
    if pacs is not None:
        pacs_node = parse_node_address(pacs)
        remote_nodes = (*(n for n in remote_nodes if n.name != pacs_node.name), pacs_node)
        delivery = dataclasses.replace(delivery, pacs=pacs_node.name)
    result = dataclasses.replace(
        settings, node=node, storage=storage, remote_nodes=remote_nodes, delivery=delivery
    )
    validate(result)
    return result
