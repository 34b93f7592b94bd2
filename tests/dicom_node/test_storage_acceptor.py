"""One association of our acceptor against real peers: pynetdicom's SCU, DCMTK and raw PDUs.

The raw peer (:class:`RawPeer`) builds its PDUs with pynetdicom's PDU classes and our
framing, so that the tests can send what a library SCU never would: a command and its
data set in one PDU, a data set split over PDUs as the test likes, a store on a context
that was not accepted, a peer that stops mid-instance or says nothing at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom import pdu as pdu_classes
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    Verification,
)

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.association_listener import AssociationListener
from aifi_app.dicom_node.storage_acceptor import (
    AcceptorSettings,
    AssociationSlots,
    DataSetStart,
    StorageAssociation,
    supported_contexts,
)
from aifi_app.sample_studies import ct_series, demo_patient, write
from tests.helpers.raw_peer import (
    RawPeer,
    close_raw_peers,
    command,
    ct_slice,
    data_set,
    pdv,
    store_rq,
)
from tests.helpers.tools import ECHOSCU, STORESCU, dcmtk_env

OUR_UID = "1.2.826.0.1.3680043.9.9999.1"
OUR_VERSION = "AIFI_TEST"
SYNTAXES = [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]


class Service:
    """A storage service that keeps what it was given in memory (the node's is tested in
    test_storage_scp.py)."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str, bytes | None]] = []
        self.starts: list[DataSetStart | None] = []
        self.rejected: list[str] = []
        self.refuse: str | None = None
        self.status = 0x0000

    def refuse_association(self, calling_ae: str, address: str) -> str | None:
        return self.refuse

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None:
        self.rejected.append(reason)

    def store(
        self,
        path: str | Path | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        self.starts.append(start)
        data = Path(path).read_bytes() if path is not None else None
        if path is not None:
            Path(path).unlink()
        self.stored.append((calling_ae, sop_instance_uid, data))
        return self.status if path is not None else 0xA700


class Node:
    def __init__(self, tmp_path: Path, *, max_pdu: int, timeout: float, limit: int) -> None:
        self.incoming = tmp_path / "incoming"
        self.incoming.mkdir()
        self.service = Service()
        self.slots = AssociationSlots(limit)
        self.settings = AcceptorSettings(
            ae_title="NODE",
            max_pdu_size=max_pdu,
            timeout=timeout,
            allowed_calling_ae_titles=frozenset({"SCU", "STORESCU", "ECHOSCU"}),
            supported_contexts=supported_contexts(
                {str(Verification): SYNTAXES, CTImageStorage: SYNTAXES, MRImageStorage: SYNTAXES}
            ),
            implementation_class_uid=OUR_UID,
            implementation_version_name=OUR_VERSION,
            incoming=self.incoming,
        )
        self.done = threading.Event()
        self.listener = AssociationListener(("127.0.0.1", 0), self._serve, timeout=timeout)

    def _serve(self, sock: socket.socket, address: str, tls_peer: str | None) -> None:
        StorageAssociation(sock, address, self.settings, self.service, self.slots).run()
        self.done.set()


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(*, max_pdu: int = 16384, timeout: float = 10, limit: int = 16) -> Node:
        node = Node(tmp_path / str(len(nodes)), max_pdu=max_pdu, timeout=timeout, limit=limit)
        nodes.append(node)
        return node

    (tmp_path / "0").mkdir()
    for n in range(1, 4):
        (tmp_path / str(n)).mkdir()
    yield make
    for node in nodes:
        node.listener.stop()


def _store_one(node: Node, ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> None:
    """pynetdicom stores ``ds`` in ``node`` over an association of its own (success)."""
    ae = AE("SCU")
    ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", node.listener.port, ae_title="NODE")
    assert assoc.send_c_store(ds).Status == 0
    assoc.release()


def _record_writeback(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file's size each time the acceptor starts its write-back, recorded (the real
    ``sync_file_range`` still runs); skips where there is none."""
    from aifi_app.dicom_node import storage_acceptor

    real = storage_acceptor._SYNC_FILE_RANGE
    if real is None:
        pytest.skip("no sync_file_range here")
    started_at: list[int] = []

    def recording(fd: int, offset: int, nbytes: int, flags: int) -> int:
        started_at.append(os.fstat(fd).st_size)
        return real(fd, offset, nbytes, flags)

    monkeypatch.setattr(storage_acceptor, "_SYNC_FILE_RANGE", recording)
    return started_at


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _close_raw_peers() -> Iterator[None]:
    yield
    close_raw_peers()


# --- tests ---------------------------------------------------------------------------------


def test_pynetdicom_scu_stores_over_many_pdus_echoes_and_releases(
    make_node: Callable[..., Node],
) -> None:
    node = make_node(max_pdu=4096)  # a 32x32 slice's data set spans several PDUs
    ae = AE("SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    slices = list(ct_series(demo_patient(1), 3, size=64))
    assoc = ae.associate("127.0.0.1", node.listener.port, ae_title="NODE")
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == 4096
    assert assoc.acceptor.implementation_class_uid == OUR_UID
    assert assoc.acceptor.implementation_version_name == OUR_VERSION
    assert assoc.send_c_echo().Status == 0
    for ds in slices:
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    assert assoc.is_released
    kept = [dcmread(BytesIO(data)) for _, _, data in node.service.stored if data]
    assert [k.SOPInstanceUID for k in kept] == [s.SOPInstanceUID for s in slices]
    assert [k.PixelData for k in kept] == [s.PixelData for s in slices]
    meta = kept[0].file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # the data set's beginning came along in memory: here the whole data set, as written
    # (each file's own meta: its length follows the length of that slice's UIDs)
    for start, (_, _, data), one in zip(
        node.service.starts, node.service.stored, kept, strict=True
    ):
        assert start is not None and data is not None
        assert start.transfer_syntax == ExplicitVRLittleEndian
        assert start.complete and data.endswith(start.head)
        assert (
            len(data) - len(start.head) == 132 + 12 + one.file_meta.FileMetaInformationGroupLength
        )
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.MediaStorageSOPInstanceUID == slices[0].SOPInstanceUID
    assert meta.ImplementationClassUID == OUR_UID
    _wait(lambda: list(node.incoming.iterdir()) == [])


def test_negotiation_accepts_supported_contexts_and_rejects_the_others(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    ae = AE("SCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(MRImageStorage, ["1.2.840.10008.1.2.4.50"])  # JPEG: not here
    ae.add_requested_context("1.2.3.4.5.6", [ExplicitVRLittleEndian])  # unknown SOP class
    assoc = ae.associate("127.0.0.1", node.listener.port, ae_title="NODE")
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [CTImageStorage]
    results = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
    assert results == {MRImageStorage: 0x04, "1.2.3.4.5.6": 0x03}
    assoc.release()


def test_role_selection_keeps_the_default_roles(make_node: Callable[..., Node]) -> None:
    node = make_node()
    ae = AE("SCU")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    roles = [build_role(CTImageStorage, scu_role=True, scp_role=True)]
    assoc = ae.associate("127.0.0.1", node.listener.port, ae_title="NODE", ext_neg=roles)
    assert assoc.is_established
    (cx,) = assoc.accepted_contexts
    # no role reply: the requestor stays SCU only, the node SCP only (PS3.7 D.3.3.4)
    assert (cx.as_scu, cx.as_scp) == (True, False)
    assert assoc.send_c_store(ct_slice()).Status == 0
    assoc.release()


def test_command_and_data_in_one_pdu_and_a_data_set_split_over_pdus(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    ac = peer.associate([(CTImageStorage, [str(ExplicitVRLittleEndian)])])
    assert ac.result == 0
    ds = ct_slice()
    data = data_set(ds)
    a, b = len(data) // 3, 2 * len(data) // 3
    # the command, whole, and the first data fragment in one PDU; then two fragments in one
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID, 7)), pdv(1, 0x00, data[:a]))
    peer.send(pdv(1, 0x00, data[a:b]), pdv(1, 0x02, data[b:]))
    rsp, _ = peer.response()
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8001, 7, 0)
    assert rsp.AffectedSOPInstanceUID == ds.SOPInstanceUID
    # a command split over two PDUs
    command = store_rq(ds.SOPInstanceUID, 8)
    peer.send(pdv(1, 0x01, command[:20]))
    peer.send(pdv(1, 0x03, command[20:]), pdv(1, 0x02, data))
    assert peer.response()[0].MessageIDBeingRespondedTo == 8
    kept = [dcmread(BytesIO(d)) for _, _, d in node.service.stored if d]
    assert [k.PixelData for k in kept] == [ds.PixelData, ds.PixelData]
    peer.sock.sendall(pdu_classes.A_RELEASE_RQ().encode())
    assert peer.next_pdu_type() == ul.A_RELEASE_RP


def test_a_pdu_a_little_over_our_maximum_is_taken(make_node: Callable[..., Node]) -> None:
    node = make_node(max_pdu=1024)
    peer = RawPeer(node.listener.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)]).result == 0
    ds = ct_slice()
    data = data_set(ds)
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)))
    for start in range(0, len(data), 1500):  # 1506-byte PDUs where 1024 was announced
        last = start + 1500 >= len(data)
        peer.send(pdv(1, 0x02 if last else 0x00, data[start : start + 1500]))
    assert peer.response()[0].Status == 0
    assert [d for _, _, d in node.service.stored if d]


def test_responses_respect_the_peers_maximum_pdu_length(make_node: Callable[..., Node]) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    assert peer.associate([(str(Verification), SYNTAXES)], max_pdu=40).result == 0
    echo = command(
        {
            "AffectedSOPClassUID": Verification,
            "CommandField": 0x0030,
            "MessageID": 3,
            "CommandDataSetType": 0x0101,
        }
    )
    peer.send(pdv(1, 0x03, echo))
    rsp, lengths = peer.response()
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8030, 3, 0)
    assert len(lengths) > 1 and max(lengths) <= 40


def test_a_store_on_a_context_not_accepted_is_aborted(make_node: Callable[..., Node]) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    ac = peer.associate([(CTImageStorage, SYNTAXES), (MRImageStorage, ["1.2.840.10008.1.2.4.50"])])
    assert [cx.result for cx in ac.presentation_context_definition_results_list] == [0, 4]
    ds = ct_slice()
    peer.send(pdv(3, 0x03, store_rq(ds.SOPInstanceUID)))
    assert peer.next_pdu_type() == ul.A_ABORT
    assert peer.closed()
    assert node.service.stored == []


@pytest.mark.parametrize("how", ["abort", "close"])
def test_a_peer_gone_mid_instance_leaves_no_file(make_node: Callable[..., Node], how: str) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)]).result == 0
    ds = ct_slice()
    data = data_set(ds)
    peer.send(pdv(1, 0x03, store_rq(ds.SOPInstanceUID)), pdv(1, 0x00, data[:100]))
    _wait(lambda: len(list(node.incoming.iterdir())) == 1)  # the partial file
    if how == "abort":
        peer.sock.sendall(ul.encode_abort(ul.SOURCE_SERVICE_USER, 0))
    peer.sock.close()
    _wait(node.done.is_set)
    assert list(node.incoming.iterdir()) == []
    assert node.service.stored == []


def test_a_silent_peer_is_cut_after_the_timeout(make_node: Callable[..., Node]) -> None:
    node = make_node(timeout=0.3)
    with socket.create_connection(("127.0.0.1", node.listener.port), timeout=10) as idle:
        assert idle.recv(10) == b""  # no A-ASSOCIATE-RQ within ARTIM: closed, no A-ABORT
    peer = RawPeer(node.listener.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)]).result == 0
    assert peer.next_pdu_type() == ul.A_ABORT  # established, then idle: aborted
    assert peer.closed()
    _wait(lambda: not node.slots.over_limit and node.done.is_set())


def test_rejections_calling_ae_limit_and_refusal(make_node: Callable[..., Node]) -> None:
    node = make_node(limit=1)
    unknown = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)], calling="WHO")
    assert (unknown.result, unknown.result_source, unknown.diagnostic) == (1, 1, 3)
    first = RawPeer(node.listener.port)
    assert first.associate([(CTImageStorage, SYNTAXES)]).result == 0
    over = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)])
    assert (over.result, over.result_source, over.diagnostic) == (2, 3, 2)
    _wait(lambda: len(node.service.rejected) == 2)  # audited after the A-ASSOCIATE-RJ went
    assert "'WHO'" in node.service.rejected[0] and "limit" in node.service.rejected[1]
    first.sock.sendall(pdu_classes.A_RELEASE_RQ().encode())
    assert first.next_pdu_type() == ul.A_RELEASE_RP
    node.service.refuse = "below the floor"
    refused = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)])
    assert (refused.result, refused.result_source, refused.diagnostic) == (2, 3, 2)
    assert len(node.service.rejected) == 2  # the refusal is audited by the service itself


@pytest.mark.parametrize(
    "wire",
    [
        ul.encode_pdu(ul.P_DATA_TF, pdv(1, 0x03, b"x")),  # data before any request
        ul.encode_pdu(ul.A_ASSOCIATE_RQ, b"\x00\x01" + b"\xff" * 60),  # garbage request
        b"\x0a\x00\x00\x00\x00\x00",  # not a PDU type
    ],
)
def test_malformed_requests_are_aborted(make_node: Callable[..., Node], wire: bytes) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    peer.sock.sendall(wire)
    assert peer.next_pdu_type() == ul.A_ABORT
    assert peer.closed()


def test_malformed_data_after_association_is_aborted(make_node: Callable[..., Node]) -> None:
    node = make_node(max_pdu=1024)
    for wire in (
        ul.encode_pdu(ul.P_DATA_TF, pdv(1, 0x00, b"x" * 5000)),  # far over our maximum
        ul.encode_pdu(ul.P_DATA_TF, pdv(1, 0x02, b"data")),  # a data set without command
        ul.encode_pdu(ul.P_DATA_TF, pdv(1, 0x03, b"\x01\x02\x03")),  # not a command set
        ul.encode_pdu(
            ul.P_DATA_TF,
            pdv(
                1,
                0x03,
                command({"CommandField": 0x0020, "MessageID": 1, "CommandDataSetType": 0x0101}),
            ),
        ),  # C-FIND
        ul.encode_pdu(ul.A_ASSOCIATE_RQ, b"\x00" * 10),  # a second request
    ):
        peer = RawPeer(node.listener.port)
        assert peer.associate([(CTImageStorage, SYNTAXES)]).result == 0
        peer.sock.sendall(wire)
        assert peer.next_pdu_type() == ul.A_ABORT
        assert peer.closed()
    assert node.service.stored == []


def test_a_data_set_the_disk_refuses_gets_a_failure_status(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    node.incoming.rmdir()  # the file cannot be created
    ae = AE("SCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.listener.port, ae_title="NODE")
    ds = ct_slice()
    assert assoc.send_c_store(ds).Status == 0xA700
    assoc.release()
    assert node.service.stored == [("SCU", ds.SOPInstanceUID, None)]


def test_listener_stop_cuts_open_associations(make_node: Callable[..., Node]) -> None:
    node = make_node()
    peer = RawPeer(node.listener.port)
    assert peer.associate([(CTImageStorage, SYNTAXES)]).result == 0
    node.listener.stop()
    assert peer.closed()
    assert node.done.is_set()


@pytest.mark.dcmtk
def test_dcmtk_storescu_with_small_pdus_and_echoscu(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = make_node(max_pdu=4096)
    folder = tmp_path / "ct"
    paths = [write(ds, folder) for ds in ct_series(demo_patient(2), 3, size=64)]
    args = ["-aet", "STORESCU", "-aec", "NODE", "--max-pdu", "4096"]
    subprocess.run(
        [str(STORESCU), *args, "127.0.0.1", str(node.listener.port), *map(str, paths)],
        env=dcmtk_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    kept = {dcmread(BytesIO(d)).SOPInstanceUID: d for _, _, d in node.service.stored if d}
    for path in paths:
        ds = dcmread(path)
        assert dcmread(BytesIO(kept[ds.SOPInstanceUID])).PixelData == ds.PixelData
    subprocess.run(
        [str(ECHOSCU), "-aet", "ECHOSCU", "-aec", "NODE", "127.0.0.1", str(node.listener.port)],
        env=dcmtk_env(),
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_the_same_request_is_negotiated_once_and_still_checked_each_time(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    cache = node.settings.negotiations
    first = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)])
    again = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)])
    assert first.result == again.result == 0
    assert len(cache._entries) == 1  # the second was the first's negotiation
    other = RawPeer(node.listener.port).associate([(MRImageStorage, SYNTAXES)])
    assert other.result == 0 and len(cache._entries) == 2
    node.service.refuse = "below the floor"  # the policy is not cached with it
    refused = RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)])
    assert (refused.result, refused.result_source, refused.diagnostic) == (2, 3, 2)


def test_large_instances_are_written_back_while_they_arrive(
    make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifi_app.dicom_node import storage_acceptor

    monkeypatch.setattr(storage_acceptor, "WRITEBACK_AFTER_BYTES", 4096)
    started_at = _record_writeback(monkeypatch)
    node = make_node(max_pdu=4096)
    ds = next(ct_series(demo_patient(3), 1, size=128))  # 32 KiB of pixels
    _store_one(node, ds)
    (kept,) = [dcmread(BytesIO(d)) for _, _, d in node.service.stored if d]
    assert kept.PixelData == ds.PixelData
    assert len(started_at) >= 4  # one start every one or two of its 4 KiB PDUs


def test_a_ct_slice_is_written_back_while_it_arrives(
    make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the default step and the node's default PDU size, a 0.5 MiB slice has its
    write-back started before its last fragment, not only by the flush after it."""
    started_at = _record_writeback(monkeypatch)
    node = make_node(max_pdu=131072)
    ds = next(ct_series(demo_patient(5), 1, size=512))  # 512 KiB of pixels
    _store_one(node, ds)
    ((_, _, data),) = node.service.stored
    assert data is not None and dcmread(BytesIO(data)).PixelData == ds.PixelData
    assert len(started_at) >= 3
    assert started_at[0] < len(data) // 2  # the first well before the end


def test_only_the_data_sets_first_bytes_are_kept_in_memory(
    make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifi_app.dicom_node import storage_acceptor

    monkeypatch.setattr(storage_acceptor, "HEAD_BYTES", 1000)
    node = make_node(max_pdu=4096)
    ds = next(ct_series(demo_patient(4), 1, size=64))
    _store_one(node, ds, ImplicitVRLittleEndian)
    ((_, _, data),) = node.service.stored
    (start,) = node.service.starts
    assert data is not None and start is not None
    assert start.transfer_syntax == ImplicitVRLittleEndian
    assert len(start.head) == 1000 and not start.complete
    meta_end = 132 + 12 + dcmread(BytesIO(data)).file_meta.FileMetaInformationGroupLength
    assert data[meta_end : meta_end + 1000] == start.head


def test_the_same_request_arriving_at_once_is_negotiated_once(
    make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifi_app.dicom_node import storage_acceptor

    calls: list[bytes] = []
    real = storage_acceptor.negotiate

    def slow_negotiate(request_pdu: bytes, settings: AcceptorSettings) -> object:
        calls.append(request_pdu)
        time.sleep(0.3)  # long enough for the other associations to bring theirs
        return real(request_pdu, settings)

    monkeypatch.setattr(storage_acceptor, "negotiate", slow_negotiate)
    node = make_node()
    results: list[int] = []

    def associate() -> None:
        results.append(RawPeer(node.listener.port).associate([(CTImageStorage, SYNTAXES)]).result)

    threads = [threading.Thread(target=associate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [0, 0, 0, 0]
    assert len(calls) == 1
