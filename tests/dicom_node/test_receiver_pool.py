"""The node with receiver processes, against DCMTK, pynetdicom and a raw peer over loopback.

Every test here waits until the receiver processes are ready, so that the associations
are served by them (``associations_handed_over`` counts those handed over), not by the
node's own threads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.receiver_pool import remove_partial_files
from aifi_app.dicom_node.spare_files import is_spare
from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.sample_studies import ct_series, demo_patient, write
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskFloor, DiskGuard
from aifi_app.store.receiving import IdleTimes
from tests.helpers.disk_readings import DiskReadingsFile
from tests.helpers.ports import free_port
from tests.helpers.processes import process_runs
from tests.helpers.raw_peer import RawPeer, close_raw_peers, data_set, pdv, store_rq
from tests.helpers.tools import ECHOSCU, STORESCU, dcmtk_env

_STORESCU = [str(STORESCU), "-aet", "STORESCU", "-aec", "AIFI", "-nh", "127.0.0.1"]
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Nodes:
    """Makes nodes on one data folder (a restart is a second node on it)."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.db = Database(self.data / "q.db")
        self.port = free_port()
        self.running: list[StorageNode] = []

    def start(
        self,
        processes: int = 2,
        disk_guard: DiskGuard | None = None,
        *,
        first_in_process: bool = False,
    ) -> StorageNode:
        node = StorageNode(
            NodeConfig(
                "AIFI",
                "127.0.0.1",
                self.port,
                ("STORESCU", "ECHOSCU", "SCU"),
                131072,
                30,
                receive_processes=processes,
                receive_first_in_process=first_in_process,
            ),
            self.db,
            self.data,
            idle_seconds_for=IdleTimes(30.0),
            late_policy="follow_up",
            disk_guard=disk_guard,
        )
        node.start()
        self.running.append(node)
        _wait(lambda: node.receivers_ready == processes)
        return node

    def stop(self, node: StorageNode) -> None:
        node.stop()
        self.running.remove(node)

    def count(self, sql: str) -> int:
        return int(self.db.query(sql)[0]["n"])

    def audit(self, event: str) -> list[str]:
        rows = self.db.query("SELECT detail FROM audit_events WHERE event = ?", (event,))
        return [str(r["detail"]) for r in rows]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    made = Nodes(tmp_path)
    yield made
    close_raw_peers()
    for node in list(made.running):
        made.stop(node)
    made.db.close()


def _partial_files(node: StorageNode) -> list[Path]:
    """The files in the incoming folder that hold data or are not spare files.

    The service removes a killed receiver's files while this looks, so a file listed may be
    gone by the time its size is read: such a file is no longer there, and is not counted.
    """
    found = []
    for path in node.incoming.iterdir():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if not (is_spare(path) and size == 0):
            found.append(path)
    return found


def _one_slice(patient: int) -> Dataset:
    return next(iter(ct_series(demo_patient(patient), 1, size=32)))


def _series(tmp_path: Path, count: int, groups: int) -> list[list[Path]]:
    slices = list(ct_series(demo_patient(1), count * groups, size=32))
    paths = [write(ds, tmp_path / "out") for ds in slices]
    return [paths[g::groups] for g in range(groups)]


@pytest.mark.dcmtk
def test_four_dcmtk_associations_at_once_are_stored_by_the_receiver_processes(
    nodes: Nodes, tmp_path: Path
) -> None:
    node = nodes.start(processes=2)
    groups = _series(tmp_path, 15, 4)
    senders = [
        subprocess.Popen(
            [*_STORESCU, str(node.port), *map(str, group)],
            env=dcmtk_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for group in groups
    ]
    for sender in senders:
        out, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, out
    assert node.associations_handed_over == 4
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 60
    assert nodes.count("SELECT COUNT(*) AS n FROM studies") == 1
    spooled = list(node.spool.rglob("*.dcm"))
    assert len(spooled) == 60
    assert _partial_files(node) == []
    # the files name the sending AE (written by the receiver process from its command)
    meta = dcmread(spooled[0], stop_before_pixels=True).file_meta
    assert meta.SendingApplicationEntityTitle == "STORESCU"
    # the associations ended: nothing is held in transfer
    _wait(lambda: node.in_transfer.held() == frozenset() and node.quiet_seconds > 0)


@pytest.mark.dcmtk
def test_an_unknown_calling_ae_is_rejected_by_the_receiver_and_audited(nodes: Nodes) -> None:
    node = nodes.start(processes=1)
    refused = subprocess.run(
        [str(ECHOSCU), "-aet", "INTRUDER", "-aec", "AIFI", "127.0.0.1", str(node.port)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Rejected Permanent" in refused.stdout + refused.stderr
    _wait(lambda: any("INTRUDER" in d for d in nodes.audit("association_rejected")))
    assert node.associations_handed_over == 1
    ok = subprocess.run(
        [str(ECHOSCU), "-aet", "ECHOSCU", "-aec", "AIFI", "127.0.0.1", str(node.port)],
        env=dcmtk_env(),
        capture_output=True,
        timeout=60,
    )
    assert ok.returncode == 0


@pytest.mark.dcmtk
def test_the_disk_floor_refuses_associations_and_stores_with_out_of_resources(
    nodes: Nodes, tmp_path: Path
) -> None:
    readings = DiskReadingsFile(tmp_path / "readings.json", free_mb=10)
    node = nodes.start(
        processes=1, disk_guard=DiskGuard(tmp_path, DiskFloor(min_free_mb=100), reader=readings)
    )
    (path,) = _series(tmp_path, 1, 1)[0]
    refused = subprocess.run(
        [str(STORESCU), "-aet", "STORESCU", "-aec", "AIFI", "127.0.0.1", str(node.port), str(path)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Rejected Transient" in out and "Local Limit Exceeded" in out
    assert len(nodes.audit("association_refused")) == 1

    # the floor is crossed after the association began: the store gets 0xA700
    peer = RawPeer(node.port)
    readings.set(free_mb=500)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    readings.set(free_mb=10)
    ds = _one_slice(2)
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
    response, _ = peer.response()
    assert response.Status == 0xA700
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 0
    assert list(node.spool.rglob("*.dcm")) == []
    assert any("below the floor" in d for d in nodes.audit("store_refused"))
    assert _partial_files(node) == []


def test_a_disk_check_that_breaks_refuses_the_store_and_leaves_nothing(
    nodes: Nodes, tmp_path: Path
) -> None:
    readings = DiskReadingsFile(tmp_path / "readings.json")
    node = nodes.start(
        processes=1, disk_guard=DiskGuard(tmp_path, DiskFloor(min_free_mb=100), reader=readings)
    )
    peer = RawPeer(node.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    readings.break_reading()
    ds = _one_slice(3)
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
    assert peer.response()[0].Status == 0xA700
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 0
    assert list(node.spool.rglob("*.dcm")) == []
    assert any("disk check failed (RuntimeError)" in d for d in nodes.audit("store_refused"))


def test_a_receiver_killed_mid_instance_aborts_its_association_and_is_replaced(
    nodes: Nodes,
) -> None:
    node = nodes.start(processes=1)
    (pid,) = node.receiver_pids
    peer = RawPeer(node.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    ds = _one_slice(3)
    data = data_set(ds)
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x00, data[:100]))
    _wait(lambda: len(_partial_files(node)) == 1)  # the receiver's partial file
    assert _partial_files(node)[0].name.startswith(f"{pid}-")

    os.kill(pid, signal.SIGKILL)
    assert peer.next_pdu_type() == ul.A_ABORT  # the service aborts on the receiver's behalf
    _wait(lambda: _partial_files(node) == [])
    _wait(lambda: len(nodes.audit("receiver_process_died")) == 1)
    assert "1 association(s) aborted" in nodes.audit("receiver_process_died")[0]
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 0
    assert list(node.spool.rglob("*.dcm")) == []

    _wait(lambda: node.receivers_ready == 1)  # a new receiver takes the next association
    (replacement,) = node.receiver_pids
    assert replacement != pid
    again = RawPeer(node.port)
    assert again.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    again.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data))
    assert again.response()[0].Status == 0
    assert node.associations_handed_over == 2
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 1


def test_instances_acknowledged_before_a_receiver_is_killed_stay_after_a_restart(
    nodes: Nodes,
) -> None:
    node = nodes.start(processes=1)
    (pid,) = node.receiver_pids
    slices = list(ct_series(demo_patient(4), 3, size=32))
    ae = AE(ae_title="SCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="AIFI")
    assert assoc.is_established
    for ds in slices[:2]:
        assert assoc.send_c_store(ds).Status == 0
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not assoc.is_alive())  # the association is aborted
    assert assoc.is_aborted

    nodes.stop(node)
    restarted = nodes.start(processes=1)
    uids = {r["sop_instance_uid"] for r in nodes.db.query("SELECT sop_instance_uid FROM instances")}
    assert uids == {str(ds.SOPInstanceUID) for ds in slices[:2]}
    assert len(list(restarted.spool.rglob("*.dcm"))) == 2
    assert _partial_files(restarted) == []


def test_stop_ends_every_receiver_process(nodes: Nodes) -> None:
    node = nodes.start(processes=3)
    pids = node.receiver_pids
    assert len(pids) == 3 and all(process_runs(p) for p in pids)
    peer = RawPeer(node.port)  # an association in progress is cut
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    nodes.stop(node)
    assert not any(process_runs(p) for p in pids)
    assert node.receiver_pids == []
    assert peer.closed()


def test_the_receiver_records_its_instances_and_tells_the_service_which_study(
    nodes: Nodes,
) -> None:
    """The receiver process records the instance in the queue itself; the service hears
    of its study afterwards and holds the study while the association is open."""
    node = nodes.start(processes=1)
    slices = list(ct_series(demo_patient(6), 2, size=32))
    peer = RawPeer(node.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    for ds in slices:
        peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
        assert peer.response()[0].Status == 0
    rows = nodes.db.query("SELECT study_id, calling_ae FROM instances")
    assert len(rows) == 2 and {r["calling_ae"] for r in rows} == {"SCU"}
    (study_id,) = {r["study_id"] for r in rows}
    _wait(lambda: node.in_transfer.held() == {study_id})
    assert node.associations_handed_over == 1
    assert len(nodes.audit("study_started")) == 1
    peer.sock.sendall(ul.RELEASE_RQ)
    assert peer.next_pdu_type() == ul.A_RELEASE_RP
    _wait(lambda: node.in_transfer.held() == frozenset())


def test_a_queue_that_refuses_the_record_gets_out_of_resources_and_the_association_goes_on(
    nodes: Nodes,
) -> None:
    node = nodes.start(processes=1)
    with nodes.db.transaction() as conn:  # a fault of the database, in every process
        conn.execute(
            "CREATE TRIGGER refuse_instances BEFORE INSERT ON instances"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    peer = RawPeer(node.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    slices = list(ct_series(demo_patient(7), 3, size=32))
    for ds in slices[:2]:
        peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
        assert peer.response()[0].Status == 0xA700
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 0
    assert nodes.count("SELECT COUNT(*) AS n FROM studies") == 0
    refused = nodes.audit("store_refused")
    assert len(refused) == 2 and all("queue database error" in d for d in refused)
    with nodes.db.transaction() as conn:
        conn.execute("DROP TRIGGER refuse_instances")
    ds = slices[2]
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
    assert peer.response()[0].Status == 0
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 1


def test_a_clean_stop_is_not_taken_for_a_receiver_that_died(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    """Two threads waited for a stopping receiver's end (the stop and the process's
    reader); multiprocessing's fork-server handle gave the second one EOF, exit code
    255, and about one stop in five was logged and audited as a receiver that died."""
    for _ in range(6):
        node = nodes.start(processes=2)
        nodes.stop(node)
    assert "ended unexpectedly" not in caplog.text
    assert nodes.audit("receiver_process_died") == []


def test_what_the_service_fails_to_handle_is_answered_and_the_stop_is_prompt(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in the service while it hears of a stored instance does not
    fail the store (it is recorded); one while it answers a call still answers it (a new
    association is refused at once: it waited for an answer forever before, and the
    process's stop then took its 10 s and a kill)."""
    node = nodes.start(processes=1)
    pids = node.receiver_pids

    def broken(*args: object) -> None:
        raise RuntimeError("a fault in the service")

    monkeypatch.setattr(node, "instance_stored", broken)
    peer = RawPeer(node.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    for n in range(2):
        ds = _one_slice(20 + n)
        peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
        assert peer.response()[0].Status == 0
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 2
    _wait(lambda: caplog.text.count("could not be woken") == 2)

    monkeypatch.setattr(node, "refuse_association", broken)
    refused = RawPeer(node.port)
    assert refused.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result != 0
    nodes.stop(node)
    assert not any(process_runs(p) for p in pids)
    assert "did not stop: killed" not in caplog.text  # it ended when told to


def test_the_first_association_can_stay_in_the_service_and_concurrent_ones_go_out(
    nodes: Nodes,
) -> None:
    node = nodes.start(processes=1, first_in_process=True)
    slices = list(ct_series(demo_patient(5), 3, size=32))
    first, second = RawPeer(node.port), RawPeer(node.port)
    assert first.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    assert second.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    assert node.associations_handed_over == 1  # the second, while the first is open
    for n, peer in enumerate((first, second)):
        ds = slices[n]
        peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
        assert peer.response()[0].Status == 0
        peer.sock.sendall(ul.RELEASE_RQ)
        assert peer.next_pdu_type() == ul.A_RELEASE_RP
        peer.sock.close()
    _wait(lambda: node.served_here == 0)  # both ended: the next one stays here again
    third = RawPeer(node.port)
    assert third.associate([(CTImageStorage, SYNTAXES)], calling="SCU").result == 0
    ds = slices[2]
    third.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x02, data_set(ds)))
    assert third.response()[0].Status == 0
    assert node.associations_handed_over == 1
    assert nodes.count("SELECT COUNT(*) AS n FROM instances") == 3


def test_partial_files_of_a_process_are_removed_its_empty_spare_files_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "41-spare-0.dcm").write_bytes(b"")
    (tmp_path / "41-spare-1.dcm").write_bytes(b"begun")
    (tmp_path / "41-7-0.dcm").write_bytes(b"begun")
    (tmp_path / "415-spare-0.dcm").write_bytes(b"another process's")
    remove_partial_files(tmp_path, 41)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["41-spare-0.dcm", "415-spare-0.dcm"]
