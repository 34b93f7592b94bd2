"""A DICOM peer on a raw socket, for the acceptor's tests: it sends what a library SCU
never would (a command and its data set in one PDU, a data set split as the test likes,
a store on a context not accepted, a peer that stops mid-instance).

It builds its PDUs with pynetdicom's PDU classes and our framing
(:mod:`aifi_app.dicom_node.upper_layer`).
"""

from __future__ import annotations

import socket
import struct
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom import pdu as pdu_classes
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.sample_studies import ct_series, demo_patient


def command(fields: dict[str, object]) -> bytes:
    ds = Dataset()
    for key, value in fields.items():
        setattr(ds, key, value)
    body = encode(ds, True, True)
    assert body is not None
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">L", len(data) + 2) + bytes((context_id, control)) + data


_open_peers: list[RawPeer] = []


def close_raw_peers() -> None:
    """Close every peer opened so far (a test's fixture calls it after the test)."""
    while _open_peers:
        _open_peers.pop().sock.close()


class RawPeer:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = ul.PduReader(self.sock)
        _open_peers.append(self)

    def associate(
        self,
        contexts: list[tuple[str, list[str]]],
        *,
        max_pdu: int = 0,
        calling: str = "SCU",
    ) -> A_ASSOCIATE:
        """Request ``contexts`` (IDs 1, 3, 5, ...); returns the AC/RJ as a primitive."""
        primitive = A_ASSOCIATE()
        primitive.application_context_name = "1.2.840.10008.3.1.1.1"
        primitive.calling_ae_title = calling
        primitive.called_ae_title = "NODE"
        proposed = []
        for n, (abstract, syntaxes) in enumerate(contexts):
            cx = build_context(abstract, syntaxes)
            cx.context_id = 2 * n + 1
            proposed.append(cx)
        primitive.presentation_context_definition_list = proposed
        length = MaximumLengthNotification()
        length.maximum_length_received = max_pdu
        uid = ImplementationClassUIDNotification()
        uid.implementation_class_uid = "1.2.3.4"
        primitive.user_information = [length, uid]
        rq = pdu_classes.A_ASSOCIATE_RQ()
        rq.from_primitive(primitive)
        self.sock.sendall(rq.encode())
        pdu_type, body = self.reader.read(1 << 20)
        reply = pdu_classes.A_ASSOCIATE_AC() if pdu_type == 2 else pdu_classes.A_ASSOCIATE_RJ()
        assert pdu_type in (2, 3), pdu_type
        reply.decode(self.reader.header() + bytes(body))
        return reply.to_primitive()

    def send(self, *pdvs: bytes) -> None:
        self.sock.sendall(ul.encode_pdu(ul.P_DATA_TF, b"".join(pdvs)))

    def response(self, limit: int = 1 << 20) -> tuple[Dataset, list[int]]:
        """The next DIMSE command from the node, and the lengths of its P-DATA PDUs."""
        command = b""
        lengths = []
        while True:
            pdu_type, body = self.reader.read(limit)
            assert pdu_type == ul.P_DATA_TF, f"PDU type {pdu_type}"
            lengths.append(len(body))
            for _, control, start, end in ul.pdv_items(body):
                command += bytes(body[start:end])
                if control & 0x02:
                    return decode(BytesIO(command), True, True), lengths

    def next_pdu_type(self) -> int:
        return self.reader.read(1 << 20)[0]

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def store_rq(sop_instance_uid: str, message_id: int = 1) -> bytes:
    return command(
        {
            "AffectedSOPClassUID": CTImageStorage,
            "CommandField": 0x0001,
            "MessageID": message_id,
            "Priority": 0,
            "CommandDataSetType": 0x0000,
            "AffectedSOPInstanceUID": sop_instance_uid,
        }
    )


def ct_slice(n: int = 0) -> Dataset:
    return list(ct_series(demo_patient(1), n + 1, size=32))[n]


def data_set(ds: Dataset) -> bytes:
    data = encode(ds, False, True)
    assert data is not None
    return data
