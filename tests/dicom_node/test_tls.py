"""DICOM TLS on every link, in-process, against DCMTK over loopback.

A throw-away CA and certificates are made at test time (``tests/helpers/pki.py``). DCMTK's
``storescu``/``storescp`` (``--enable-tls``) are the independent peers.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app import secrets
from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo, send_files
from aifi_app.net.tls import (
    KEY_PASSPHRASE_SECRET,
    TlsConfigError,
    TlsIdentity,
    client_context,
    server_context,
)
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from aifi_app.store.database import Database
from aifi_app.store.receiving import IdleTimes
from tests.helpers.file_keyring import file_keyring
from tests.helpers.pki import CertificateAuthority, Issued
from tests.helpers.ports import free_port, wait_for_port
from tests.helpers.tools import DCMTK_BIN, STORESCU, dcmtk_env


@dataclass
class Pki:
    ca: CertificateAuthority
    node: Issued
    modality: Issued
    pacs: Issued
    rogue_ca: CertificateAuthority
    rogue: Issued


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Pki]:
    folder = tmp_path / "pki"
    ca = CertificateAuthority.create(folder)
    rogue_ca = CertificateAuthority.create(folder, "Rogue CA")
    with file_keyring(tmp_path):
        yield Pki(
            ca,
            ca.issue(folder, "aifi-node"),
            ca.issue(folder, "modality"),
            ca.issue(folder, "pacs"),
            rogue_ca,
            rogue_ca.issue(folder, "intruder"),
        )


def _identity(issued: Issued) -> TlsIdentity:
    return TlsIdentity(issued.certificate, issued.key)


def _node(tmp_path: Path, context: ssl.SSLContext, *, plain_tcp: bool = False) -> StorageNode:
    db = Database(tmp_path / "data" / "q.db")
    node = StorageNode(
        NodeConfig(
            "AIFI",
            "127.0.0.1",
            free_port(),
            ("MODALITY", "STORESCU"),
            131072,
            10,
            tls_context=context,
            tls_port=0,
            plain_tcp=plain_tcp,
        ),
        db,
        tmp_path / "data",
        idle_seconds_for=IdleTimes(30.0),
        late_policy="follow_up",
    )
    node.start()
    return node


@pytest.fixture
def tls_node(tmp_path: Path, pki: Pki) -> Iterator[StorageNode]:
    context = server_context(
        _identity(pki.node), ca_file=pki.ca.certificate_file, require_client_certificate=True
    )
    node = _node(tmp_path, context)
    yield node
    node.stop()
    node.db.close()


def _audit(node: StorageNode, event: str, needle: str) -> str:
    """The detail of the audit event that names ``needle`` (written on the node's thread)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for row in node.db.query("SELECT detail FROM audit_events WHERE event = ?", [event]):
            if needle in row["detail"]:
                return str(row["detail"])
        time.sleep(0.05)
    rows = node.db.query("SELECT event, detail FROM audit_events")
    raise AssertionError(f"no {event} audit event naming {needle!r}: {rows}")


def _storescu_tls(
    files: list[Path], port: int, issued: Issued | None, ca_file: Path, calling: str = "STORESCU"
) -> subprocess.CompletedProcess[str]:
    args = [str(STORESCU), "-aet", calling, "-aec", "AIFI", "-nh"]
    if issued is not None:
        args += ["+tls", str(issued.key), str(issued.certificate), "+cf", str(ca_file)]
    args += ["127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(
        args, env=dcmtk_env(), capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.dcmtk
def test_dcmtk_storescu_over_tls_stores_a_study(
    tls_node: StorageNode, pki: Pki, tmp_path: Path
) -> None:
    # a 2 MB image crosses many TLS records and PDUs: the low-latency reader's wait must see
    # data already decrypted in the TLS buffer (SSLSocket.pending), or the transfer crawls
    files = []
    for i in range(3):
        ds = chest_radiograph(demo_patient(40 + i), phantom_chest(1024))
        files.append(write(ds, tmp_path / "send"))
    proc = _storescu_tls(files, tls_node.tls_port, pki.modality, pki.ca.certificate_file)
    assert proc.returncode == 0, proc.stderr
    rows = tls_node.db.query("SELECT sop_instance_uid, path FROM instances ORDER BY id")
    assert len(rows) == 3
    for path in files:
        kept = [r for r in rows if r["sop_instance_uid"] == dcmread(path).SOPInstanceUID]
        assert kept, path
        assert dcmread(tls_node.data_dir / kept[0]["path"]) == dcmread(path)


@pytest.mark.dcmtk
def test_client_certificate_from_an_unknown_ca_is_refused_and_audited(
    tls_node: StorageNode, pki: Pki, tmp_path: Path
) -> None:
    path = write(chest_radiograph(demo_patient(50), phantom_chest()), tmp_path / "send")
    proc = _storescu_tls([path], tls_node.tls_port, pki.rogue, pki.ca.certificate_file)
    assert proc.returncode != 0
    detail = _audit(tls_node, "tls_refused", "127.0.0.1")
    assert "certificate verification failed" in detail
    assert tls_node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0


@pytest.mark.dcmtk
def test_plain_tcp_client_on_the_tls_port_is_refused_and_audited(
    tls_node: StorageNode, tmp_path: Path, pki: Pki
) -> None:
    path = write(chest_radiograph(demo_patient(51), phantom_chest()), tmp_path / "send")
    proc = _storescu_tls([path], tls_node.tls_port, None, pki.ca.certificate_file)
    assert proc.returncode != 0
    detail = _audit(tls_node, "tls_refused", "127.0.0.1")
    assert "does not speak TLS" in detail
    assert tls_node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0


def test_client_without_certificate_is_refused_when_one_is_required(
    tls_node: StorageNode, pki: Pki
) -> None:
    context = client_context(ca_file=pki.ca.certificate_file, identity=None)
    peer = Peer("AIFI", "127.0.0.1", tls_node.tls_port, tls=context)
    with pytest.raises(AssociationFailed):
        echo(peer, calling_ae_title="MODALITY")
    detail = _audit(tls_node, "tls_refused", "127.0.0.1")
    assert "no certificate" in detail


def test_our_scu_over_tls_to_our_node_and_unknown_title_is_audited_with_its_certificate(
    tls_node: StorageNode, pki: Pki
) -> None:
    context = client_context(ca_file=pki.ca.certificate_file, identity=_identity(pki.modality))
    peer = Peer("AIFI", "127.0.0.1", tls_node.tls_port, tls=context)
    assert echo(peer, calling_ae_title="MODALITY") == 0
    with pytest.raises(AssociationFailed):
        echo(peer, calling_ae_title="INTRUDER")
    detail = _audit(tls_node, "association_rejected", "INTRUDER")
    assert "over TLS, certificate 'modality'" in detail


def test_tls_only_node_has_no_plain_listener(tmp_path: Path, pki: Pki) -> None:
    context = server_context(_identity(pki.node), ca_file=None, require_client_certificate=False)
    node = _node(tmp_path, context, plain_tcp=False)
    try:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", node.config.port)) != 0
        client = client_context(ca_file=pki.ca.certificate_file, identity=None)
        assert (
            echo(Peer("AIFI", "127.0.0.1", node.tls_port, tls=client), calling_ae_title="MODALITY")
            == 0
        )
    finally:
        node.stop()
        node.db.close()


@pytest.fixture
def storescp_tls(tmp_path: Path, pki: Pki) -> Iterator[tuple[int, Path]]:
    port = free_port()
    out = tmp_path / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        [
            str(DCMTK_BIN / "storescp"),
            "-aet", "PACS",
            "+tls", str(pki.pacs.key), str(pki.pacs.certificate),
            "+cf", str(pki.ca.certificate_file),
            "-od", str(out),
            str(port),
        ],
        env=dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, 20)
        yield port, out
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.mark.dcmtk
def test_our_scu_sends_to_dcmtk_storescp_over_tls(
    storescp_tls: tuple[int, Path], pki: Pki, tmp_path: Path
) -> None:
    port, out = storescp_tls
    ds = chest_radiograph(demo_patient(60), phantom_chest(1024))
    path = write(ds, tmp_path / "send")
    context = client_context(ca_file=pki.ca.certificate_file, identity=_identity(pki.node))
    peer = Peer("PACS", "127.0.0.1", port, tls=context)
    assert echo(peer, calling_ae_title="AIFI") == 0
    (outcome,) = send_files(peer, [path], calling_ae_title="AIFI")
    assert outcome.ok
    (received,) = list(out.iterdir())
    assert dcmread(received).SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.dcmtk
def test_our_scu_refuses_a_peer_whose_certificate_it_cannot_verify(
    storescp_tls: tuple[int, Path], pki: Pki, tmp_path: Path
) -> None:
    port, _ = storescp_tls
    context = client_context(ca_file=pki.rogue_ca.certificate_file, identity=_identity(pki.node))
    with pytest.raises(AssociationFailed, match="certificate verification failed"):
        echo(Peer("PACS", "127.0.0.1", port, tls=context), calling_ae_title="AIFI")


@pytest.mark.dcmtk
def test_our_scu_refuses_a_certificate_for_another_host(tmp_path: Path, pki: Pki) -> None:
    other = pki.ca.issue(tmp_path / "pki", "elsewhere", hosts=("pacs.example",))
    port = free_port()
    proc = subprocess.Popen(
        [str(DCMTK_BIN / "storescp"), "-aet", "PACS", "+tls", str(other.key),
         str(other.certificate), "+cf", str(pki.ca.certificate_file), str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, 20)
        context = client_context(ca_file=pki.ca.certificate_file, identity=_identity(pki.node))
        with pytest.raises(AssociationFailed, match="certificate verification failed"):
            echo(Peer("PACS", "127.0.0.1", port, tls=context), calling_ae_title="AIFI")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_contexts_are_tls_1_2_or_newer(pki: Pki) -> None:
    server = server_context(_identity(pki.node), ca_file=None, require_client_certificate=False)
    client = client_context(ca_file=pki.ca.certificate_file, identity=None)
    for context in (server, client):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_key_passphrase_comes_from_the_keyring(pki: Pki, tmp_path: Path) -> None:
    locked = pki.ca.issue(tmp_path / "pki", "locked", passphrase=b"s3cret-pass")
    identity = _identity(locked)
    with pytest.raises(TlsConfigError, match=KEY_PASSPHRASE_SECRET):
        server_context(identity, ca_file=None, require_client_certificate=False)
    secrets.set_secret(KEY_PASSPHRASE_SECRET, "s3cret-pass")
    server_context(identity, ca_file=None, require_client_certificate=False)


def test_missing_files_are_named(tmp_path: Path) -> None:
    missing = TlsIdentity(tmp_path / "nope.crt", tmp_path / "nope.key")
    with pytest.raises(TlsConfigError, match=r"nope\.crt"):
        server_context(missing, ca_file=None, require_client_certificate=False)


def test_configured_remote_node_with_tls_is_reached_with_our_certificate(
    storescp_tls: tuple[int, Path], pki: Pki
) -> None:
    from aifi_app.config.settings import NodeSettings, RemoteNode
    from aifi_app.dicom_node.peers import dicom_peer

    port, _ = storescp_tls
    remote = RemoteNode(
        name="PACS",
        ae_title="PACS",
        host="127.0.0.1",
        port=port,
        tls=True,
        ca_file=str(pki.ca.certificate_file),
    )
    own = NodeSettings(
        tls_certificate_file=str(pki.node.certificate), tls_key_file=str(pki.node.key)
    )
    assert echo(dicom_peer(remote, own), calling_ae_title="AIFI") == 0
    # without our certificate storescp (which requires one) refuses the handshake
    with pytest.raises(AssociationFailed, match=r"TLS with PACS@127\.0\.0\.1"):
        echo(dicom_peer(remote, NodeSettings()), calling_ae_title="AIFI")
    broken = RemoteNode(name="PACS", ae_title="PACS", host="127.0.0.1", port=port, tls=True,
                        ca_file="/nonexistent/ca.pem")  # fmt: skip
    with pytest.raises(AssociationFailed, match="cannot be set up"):
        dicom_peer(broken, own)
