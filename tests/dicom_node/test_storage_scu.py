"""Our C-STORE/C-ECHO SCU against real peers.

DCMTK storescp (16 KiB and 128 KiB PDUs) and Orthanc receive every instance byte for byte
as stored, in its own transfer syntax; pynetdicom SCPs answer with warnings and failures,
refuse a kind of instance, or abort mid-way; scripted peers break the protocol. A peer that
accepts the association and then stalls ends the send with a timeout and an abort (never a
hang), every instance gets its own outcome, and the next association to the same peer works
once it answers again."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import RLELossless
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from aifi_app.dicom_node.storage_scu import (
    AssociationFailed,
    Peer,
    SendOutcome,
    echo,
    send_files,
)
from aifi_app.sample_studies import (
    chest_radiograph,
    ct_series,
    demo_patient,
    phantom_chest,
    write,
)
from tests.helpers.ports import free_port, wait_for_port
from tests.helpers.scripted_peer import ScriptedPeer
from tests.helpers.stalling_peer import StallingPeer
from tests.helpers.tools import DCMTK_BIN, dcmtk_env

HANG = 120.0  # far beyond the 1 s timeouts below: reaching it means the send hung


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    # 3000x3000 8-bit (9 MB): more than the loopback socket buffers hold, so a peer that
    # stops reading blocks the writer itself, not only the response
    big = chest_radiograph(demo_patient(1), phantom_chest(size=3000))
    small = chest_radiograph(
        demo_patient(1), phantom_chest(size=64), study_uid=big.StudyInstanceUID
    )
    return [write(big, tmp_path / "a"), write(small, tmp_path / "b")]


@pytest.fixture(params=["no_response", "no_read"])
def peer(request: pytest.FixtureRequest) -> Iterator[StallingPeer]:
    server = StallingPeer(request.param)
    yield server
    server.stop()


def _send(peer: StallingPeer, files: list[Path]) -> list[SendOutcome]:
    result: list[list[SendOutcome]] = []
    thread = threading.Thread(
        target=lambda: result.append(
            send_files(
                Peer(peer.ae_title, "127.0.0.1", peer.port),
                files,
                calling_ae_title="AIFI",
                timeout=1.0,
            )
        ),
        daemon=True,
    )
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"send to a stalling peer ({peer.mode}) hung"
    return result[0]


def test_stalled_peer_times_out_then_next_association_delivers(
    peer: StallingPeer, files: list[Path]
) -> None:
    stalled = _send(peer, files)
    assert [o.path for o in stalled] == files  # an outcome per instance, in order
    assert all(not o.ok and o.status is None for o in stalled)
    assert stalled[0].error == "no response (timeout or abort)"
    assert stalled[1].error == "association ended"
    assert peer.stalled_associations == 1
    assert peer.stored == []

    peer.healthy = True  # the peer answers again: a new association delivers both
    again = _send(peer, files)
    assert [o.status for o in again] == [0, 0]
    assert len(peer.stored) == 2
    assert peer.stalled_associations == 1


# -- real peers: byte for byte ------------------------------------------------------------


def _study(folder: Path) -> list[Path]:
    """A CT (slices of several PDUs at any PDU size), one slice of it RLE compressed, and a
    radiograph (explicit VR little endian, 8-bit)."""
    slices = list(ct_series(demo_patient(4), 3, size=256))
    slices[2].compress(RLELossless)
    dx = chest_radiograph(demo_patient(4), phantom_chest(size=700))
    return [write(ds, folder) for ds in [*slices, dx]]


def _data_set(path: Path) -> tuple[str, bytes]:
    """(transfer syntax, the data set's bytes as they are in the file)."""
    meta, offset = split_dataset(path)
    return str(meta.TransferSyntaxUID), path.read_bytes()[offset:]


@pytest.fixture(params=[None, 131072], ids=["default-pdu", "pdu-128k"])
def storescp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    # +B: write what came, bit for bit; +xa: accept every transfer syntax DCMTK knows
    args = [str(DCMTK_BIN / "storescp"), "-aet", "PACS", "+B", "+xa", "-od", str(out)]
    if request.param is not None:
        args += ["--max-pdu", str(request.param)]
    proc = subprocess.Popen(
        [*args, str(port)], env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, 20)
        yield port, out
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.mark.dcmtk
def test_dcmtk_storescp_receives_every_data_set_byte_for_byte(
    storescp: tuple[int, Path], tmp_path: Path
) -> None:
    port, out = storescp
    files = _study(tmp_path / "send")
    peer = Peer("PACS", "127.0.0.1", port)
    assert echo(peer, calling_ae_title="AIFI") == 0
    outcomes = send_files(peer, files, calling_ae_title="AIFI")
    assert [(o.path, o.status, o.error) for o in outcomes] == [(f, 0, "") for f in files]
    received = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in out.iterdir()}
    assert len(received) == len(files)
    for sent in files:
        uid = dcmread(sent, stop_before_pixels=True).SOPInstanceUID
        assert _data_set(received[uid]) == _data_set(sent)


@pytest.mark.orthanc
def test_orthanc_receives_every_instance_as_stored(orthanc_factory: Any, tmp_path: Path) -> None:
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", 104)})
    files = _study(tmp_path / "send")
    peer = Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)
    assert echo(peer, calling_ae_title="AIFI") == 0
    outcomes = send_files(peer, files, calling_ae_title="AIFI")
    assert [o.status for o in outcomes] == [0] * len(files)
    for sent in files:
        ds = dcmread(sent)
        (found,) = orthanc.post(
            "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": ds.SOPInstanceUID}}
        )
        stored = dcmread(BytesIO(orthanc.file(found)))
        assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert stored.PixelData == ds.PixelData


# -- pynetdicom peers: statuses, refused kinds, aborts ------------------------------------


class _Scp:
    """A pynetdicom storage SCP answering each C-STORE with the next of ``statuses``
    (or aborting the association where the status is None)."""

    def __init__(self, contexts: list[str], statuses: list[int | None]) -> None:
        self.port = free_port()
        self.statuses = list(statuses)
        self.received: list[str] = []
        ae = AE(ae_title="SCP")
        ae.require_called_aet = True
        for sop_class in contexts:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        self.server: Any = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.peer = Peer("SCP", "127.0.0.1", self.port)

    def _store(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        status = self.statuses.pop(0)
        if status is None:
            event.assoc.abort()
            return 0xA700
        return status

    def stop(self) -> None:
        self.server.shutdown()


def _cts(folder: Path, n: int) -> list[Path]:
    return [write(ds, folder) for ds in ct_series(demo_patient(5), n, size=64)]


def test_each_instance_gets_its_status_and_warnings_count_as_stored(tmp_path: Path) -> None:
    scp = _Scp([CTImageStorage], [0x0000, 0xB000, 0xA700, 0xC000, 0xB007])
    try:
        files = _cts(tmp_path, 5)
        outcomes = send_files(scp.peer, files, calling_ae_title="AIFI")
    finally:
        scp.stop()
    assert [o.path for o in outcomes] == files
    assert [o.status for o in outcomes] == [0x0000, 0xB000, 0xA700, 0xC000, 0xB007]
    assert [o.ok for o in outcomes] == [True, True, False, False, True]


def test_instances_of_a_kind_the_peer_refuses_fail_alone(tmp_path: Path) -> None:
    scp = _Scp([CTImageStorage], [0, 0])
    try:
        ct = _cts(tmp_path / "ct", 2)
        dx = write(chest_radiograph(demo_patient(5), phantom_chest(size=64)), tmp_path / "dx")
        outcomes = send_files(scp.peer, [ct[0], dx, ct[1]], calling_ae_title="AIFI")
        with pytest.raises(
            AssociationFailed, match=r"does not accept verification \(SOP class not supported\)"
        ):
            echo(scp.peer, calling_ae_title="AIFI")
    finally:
        scp.stop()
    assert [o.status for o in outcomes] == [0, None, 0]
    assert outcomes[1].error == "not sent: the peer does not accept it (SOP class not supported)"
    assert len(scp.received) == 2


def test_an_association_aborted_mid_way_ends_the_rest(tmp_path: Path) -> None:
    scp = _Scp([CTImageStorage], [0, None])
    try:
        files = _cts(tmp_path, 4)
        outcomes = send_files(scp.peer, files, calling_ae_title="AIFI", timeout=10)
    finally:
        scp.stop()
    assert outcomes[0].status == 0
    assert outcomes[1].status is None
    assert outcomes[1].error.startswith("no response: ")
    assert [o.error for o in outcomes[2:]] == ["association ended"] * 2
    assert len(scp.received) == 2


def test_unreadable_files_fail_alone(tmp_path: Path) -> None:
    scp = _Scp([CTImageStorage], [0, 0])
    try:
        files = _cts(tmp_path, 2)
        text = tmp_path / "notes.txt"
        text.write_text("not an image")
        paths = [files[0], tmp_path / "gone.dcm", text, files[1]]
        outcomes = send_files(scp.peer, paths, calling_ae_title="AIFI")
        only_bad = send_files(scp.peer, [text], calling_ae_title="AIFI")
    finally:
        scp.stop()
    assert [(o.status, o.error) for o in outcomes] == [
        (0, ""),
        (None, "unreadable file (FileNotFoundError)"),
        (None, "unreadable file (InvalidDicomError)"),
        (0, ""),
    ]
    assert [o.error for o in only_bad] == ["unreadable file (InvalidDicomError)"]


def test_refusals_and_absent_peers_are_said_in_words(tmp_path: Path) -> None:
    scp = _Scp([CTImageStorage], [])
    try:
        with pytest.raises(AssociationFailed, match=r"rejected: called AE title not recognised"):
            echo(Peer("OTHER", "127.0.0.1", scp.port), calling_ae_title="AIFI")
    finally:
        scp.stop()
    with pytest.raises(AssociationFailed, match=r"cannot connect to PACS@127\.0\.0\.1:\d+ \("):
        send_files(
            Peer("PACS", "127.0.0.1", free_port()), _cts(tmp_path, 1), calling_ae_title="AIFI"
        )


# -- scripted peers: protocol breaches ----------------------------------------------------


def _send_guarded(peer: Peer, files: list[Path], timeout: float) -> list[SendOutcome]:
    result: list[list[SendOutcome]] = []
    thread = threading.Thread(
        target=lambda: result.append(
            send_files(peer, files, calling_ae_title="AIFI", timeout=timeout)
        ),
        daemon=True,
    )
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "send hung"
    return result[0]


def test_a_pdu_over_our_maximum_aborts_the_association(tmp_path: Path) -> None:
    scripted = ScriptedPeer("oversized")
    try:
        files = _cts(tmp_path, 2)
        outcomes = _send_guarded(Peer("SCRIPTED", "127.0.0.1", scripted.port), files, 10)
    finally:
        scripted.stop()
    assert outcomes[0].status is None
    assert outcomes[0].error == (
        "no response: the peer sent a P-DATA-TF of 262150 bytes, over our maximum of 131072"
    )
    assert outcomes[1].error == "association ended"
    assert scripted.received[-1] == 0x07  # our A-ABORT


def test_a_release_left_unanswered_does_not_hold_the_send(tmp_path: Path) -> None:
    scripted = ScriptedPeer("silent_release")
    try:
        files = _cts(tmp_path, 2)
        outcomes = _send_guarded(Peer("SCRIPTED", "127.0.0.1", scripted.port), files, 1.0)
    finally:
        scripted.stop()
    assert [o.status for o in outcomes] == [0, 0]
    assert scripted.received[-1] == 0x05  # our A-RELEASE-RQ
    assert len(scripted.stored) == 2


def test_a_release_collision_is_answered(tmp_path: Path) -> None:
    scripted = ScriptedPeer("release_collision")
    try:
        files = _cts(tmp_path, 1)
        outcomes = _send_guarded(Peer("SCRIPTED", "127.0.0.1", scripted.port), files, 30)
    finally:
        scripted.stop()
    assert [o.status for o in outcomes] == [0]
    assert scripted.received[-2:] == [0x05, 0x06]  # our A-RELEASE-RQ, then our A-RELEASE-RP
