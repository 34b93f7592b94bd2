"""Sending to a peer that accepts the association and then stalls: the send ends with a
timeout and an abort (never a hang), every instance gets its own outcome, and the next
association to the same peer works once it answers again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.dicom_node.storage_scu import Peer, SendOutcome, send_files
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.stalling_peer import StallingPeer

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
