from __future__ import annotations

import re
from pathlib import Path

import pytest

from aifi_app.config import ConfigError, load_settings, parse_node_address, with_overrides
from aifi_app.config.loading import settings_from_mapping
from aifi_app.config.settings import BUILTIN_ROUTES, settings_reference

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aifi.toml"
    path.write_text(text)
    return path


def test_built_in_defaults() -> None:
    s = load_settings(None)
    assert s.node.ae_title == "AIFI"
    assert s.node.port == 11112
    assert s.node.allowed_calling_ae_titles == ()
    assert s.routes == BUILTIN_ROUTES
    assert s.pacs_node is None


def test_file_is_read_and_validated(tmp_path: Path) -> None:
    s = load_settings(
        _write(
            tmp_path,
            """
[node]
ae_title = "AIFI_RAD"
port = 104
allowed_calling_ae_titles = ["CT01", "DX02"]
[[remote_nodes]]
name = "pacs"
ae_title = "SECTRA"
host = "10.1.2.3"
port = 104
[delivery]
pacs = "pacs"
[[routes]]
name = "ct-pe"
algorithm = "cina-ipe"
modalities = ["CT"]
max_slice_thickness_mm = 2.5
convolution_kernels = ["B30f"]
""",
        )
    )
    assert s.node.allowed_calling_ae_titles == ("CT01", "DX02")
    assert s.pacs_node is not None and s.pacs_node.ae_title == "SECTRA"
    assert s.routes[0].max_slice_thickness_mm == 2.5
    assert s.routes[0].convolution_kernels == ("B30f",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\nae_titel = 'X'", "unknown setting(s) ae_titel"),
        ("[node]\nport = 'x'", "node.port: expected an integer"),
        ("[node]\nport = 70000", "outside 1-65535"),
        ("[node]\nae_title = 'WAY_TOO_LONG_AE_TITLE'", "not a valid AE title"),
        ("[delivery]\npacs = 'nowhere'", "no remote node named"),
        ("[completion]\nlate_instance_policy = 'drop'", "must be one of"),
        ("[[routes]]\nname = 'x'", "missing required setting(s) algorithm"),
        ("[[routes]]\nname='x'\nalgorithm='a'\nstudy_description='('", "not a regular expression"),
        ("[nodes]\nx = 1", "unknown table(s) nodes"),
        ("[node\n", "not valid TOML"),
        ("[[remote_nodes]]\nname='r'\nrole='lis'\nhost='h'\nport=1", "role: 'lis' is not one of"),
        ("[[remote_nodes]]\nname='r'\nprotocol='ftp'", "protocol: 'ftp' is not one of"),
        ("[[remote_nodes]]\nname='r'\nprotocol='mllp'\nport=2575", "mllp node needs a host"),
        ("[[remote_nodes]]\nname='r'\nprotocol='dicomweb'\nurl='x.org'", "not an http"),
        ("[[remote_nodes]]\nname='r'\nhost='h'\nport=104", "ae_title: '' is not a valid"),
        ("[ris]\nnode = 'nowhere'", "ris.node: no remote node named"),
        (
            "[ris]\nnode='p'\n[[remote_nodes]]\nname='p'\nae_title='P'\nhost='h'\nport=104",
            "ris.node: the RIS node needs role ris and protocol mllp",
        ),
        ("[ris]\nmax_attempts = 0", "ris: max_attempts >= 1"),
        ("[node]\nreceive_processes = -1", "node.receive_processes: must be 0 to 16"),
        ("[node]\nreceive_processes = 17", "node.receive_processes: must be 0 to 16"),
        ("[ris]\nretry_initial_seconds = 10\nretry_max_seconds = 1", "ris: retry_initial"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(_write(tmp_path, text))


def test_nodes_of_every_protocol(tmp_path: Path) -> None:
    s = load_settings(
        _write(
            tmp_path,
            """
[[remote_nodes]]
name = "ris"
role = "ris"
protocol = "mllp"
host = "ris.example"
port = 2575
[[remote_nodes]]
name = "vendor-web"
role = "vendor"
protocol = "dicomweb"
url = "https://vendor.example/dicom-web"
""",
        )
    )
    ris, web = s.remote_nodes
    assert (ris.protocol, ris.host, ris.port, ris.ae_title) == ("mllp", "ris.example", 2575, "")
    assert (web.role, web.url) == ("vendor", "https://vendor.example/dicom-web")


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, "[node]\nport = 104\n"))
    s = with_overrides(
        s, port=11113, ae_title="OTHER", pacs="ORTHANC@127.0.0.1:4242", data_dir=str(tmp_path)
    )
    assert s.node.port == 11113
    assert s.node.ae_title == "OTHER"
    assert s.pacs_node is not None and (s.pacs_node.host, s.pacs_node.port) == ("127.0.0.1", 4242)
    assert s.data_dir == tmp_path


@pytest.mark.parametrize("text", ["ORTHANC127.0.0.1:4242", "A@host", "A@host:0", "@h:1"])
def test_bad_node_address(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_node_address(text)


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    assert settings_reference() in readme, "README's settings table is stale: run aifi-app settings"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"calling_ae_addresses": ["CT1@nowhere"]}, "node.calling_ae_addresses[0]"),
        ({"calling_ae_addresses": ["A\\\\B@10.0.0.1"]}, "not a valid AE title"),
        ({"tls_port": 2762}, "needs tls_certificate_file and tls_key_file"),
        ({"tls_port": 70000, "tls_certificate_file": "c", "tls_key_file": "k"}, "tls_port"),
        ({"plain_tcp": False}, "needs a TLS listener"),
    ],
)
def test_security_settings_are_checked(node: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from_mapping({"node": node})


def test_tls_only_for_dicom_nodes() -> None:
    raw = {
        "remote_nodes": [
            {"name": "V", "protocol": "http", "url": "https://vendor.example", "tls": True}
        ]
    }
    with pytest.raises(ConfigError, match=r"remote_nodes\[0\]\.tls"):
        settings_from_mapping(raw)
