"""The Storage SCP in-process, against real SCUs (pynetdicom and DCMTK) over loopback."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from aifi_app.dicom_node.instance_keeper import StoreRefused
from aifi_app.dicom_node.spare_files import SPARE_FILES, is_spare
from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo, send_files
from aifi_app.sample_studies import (
    chest_radiograph,
    ct_series,
    demo_patient,
    phantom_chest,
    write,
)
from aifi_app.store.database import Database
from aifi_app.store.disk_space import MIB, DiskFloor, DiskGuard, DiskReading
from aifi_app.store.receiving import IdleTimes
from tests.helpers.ports import free_port
from tests.helpers.tools import ECHOSCU, dcmtk_env, storescu


@pytest.fixture
def node(tmp_path: Path) -> Iterator[StorageNode]:
    db = Database(tmp_path / "data" / "q.db")
    stored: list[int] = []
    n = StorageNode(
        NodeConfig(
            "AIFI", "127.0.0.1", free_port(), ("MODALITY", "STORESCU", "ECHOSCU"), 131072, 30
        ),
        db,
        tmp_path / "data",
        idle_seconds_for=IdleTimes(30.0),
        late_policy="follow_up",
        on_stored=stored.append,
    )
    n.start()
    yield n
    n.stop()
    db.close()


def _partial_files(node: StorageNode) -> list[Path]:
    """What the incoming folder holds besides the empty files made ahead."""
    return [p for p in node.incoming.iterdir() if not is_spare(p)]


def _peer(node: StorageNode) -> Peer:
    return Peer("AIFI", "127.0.0.1", node.port)


def test_echo(node: StorageNode) -> None:
    assert echo(_peer(node), calling_ae_title="MODALITY") == 0


def test_unknown_calling_ae_is_rejected_and_audited(node: StorageNode) -> None:
    with pytest.raises(AssociationFailed):
        echo(_peer(node), calling_ae_title="INTRUDER")
    # the rejection is audited on the node's thread, after the peer already saw it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = node.db.query("SELECT event, detail FROM audit_events")
        if any(e["event"] == "association_rejected" and "INTRUDER" in e["detail"] for e in events):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no association_rejected audit event")


def test_store_keeps_bytes_and_records_before_success(node: StorageNode, tmp_path: Path) -> None:
    ds = chest_radiograph(demo_patient(1), phantom_chest())
    path = write(ds, tmp_path / "out")
    (outcome,) = send_files(_peer(node), [path], calling_ae_title="MODALITY")
    assert outcome.status == 0
    rows = node.db.query("SELECT * FROM instances")
    assert len(rows) == 1 and rows[0]["sop_instance_uid"] == ds.SOPInstanceUID
    kept = dcmread(node.data_dir / rows[0]["path"])
    assert kept == ds
    assert _partial_files(node) == []
    study = node.db.query("SELECT state, modality, instance_count FROM studies")[0]
    assert study == {"state": "receiving", "modality": "DX", "instance_count": 1}


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, RLELossless])
def test_compressed_syntaxes_are_kept_as_received(node: StorageNode, syntax: str) -> None:
    ds = chest_radiograph(demo_patient(2), phantom_chest())
    ds.file_meta.TransferSyntaxUID = syntax
    fake = b"\xff\xd8\xff\xd9" if syntax == JPEGBaseline8Bit else b"\x00" * 64
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([fake])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path = node.data_dir.parent / f"c-{syntax}.dcm"
    path.write_bytes(buffer.getvalue())
    (outcome,) = send_files(_peer(node), [path], calling_ae_title="MODALITY")
    assert outcome.status == 0
    row = node.db.query("SELECT path, transfer_syntax FROM instances")[0]
    assert row["transfer_syntax"] == syntax
    assert dcmread(node.data_dir / row["path"]).PixelData == ds.PixelData


def test_instance_without_study_uid_gets_a_failure_status(
    node: StorageNode, tmp_path: Path
) -> None:
    ds = chest_radiograph(demo_patient(3), phantom_chest())
    del ds.StudyInstanceUID
    path = write(ds, tmp_path / "bad")
    (outcome,) = send_files(_peer(node), [path], calling_ae_title="MODALITY")
    assert outcome.status == 0xA900
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0
    events = node.db.query("SELECT detail FROM audit_events WHERE event = 'store_refused'")
    assert events and "Study or Series Instance UID" in events[0]["detail"]


@pytest.mark.parametrize("study_uid", ["..", "."])
def test_a_study_uid_of_dots_only_is_refused_and_nothing_leaves_the_spool(
    node: StorageNode, tmp_path: Path, study_uid: str
) -> None:
    # the study's UID names its folder in the spool: ".." would put the file in the
    # data folder itself, "." in the spool's top
    ds = chest_radiograph(demo_patient(5), phantom_chest())
    ds.StudyInstanceUID = study_uid
    path = write(ds, tmp_path / "dots")
    (outcome,) = send_files(_peer(node), [path], calling_ae_title="MODALITY")
    assert outcome.status == 0xA900
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0
    assert not list(node.data_dir.glob("*.dcm")) and not list(node.spool.glob("*.dcm"))
    assert _partial_files(node) == []


def test_unwritable_spool_gives_out_of_resources(node: StorageNode, tmp_path: Path) -> None:
    # a file where the study's folder should be: the move fails as on a full or broken disk
    ds = chest_radiograph(demo_patient(4), phantom_chest())
    (node.spool / str(ds.StudyInstanceUID)).write_text("not a folder")
    path = write(ds, tmp_path / "full")
    (outcome,) = send_files(_peer(node), [path], calling_ae_title="MODALITY")
    assert outcome.status == 0xA700
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0


@pytest.mark.dcmtk
def test_dcmtk_storescu_and_echoscu(node: StorageNode, tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "study"
    for n in range(3):
        write(chest_radiograph(demo_patient(5), phantom_chest(seed=n)), folder)
    storescu(folder, node.port)
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 3
    proc = subprocess.run(
        [str(ECHOSCU), "-aet", "ECHOSCU", "-aec", "AIFI", "127.0.0.1", str(node.port)],
        env=dcmtk_env(),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0
    bad = storescu(folder, node.port, calling="UNKNOWN", check=False)
    assert bad.returncode != 0


def test_verification_only_association(node: StorageNode) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="AIFI")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


@pytest.fixture
def low_disk_node(tmp_path: Path) -> Iterator[tuple[StorageNode, list[DiskReading]]]:
    """A node whose free-space reading the test sets (the real-filesystem case is in
    tests/integration/test_disk_floor.py)."""
    db = Database(tmp_path / "data" / "q.db")
    readings = [DiskReading(10 * MIB, 1000 * MIB)]
    n = StorageNode(
        NodeConfig("AIFI", "127.0.0.1", free_port(), ("MODALITY", "STORESCU"), 131072, 30),
        db,
        tmp_path / "data",
        idle_seconds_for=IdleTimes(30.0),
        late_policy="follow_up",
        disk_guard=DiskGuard(tmp_path, DiskFloor(min_free_mb=100), reader=lambda p: readings[-1]),
    )
    n.start()
    yield n, readings
    n.stop()
    db.close()


def test_below_the_disk_floor_associations_are_refused_transient(
    low_disk_node: tuple[StorageNode, list[DiskReading]], tmp_path: Path
) -> None:
    node, readings = low_disk_node
    path = write(chest_radiograph(demo_patient(1), phantom_chest()), tmp_path / "out")
    refused = storescu([path], node.port, check=False)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "Rejected Transient" in out and "Local Limit Exceeded" in out
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0
    assert _partial_files(node) == []
    (event,) = node.db.query("SELECT detail FROM audit_events WHERE event = 'association_refused'")
    assert "STORESCU" in event["detail"] and "below the floor of 100 MB" in event["detail"]

    readings.append(DiskReading(500 * MIB, 1000 * MIB))  # space was freed
    storescu([path], node.port)
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 1


def test_store_crossing_the_floor_gets_out_of_resources_and_nothing_kept(
    low_disk_node: tuple[StorageNode, list[DiskReading]], tmp_path: Path
) -> None:
    node, readings = low_disk_node
    readings.append(DiskReading(500 * MIB, 1000 * MIB))
    ds = chest_radiograph(demo_patient(1), phantom_chest())
    path = write(ds, tmp_path / "out")
    target = node.incoming / "x.dcm"
    target.write_bytes(path.read_bytes())
    readings.append(DiskReading(10 * MIB, 1000 * MIB))  # the volume filled during the association
    with pytest.raises(StoreRefused) as refused:
        node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))
    assert refused.value.status == 0xA700
    assert "below the floor" in refused.value.reason
    assert not (node.spool / str(ds.StudyInstanceUID)).exists()
    assert node.db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 0


def test_connections_closed_before_their_request_hold_no_association_slot(
    node: StorageNode,
) -> None:
    # more than the node's 16 association slots, each closed after half a request; without
    # the fix each held its slot for the ACSE timeout (30 s here)
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            sock.sendall(b"\x01\x00\x00\x00\x00\xcd\x00\x01")  # A-ASSOCIATE-RQ, cut short
    deadline = time.monotonic() + 5  # far below the ACSE timeout: the slots were freed
    while True:
        try:
            assert echo(_peer(node), calling_ae_title="MODALITY", timeout=5) == 0
            return
        except AssociationFailed:
            assert time.monotonic() < deadline, "association slots are still held"
            time.sleep(0.2)


def test_the_accept_names_the_implementation_of_the_conformance_statement(
    node: StorageNode,
) -> None:
    from aifi_app.dicom_node import storage_scp

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.maximum_pdu_size = 0
    assoc = ae.associate("127.0.0.1", node.port, ae_title="AIFI")
    assert assoc.is_established
    assert assoc.acceptor.implementation_class_uid == storage_scp.IMPLEMENTATION_CLASS_UID
    assert assoc.acceptor.implementation_version_name == storage_scp.IMPLEMENTATION_VERSION_NAME
    assert assoc.acceptor.maximum_length == node.config.max_pdu_size
    assoc.release()


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", True),
        ("1" * 64, True),
        ("1" * 65, False),
        ("", False),
        (None, False),
        ("1.2.a", False),
        ("1.2\n", False),
        ("\u0661.\u0662", False),  # digits, but not ASCII ones
        (".", False),  # would name the spool folder itself
        ("..", False),  # would name the data folder above the spool
        ("....", False),
        ("1.", True),  # a trailing dot breaks PS3.5 9.1, but no path: kept, not refused
    ],
)
def test_uid_check_takes_only_ascii_digits_and_dots(value: str | None, valid: bool) -> None:
    from aifi_app.dicom_node.instance_keeper import valid_uid

    assert valid_uid(value) is valid


def test_instances_arrive_in_spare_files_made_ahead(tmp_path: Path) -> None:
    db = Database(tmp_path / "data" / "q.db")
    node = StorageNode(
        NodeConfig("AIFI", "127.0.0.1", free_port(), ("STORESCU",), 131072, 30),
        db,
        tmp_path / "data",
        idle_seconds_for=IdleTimes(30.0),
        late_policy="follow_up",
    )
    # a crash's leftovers: a partial file goes at start, an empty spare file is used
    node.incoming.mkdir(parents=True)
    (node.incoming / "1234-spare-0.dcm").write_bytes(b"")
    (node.incoming / "1234-spare-1.dcm").write_bytes(b"partial")
    adopted = (node.incoming / "1234-spare-0.dcm").stat().st_ino
    node.start()
    try:
        assert not (node.incoming / "1234-spare-1.dcm").exists()
        deadline = time.monotonic() + 30
        while len([p for p in node.incoming.iterdir() if is_spare(p)]) < SPARE_FILES:
            assert time.monotonic() < deadline, "the spare files were not made"
            time.sleep(0.05)
        before = {p.stat().st_ino for p in node.incoming.iterdir()}
        files = [write(ds, tmp_path / "out") for ds in ct_series(demo_patient(2), 3, size=32)]
        storescu(files, node.port)
        rows = db.query("SELECT sop_instance_uid, path FROM instances")
        assert len(rows) == 3
        for row in rows:
            kept = node.data_dir / row["path"]
            # the spool file is one of the files made ahead, now named and whole
            assert kept.stat().st_ino in before and kept.stat().st_nlink == 1
            assert dcmread(kept).SOPInstanceUID == row["sop_instance_uid"]
        assert _partial_files(node) == []
        # the empty file an earlier run made was taken first
        assert adopted in {(node.data_dir / row["path"]).stat().st_ino for row in rows}
        assert not (node.incoming / "1234-spare-0.dcm").exists()
    finally:
        node.stop()
        db.close()
    # what was made and not taken stays for the next start; nothing else is left
    assert _partial_files(node) == []
    assert all(p.stat().st_size == 0 for p in node.incoming.iterdir())
