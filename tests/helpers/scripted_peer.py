"""A storage peer on a raw socket, for what no well-behaved SCP does (one association).

pynetdicom builds and reads its PDUs; the script decides what it sends:

- ``"oversized"``: accepts, reads a whole C-STORE, then answers with a P-DATA-TF larger
  than the maximum PDU length the requestor announced;
- ``"silent_release"``: stores every instance (success), and never answers the
  A-RELEASE-RQ (the connection stays open until :meth:`stop`);
- ``"release_collision"``: stores every instance, and answers an A-RELEASE-RQ with one of
  its own (both sides release at once), then with its A-RELEASE-RP once it has ours.

``received`` lists the PDU types that reached it, in order.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from io import BytesIO

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

OUR_MAX_PDU = 16384


class ScriptedPeer:
    def __init__(self, script: str, ae_title: str = "SCRIPTED") -> None:
        if script not in ("oversized", "silent_release", "release_collision"):
            raise ValueError(script)
        self.script = script
        self.ae_title = ae_title
        self.received: list[int] = []
        self.stored: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self._context = 1
        self._thread = threading.Thread(target=self._run, name="ScriptedPeer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        conn.settimeout(30)
        with contextlib.suppress(OSError, ConnectionError):
            self._serve(conn)
        self._stop.wait(30)

    def _read_pdu(self, conn: socket.socket) -> tuple[int, bytes]:
        head = _read(conn, 6)
        pdu_type, _, length = struct.unpack(">BBL", head)
        self.received.append(pdu_type)
        return pdu_type, head + _read(conn, length)

    def _serve(self, conn: socket.socket) -> None:
        _, pdu = self._read_pdu(conn)
        rq = A_ASSOCIATE_RQ()
        rq.decode(pdu)
        conn.sendall(_accept_all(rq))
        while not self._stop.is_set():
            pdu_type, pdu = self._read_pdu(conn)
            if pdu_type == 0x05 and self.script == "release_collision":
                conn.sendall(bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
                if self._read_pdu(conn)[0] == 0x06:
                    conn.sendall(bytes([0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
                continue
            if pdu_type != 0x04:
                continue  # a release (left unanswered) or an abort: wait for stop
            command = self._whole_store(conn, pdu)
            if self.script == "oversized":
                conn.sendall(_pdata(self._context, 0x03, b"\0" * (OUR_MAX_PDU * 16)))
                continue
            self.stored.append(str(command.AffectedSOPInstanceUID))
            conn.sendall(_store_response(command, self._context))

    def _whole_store(self, conn: socket.socket, first: bytes) -> object:
        """Read PDUs until the data set's last fragment; returns the command set."""
        command = bytearray()
        pdu = first
        while True:
            pdata = P_DATA_TF()
            pdata.decode(pdu)
            for pdv in pdata.presentation_data_value_items:
                value = pdv.presentation_data_value
                self._context = int(pdv.context_id)
                if value[0] & 1:
                    command += value[1:]
                elif value[0] & 2:
                    return decode(BytesIO(bytes(command)), True, True)
            _, pdu = self._read_pdu(conn)


def _read(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        got = conn.recv(n - len(data))
        if not got:
            raise ConnectionError("closed")
        data += got
    return bytes(data)


def _accept_all(rq: A_ASSOCIATE_RQ) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = rq.application_context_name
    primitive.called_ae_title = rq.called_ae_title
    primitive.calling_ae_title = rq.calling_ae_title
    results = []
    for item in rq.presentation_context:
        context = PresentationContext()
        context.context_id = item.context_id
        context.abstract_syntax = item.abstract_syntax
        context.transfer_syntax = [item.transfer_syntax[0]]
        context.result = 0
        results.append(context)
    primitive.presentation_context_definition_results_list = results
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = OUR_MAX_PDU
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    primitive.user_information = [max_length, class_uid]
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return bytes(ac.encode())


def _store_response(command: object, context_id: int) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = command.MessageID  # type: ignore[attr-defined]
    rsp.AffectedSOPClassUID = command.AffectedSOPClassUID  # type: ignore[attr-defined]
    rsp.AffectedSOPInstanceUID = command.AffectedSOPInstanceUID  # type: ignore[attr-defined]
    rsp.Status = 0x0000
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    return _pdata(context_id, 0x03, encode(message.command_set, True, True) or b"")


def _pdata(context_id: int, flags: int, value: bytes) -> bytes:
    return (
        struct.pack(">BBLLBB", 0x04, 0, len(value) + 6, len(value) + 2, context_id, flags) + value
    )
