"""Fuzz campaign against the running node (``aifi-app serve`` in its own process).

1. Malformed data sets over real associations (pynetdicom SCU, the bytes of the data set
   sent as they are): every C-STORE gets a status (a failure status for what cannot be
   kept) or the association is aborted; nothing half-kept.
2. Malformed and garbage PDUs over a raw socket: mutated A-ASSOCIATE-RQs, garbage after a
   valid request, random bytes.

After every case the service is still running; at the end a good association stores an
instance, the database passes ``PRAGMA integrity_check`` and ``incoming`` holds nothing
half-received.

Large run: ``AIFI_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -s
tests/integration/test_fuzz_node.py``
"""

from __future__ import annotations

import socket
import sqlite3
import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynetdicom import AE, _config
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from tests.helpers.appliance import ApplianceProcess
from tests.helpers.fuzz_data import BASE, EXAMPLES, malformed_files
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# the end of the file meta group: the node needs it to know what it receives
_META_END = 132 + 12 + struct.unpack("<L", BASE[140:144])[0]


def _assoc_rq(port: int) -> bytes:
    """The bytes of a valid A-ASSOCIATE-RQ to the node (recorded from pynetdicom)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    ae.acse_timeout = 1
    ae.network_timeout = 1
    import threading

    holder: list[bytes] = []

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            head = conn.recv(6)
            length = struct.unpack(">L", head[2:6])[0]
            body = b""
            while len(body) < length:
                body += conn.recv(length - len(body))
            holder.append(head + body)

    thread = threading.Thread(target=accept)
    thread.start()
    ae.associate("127.0.0.1", listener.getsockname()[1], ae_title="AIFI")
    thread.join(10)
    listener.close()
    return holder[0]


def _alive(app: ApplianceProcess) -> None:
    assert app.proc is not None and app.proc.poll() is None, (
        "the service died:\n" + app.log_path.read_text()[-3000:]
    )


def test_malformed_data_and_pdus_never_kill_the_node(tmp_path: Path) -> None:
    app = ApplianceProcess(tmp_path / "app", pacs=None, idle_seconds=3600).start()
    outcomes: Counter[str] = Counter()
    try:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        ae.add_requested_context(Verification)
        for timeout in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, timeout, 10)
        case_file = tmp_path / "case.dcm"

        @FUZZ
        @given(malformed_files())
        def store_malformed(data: bytes) -> None:
            case_file.write_bytes(BASE[:_META_END] + data[_META_END:])
            _config.STORE_SEND_CHUNKED_DATASET = True  # the bytes as they are, not re-encoded
            try:
                assoc = ae.associate("127.0.0.1", app.port, ae_title="AIFI")
                assert assoc.is_established
                try:
                    rsp = assoc.send_c_store(case_file)
                except (ValueError, AttributeError, KeyError, OSError) as exc:
                    outcomes[f"not sendable ({type(exc).__name__})"] += 1
                    rsp = None
                if rsp is not None:
                    status = rsp.get("Status")
                    outcomes["aborted" if status is None else f"0x{int(status):04X}"] += 1
                if assoc.is_established:
                    assoc.release()
            finally:
                _config.STORE_SEND_CHUNKED_DATASET = False
            _alive(app)

        store_malformed()

        rq = _assoc_rq(app.port)

        @FUZZ
        @given(
            st.one_of(
                st.binary(min_size=1, max_size=512).map(lambda b: ("garbage", b)),
                st.tuples(st.integers(0, len(rq) - 1), st.binary(min_size=1, max_size=16)).map(
                    lambda m: ("mutated A-ASSOCIATE-RQ", rq[: m[0]] + m[1] + rq[m[0] + len(m[1]) :])
                ),
                st.binary(min_size=1, max_size=512).map(lambda b: ("garbage after RQ", rq + b)),
                st.integers(0, len(rq) - 1).map(lambda n: ("truncated RQ", rq[:n])),
            )
        )
        def raw_pdus(case: tuple[str, bytes]) -> None:
            kind, payload = case
            with socket.create_connection(("127.0.0.1", app.port), timeout=5) as sock:
                try:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass  # the node closed or reset the connection: fine
            outcomes[f"raw: {kind}"] += 1
            _alive(app)

        raw_pdus()

        # the next good association works and the node kept nothing half-written
        good = tmp_path / "good.dcm"
        good.write_bytes(BASE)
        # at once: connections that sent garbage and closed hold no association slot
        storescu([good], app.port)
        _alive(app)
    finally:
        assert app.stop() == 0
    db = sqlite3.connect(app.data_dir / "aifi.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    finally:
        db.close()
    assert stored >= 1
    # a malformed data set is refused as such (0xA900/0xC000), never an internal error
    assert "0xA700" not in outcomes, outcomes
    # nothing half-received is left (the empty files made ahead stay for the next start)
    assert [p for p in (app.data_dir / "incoming").iterdir() if p.stat().st_size] == []
    print(f"\nnode fuzz: {sum(outcomes.values())} cases: {dict(outcomes)}")
