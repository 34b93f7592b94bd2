"""The Windows installer's DICOM_PORT / AE_TITLE reach the settings, below the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aifi_app.config.installer_values import (
    defaults_from_values,
    installer_defaults,
    read_registry_values,
)
from aifi_app.config.loading import ConfigError, load_settings, with_overrides


def test_registry_values_become_node_settings() -> None:
    tables = defaults_from_values({"DicomPort": "104", "AeTitle": " AIFI_RAD "})
    assert tables == {"node": {"port": 104, "ae_title": "AIFI_RAD"}}
    settings = load_settings(None, tables)
    assert (settings.node.port, settings.node.ae_title) == (104, "AIFI_RAD")


def test_properties_not_given_leave_the_defaults() -> None:
    # the MSI writes an empty string for a property that was not given
    assert defaults_from_values({"DicomPort": "", "AeTitle": "  "}) == {}
    assert defaults_from_values({}) == {}
    assert load_settings(None, {}).node.port == load_settings(None).node.port


def test_a_dword_port_is_taken_too() -> None:
    assert defaults_from_values({"DicomPort": 11113}) == {"node": {"port": 11113}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"DicomPort": "10x"}, "DicomPort"),
        ({"DicomPort": True}, "DicomPort"),
        ({"AeTitle": 5}, "AeTitle"),
    ],
)
def test_a_wrong_value_names_the_registry_value(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        defaults_from_values(values)


def test_invalid_values_are_refused_by_the_settings_checks() -> None:
    with pytest.raises(ConfigError, match=r"node\.port"):
        load_settings(None, defaults_from_values({"DicomPort": "70000"}))
    with pytest.raises(ConfigError, match=r"node\.ae_title"):
        load_settings(None, defaults_from_values({"AeTitle": "BACK\\SLASH"}))


def test_the_settings_file_wins_over_the_installer_and_the_command_line_over_both(
    tmp_path: Path,
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[node]\nae_title = "FROM_FILE"\n', encoding="utf-8")
    machine = defaults_from_values({"DicomPort": "104", "AeTitle": "FROM_MSI"})
    settings = load_settings(config, machine)
    assert (settings.node.port, settings.node.ae_title) == (104, "FROM_FILE")
    settings = with_overrides(settings, port=11114, ae_title="FROM_CLI")
    assert (settings.node.port, settings.node.ae_title) == (11114, "FROM_CLI")


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows there is no registry")
def test_off_windows_there_are_no_installer_values() -> None:
    assert read_registry_values() == {}
    assert installer_defaults() == {}
