"""The plain A-ASSOCIATE-RQ negotiated directly gives what pynetdicom gives, byte for byte;
anything else is left to pynetdicom (:mod:`aifi_app.dicom_node.plain_negotiation`)."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
from pynetdicom import StoragePresentationContexts
from pynetdicom import pdu as pdu_classes
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.plain_negotiation import negotiate_plain
from aifi_app.dicom_node.storage_acceptor import (
    AcceptorSettings,
    negotiate,
    negotiate_with_pynetdicom,
    supported_contexts,
)
from aifi_app.dicom_node.transfer_syntaxes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from aifi_app.sample_studies import ct_series, demo_patient, write
from tests.helpers.tools import STORESCU, dcmtk_env

EXPLICIT, IMPLICIT, BIG = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
UNKNOWN_CLASS = "1.2.826.0.1.3680043.9.9999.77"


def _settings(tmp_path: Path) -> AcceptorSettings:
    syntaxes = [str(ts) for ts in ACCEPTED_TRANSFER_SYNTAXES]
    contexts = {str(Verification): syntaxes, **dict.fromkeys(STORAGE_SOP_CLASSES, syntaxes)}
    return AcceptorSettings(
        ae_title="AIFI",
        max_pdu_size=131072,
        timeout=5,
        allowed_calling_ae_titles=frozenset({"STORESCU"}),
        supported_contexts=supported_contexts(contexts),
        implementation_class_uid="1.2.826.0.1.3680043.9.9999.1",
        implementation_version_name="AIFI_TEST",
        incoming=tmp_path,
    )


def _request(
    contexts: list[tuple[str, list[str]]],
    *,
    calling: str = "STORESCU",
    extra: tuple[object, ...] = (),
    max_length: int | None = 16384,
) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "AIFI"
    items: list[PresentationContext] = []
    for n, (abstract, syntaxes) in enumerate(contexts):
        cx = build_context(abstract, syntaxes)
        cx.context_id = 2 * n + 1
        items.append(cx)
    primitive.presentation_context_definition_list = items
    user: list[object] = []
    if max_length is not None:
        length = MaximumLengthNotification()
        length.maximum_length_received = max_length
        user.append(length)
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.276.0.7230010.3.0.3.6.8"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "OFFIS_DCMTK_368"
    primitive.user_information = [*user, class_uid, version, *extra]
    rq = pdu_classes.A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return bytes(rq.encode())


STORESCU_LIKE = [
    (cx.abstract_syntax, [EXPLICIT, BIG, IMPLICIT]) for cx in StoragePresentationContexts
]


@pytest.mark.parametrize(
    "contexts",
    [
        pytest.param(STORESCU_LIKE[:127], id="storescu-default-127"),
        pytest.param([(str(Verification), [IMPLICIT])], id="echo"),
        pytest.param([(UNKNOWN_CLASS, [EXPLICIT])], id="abstract-syntax-not-supported"),
        pytest.param([(STORAGE_SOP_CLASSES[0], ["1.2.3.4.5"])], id="no-transfer-syntax-of-ours"),
        # ours in our order, whatever the requestor's order
        pytest.param([(STORAGE_SOP_CLASSES[0], [IMPLICIT, EXPLICIT])], id="our-order"),
        pytest.param(
            [(UNKNOWN_CLASS, [EXPLICIT]), (STORAGE_SOP_CLASSES[1], [IMPLICIT])], id="mixed"
        ),
    ],
)
def test_same_outcome_and_accept_as_pynetdicom(
    tmp_path: Path, contexts: list[tuple[str, list[str]]]
) -> None:
    settings = _settings(tmp_path)
    request = _request(contexts)
    plain = negotiate(request, settings)
    assert plain == negotiate_with_pynetdicom(request, settings)
    # and it did come by the plain way
    assert negotiate_plain(
        request,
        settings.supported_by_abstract_syntax,
        max_pdu_size=131072,
        implementation_class_uid=settings.implementation_class_uid,
        implementation_version_name=settings.implementation_version_name,
    )


def _role() -> SCP_SCU_RoleSelectionNegotiation:
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = STORAGE_SOP_CLASSES[0]
    role.scu_role = True
    role.scp_role = True
    return role


def _identity() -> UserIdentityNegotiation:
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 1
    identity.primary_field = b"user"
    return identity


def _window() -> AsynchronousOperationsWindowNegotiation:
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 2
    window.maximum_number_operations_performed = 2
    return window


def _plain(request: bytes, tmp_path: Path) -> object:
    settings = _settings(tmp_path)
    return negotiate_plain(
        request,
        settings.supported_by_abstract_syntax,
        max_pdu_size=131072,
        implementation_class_uid="1.2.3",
        implementation_version_name="X",
    )


def test_anything_beyond_the_plain_request_is_left_to_pynetdicom(tmp_path: Path) -> None:
    one = [(STORAGE_SOP_CLASSES[0], [EXPLICIT])]
    assert _plain(_request(one), tmp_path) is not None
    for extra in (_role(), _identity(), _window()):
        request = _request(one, extra=(extra,))
        assert _plain(request, tmp_path) is None
        # pynetdicom negotiates them as before (roles answered, for one)
        assert negotiate(request, _settings(tmp_path)).accepted == {1: EXPLICIT}
    assert _plain(_request(one, max_length=None), tmp_path) is None
    request = _request(one)
    assert _plain(request[:-3], tmp_path) is None  # cut short
    bad_uid = request.replace(STORAGE_SOP_CLASSES[0].encode(), b"1.2.x" + b"1" * 20, 1)
    assert _plain(bad_uid[:2] + request[2:6] + bad_uid[6:], tmp_path) is None
    even = bytearray(request)
    first_context = 74 + 4 + 21  # after the fixed fields and the application context
    assert even[first_context] == 0x20 and even[first_context + 4] == 1
    even[first_context + 4] = 2  # context ID 2
    assert _plain(bytes(even), tmp_path) is None
    assert _plain(b"\x02" + request[1:], tmp_path) is None  # not an A-ASSOCIATE-RQ


def test_dcmtk_storescu_request_is_plain(tmp_path: Path) -> None:
    """The request DCMTK's storescu really sends (captured on a socket) goes the plain way."""
    server = socket.create_server(("127.0.0.1", 0))
    captured: list[bytes] = []

    def capture() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            reader = ul.PduReader(conn)
            _, body = reader.read(ul.ASSOCIATION_PDU_LIMIT)
            captured.append(reader.header() + bytes(body))

    thread = threading.Thread(target=capture)
    thread.start()
    sample = write(next(ct_series(demo_patient(1), 1, size=16)), tmp_path / "study")
    subprocess.run(
        [
            *(str(STORESCU), "-aet", "STORESCU", "-aec", "AIFI", "-to", "5"),
            *("127.0.0.1", str(server.getsockname()[1]), str(sample)),
        ],
        env=dcmtk_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    thread.join(10)
    server.close()
    assert captured
    settings = _settings(tmp_path)
    plain = negotiate(captured[0], settings)
    assert plain == negotiate_with_pynetdicom(captured[0], settings)
    assert _plain(captured[0], tmp_path) is not None
    assert plain.calling_ae == "STORESCU" and len(plain.accepted) > 100
