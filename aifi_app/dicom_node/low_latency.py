"""pynetdicom's acceptor without its polling sleeps, and sockets that do not wait on Nagle.

pynetdicom runs each association as two polling loops: the upper-layer reactor
(``DULServiceProvider.run_reactor``) sleeps 1 ms whenever the socket has nothing to read,
and the acceptor's loop (``Association._run_reactor``) sleeps 1 ms before every look at
its message queue. A C-STORE waits on both several times (the command, each data PDU, the
response), and it reads the socket 4 KiB at a time. Measured on a 500-slice CT, most of
the receive time was those sleeps and reads, not our handler.

Here the same loops wait on what they are waiting for instead: the upper layer blocks in
``select`` on the peer's socket and a wake-up pipe that every locally sent primitive
pokes, and the acceptor blocks on its message queue. A PDU is read with ``recv_into`` into
one buffer. Accepted sockets get TCP_NODELAY, and TCP_QUICKACK is re-armed before every
read, so that a peer that keeps Nagle's algorithm on (DCMTK and Orthanc do unless told
otherwise) is not held up by our delayed acknowledgements.

The two loops are copies of pynetdicom 3.0's with only the waiting changed; the test
``tests/dicom_node/test_low_latency.py`` pins the upstream source they were copied from,
so a pynetdicom upgrade that changes them fails that test instead of the node.
Everything here runs on pynetdicom's association threads.

DICOM TLS: a TLS listener wraps each accepted socket without its handshake, which then
runs on the association's own thread with the network timeout (pynetdicom's server would
run it on the accepting thread, where one silent client holds up every other); a failed
handshake is reported through the server's ``on_tls_refused`` hook. Waiting for data on a
TLS socket must look at ``SSLSocket.pending()`` first: bytes already decrypted into the
TLS buffer do not make the socket readable for ``select``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from aifi_app.net.tls import describe_tls_error, peer_certificate_subject

log = logging.getLogger(__name__)

# Upper bound on one blocking wait: timers (ARTIM, the network idle timer) are checked at
# least this often, and a wake-up that was somehow missed costs no more than this.
MAX_WAIT_SECONDS = 0.05

_HAS_QUICKACK = hasattr(socket, "TCP_QUICKACK")


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (our writes leave at once) and TCP_QUICKACK (we acknowledge at once).

    Quick-ack mode does not last on Linux: re-arm it before each read (:func:`quickack`).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack(sock)


def quickack(sock: socket.socket) -> None:
    """Ask the kernel to acknowledge the next segments at once (Linux; no-op elsewhere)."""
    if _HAS_QUICKACK:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def wait_readable(sock: socket.socket, others: list[Any], timeout: float) -> list[Any]:
    """Wait until ``sock`` (or one of ``others``) has something to read; returns those ready.

    A TLS socket may hold decrypted bytes that ``select`` cannot see (the kernel's buffer
    is empty, the TLS layer's is not): those make it ready at once.
    """
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return [sock]
    ready, _, _ = select.select([sock, *others], [], [], timeout)
    return list(ready)


def bound_send_time(sock: socket.socket, seconds: float | None) -> None:
    """Make a write that the peer leaves blocked give up after ``seconds`` (SO_SNDTIMEO).

    pynetdicom writes on a blocking socket without a timeout: a peer that accepts the
    association and then stops reading would block the upper layer's thread in ``send``
    for ever, and with it the association's abort after a DIMSE timeout (it waits for
    that thread). With the bound, the write fails, pynetdicom treats it as the transport
    closing (Evt17), and the association ends.
    """
    if seconds is None or seconds <= 0:
        return
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class LowLatencySocket(AssociationSocket):
    """An association socket that reads whole PDUs with ``recv_into``."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer only when the peer closed the connection)."""
        sock = cast(socket.socket, self.socket)
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        nr_read = 0
        while nr_read < nr_bytes:
            quickack(sock)
            n = sock.recv_into(view[nr_read:], min(nr_bytes - nr_read, 1 << 20))
            if not n:
                del view
                del buffer[nr_read:]
                return buffer
            nr_read += n
        return buffer


class _NotifyingQueue(queue.Queue[Any]):
    """A queue that calls ``on_put`` after each put (from the putting thread)."""

    def __init__(self, on_put: Callable[[], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._on_put()


class LowLatencyDUL(DULServiceProvider):
    """The upper-layer reactor, waiting in ``select`` instead of sleeping 1 ms at a time."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        # A release or abort request for the association's loop: let it look at once,
        # rather than after its wait on the message queue runs out.
        self.to_user_queue = _NotifyingQueue(self._nudge_association)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _nudge_association(self) -> None:
        if self.assoc.is_acceptor:
            self.assoc.dimse.msg_queue.put((None, None))

    def wake(self) -> None:
        """Interrupt a wait of the reactor; safe from any thread."""
        with contextlib.suppress(OSError):  # full (already woken) or closed (finished)
            self._wake_w.send(b"\0")

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self.wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def _wait_for_work(self) -> None:
        """Block until the peer sent something, a primitive was queued, or the time is up."""
        assoc_sock = self.socket
        raw = assoc_sock.socket if assoc_sock is not None else None
        connected = getattr(assoc_sock, "_is_connected", False)
        if raw is None or not connected or raw.fileno() < 0:
            # not connected yet, or closed: nothing to select on
            self._wake_r_wait(0.001)
            return
        try:
            ready = wait_readable(raw, [self._wake_r], MAX_WAIT_SECONDS)
        except (OSError, ValueError):
            return  # the socket went away; the reactor notices on its next look
        if self._wake_r in ready:
            self._drain_wake()

    def _wake_r_wait(self, timeout: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
            if ready:
                self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def run_reactor(self) -> None:
        """pynetdicom 3.0's ``DULServiceProvider.run_reactor``; only the wait differs."""
        try:
            self._run_reactor_loop()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _run_reactor_loop(self) -> None:
        self._idle_timer.start()
        self.socket = cast("AssociationSocket", self.socket)
        sleep = False

        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True

            if sleep:
                self._wait_for_work()

            if self._kill_thread:
                break

            if self.artim_timer.expired:
                self.event_queue.put("Evt18")

            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                log.error("Exception in DUL.run(), aborting association")
                log.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return

            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue

            self.state_machine.do_action(event)
            sleep = False
            if event == "Evt17":
                self._peer_closed_before_request()

    def _peer_closed_before_request(self) -> None:
        """End the wait of an acceptor whose peer closed before its A-ASSOCIATE-RQ came.

        pynetdicom's acceptor waits up to the ACSE timeout for the request even when the
        connection is already gone, and holds one of the node's association slots all that
        while: a few connections that send garbage and close (the fuzz campaign's raw
        cases) kept modalities out ("local limit exceeded") for a minute. ``None`` is what
        that wait returns on its timeout; the association then ends at once.
        """
        assoc = self.assoc
        if (
            assoc.is_acceptor
            and getattr(assoc.requestor, "primitive", None) is None
            and self.to_user_queue.empty()
        ):
            cast(Any, self.to_user_queue).put(None)


CallingAddressCheck = Callable[[str, str], str | None]
"""(calling AE title, peer IP address) -> why the pair is refused, or None to go on."""


class _AddressCheckingACSE(ACSE):
    """pynetdicom's ACSE, refusing a calling AE title that calls from an address not its own.

    The check runs before pynetdicom's own (calling AE title allow-list, called AE title,
    association limit); a refusal is an A-ASSOCIATE-RJ "calling AE title not recognized",
    and the reason is left on the association (``refusal_reason``) for the audit entry.
    """

    def _negotiate_as_acceptor(self) -> None:
        check = cast("CallingAddressCheck | None", getattr(self.assoc, "address_check", None))
        primitive = self.requestor.primitive
        if check is not None and primitive is not None:
            calling = str(primitive.calling_ae_title).strip()
            reason = check(calling, self.requestor.address)
            if reason is not None:
                self.requestor.ae_title = primitive.calling_ae_title
                cast(Any, self.assoc).refusal_reason = reason
                self.send_reject(0x01, 0x01, 0x03)
                evt.trigger(self.assoc, evt.EVT_REJECTED, {})
                self.assoc.kill()
                return
        super()._negotiate_as_acceptor()


class LowLatencyAssociation(Association):
    """An association whose acceptor loop blocks on its message queue instead of polling."""

    def __init__(self, ae: Any, mode: str) -> None:
        super().__init__(ae, mode)
        self.dul = LowLatencyDUL(self)
        self.acse = _AddressCheckingACSE(self)
        self.address_check: CallingAddressCheck | None = None
        self.refusal_reason: str | None = None
        self.tls_peer: str | None = None
        """None on plain TCP; over TLS the peer certificate's common name ('' for none)."""
        # the timeouts live in the DUL's timers: set them again on the new one
        self.acse_timeout = self.ae.acse_timeout
        self.network_timeout = self.ae.network_timeout

    def _next_message(self) -> tuple[Any, Any]:
        try:
            return cast(tuple[Any, Any], self.dimse.msg_queue.get(timeout=MAX_WAIT_SECONDS))
        except queue.Empty:
            return None, None

    def _run_reactor(self) -> None:
        """pynetdicom 3.0's ``Association._run_reactor``; only the wait differs."""
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self._next_message()
            if msg:
                self._serve_request(msg, cast(int, context_id))

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                log.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log_msg = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    log_msg += " (A-P-ABORT)"
                log.info(log_msg)
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                log.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()

                self.kill()
                return


TlsRefusedHook = Callable[[str, str], None]
"""(peer IP address, reason in words) for a TLS handshake our listener refused."""


class LowLatencyServer(ThreadedAssociationServer):
    """pynetdicom's threaded server; a TLS listener's handshake moves to the handler thread."""

    on_tls_refused: TlsRefusedHook | None = None
    address_check: CallingAddressCheck | None = None

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock = cast(socket.socket, self.socket)
        client, address = sock.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address


class LowLatencyRequestHandler(RequestHandler):
    """pynetdicom's request handler, making :class:`LowLatencyAssociation` acceptors."""

    server: LowLatencyServer

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket) and not self._tls_handshake(self.request):
            return
        super().handle()

    def _tls_handshake(self, sock: ssl.SSLSocket) -> bool:
        """Run the TLS handshake within the network timeout; report and close on failure."""
        try:
            sock.settimeout(self.ae.network_timeout)
            sock.do_handshake()
            sock.settimeout(None)
        except OSError as exc:  # ssl.SSLError, a timeout or a reset
            reason = describe_tls_error(exc)
            log.warning("TLS handshake from %s refused: %s", self.client_address[0], reason)
            hook = self.server.on_tls_refused
            if hook is not None:
                hook(str(self.client_address[0]), reason)
            with contextlib.suppress(OSError):
                sock.close()
            return False
        return True

    def _create_association(self) -> Association:
        """pynetdicom 3.0's ``RequestHandler._create_association`` with our classes."""
        tune_socket(self.request)
        bound_send_time(self.request, self.ae.network_timeout)
        assoc = LowLatencyAssociation(self.ae, MODE_ACCEPTOR)
        assoc._server = self.server
        assoc.address_check = self.server.address_check
        if isinstance(self.request, ssl.SSLSocket):
            assoc.tls_peer = peer_certificate_subject(self.request)

        timestamp = datetime.strftime(datetime.now(), "%Y%m%d%H%M%S")
        assoc.name = f"AcceptorThread@{timestamp}"

        sock = LowLatencySocket(assoc, client_socket=self.request)
        assoc.set_socket(sock)

        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = deepcopy(self.server.contexts)

        assoc.requestor.address_info = self.remote

        for event in self.server._handlers:
            if event.is_intervention and self.server._handlers[event]:
                assoc.bind(event, *self.server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler in self.server._handlers[event]:
                    handler = cast(evt._HandlerBase, handler)
                    assoc.bind(event, handler[0], handler[1])

        return assoc


def start_server(
    ae: Any,
    address: tuple[str, int],
    handlers: list[Any],
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_tls_refused: TlsRefusedHook | None = None,
    address_check: CallingAddressCheck | None = None,
) -> LowLatencyServer:
    """Start ``ae``'s association server with the low-latency acceptor, on its own thread.

    The same as ``ae.start_server(address, block=False, evt_handlers=handlers,
    ssl_context=ssl_context)``, through pynetdicom's public ``make_server`` and its
    ``request_handler`` parameter. ``on_tls_refused`` hears of failed TLS handshakes;
    ``address_check`` may refuse a calling AE title calling from the wrong address.
    """
    server = cast(
        LowLatencyServer,
        ae.make_server(
            address,
            evt_handlers=handlers,
            ssl_context=ssl_context,
            server_class=LowLatencyServer,
            request_handler=LowLatencyRequestHandler,
        ),
    )
    server.on_tls_refused = on_tls_refused
    server.address_check = address_check
    thread = threading.Thread(
        target=server.serve_forever, name=f"AcceptorServer@{address[1]}", daemon=True
    )
    thread.start()
    ae._servers.append(server)
    return server


class RequestorOnly(Association):
    """A requestor that serves no requests: its loop never takes DIMSE messages.

    pynetdicom's association loop takes any DIMSE message off the queue unless a
    ``send_*`` call has paused it, and that pause has a window: a loop that had just
    passed its checkpoint still takes one message. With responses coming back at once
    (quick-ack) on a busy machine it took C-STORE responses meant for ``send_c_store``
    ("Received unexpected C-STORE service message", then a DIMSE timeout and a failed
    association). Our SCU never plays an SCP role, so every DIMSE message is a response
    that the waiting ``send_*`` call takes itself. The rest is pynetdicom 3.0's
    ``Association._run_reactor`` (release, abort, idle timeout), unchanged.
    """

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            time.sleep(0.001)
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                log.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log.info("Association Aborted")
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                log.error("Network timeout reached")
                self.abort()
                self.kill()
                return


class LowLatencyAE(AE):
    """An AE for our SCU: the low-latency socket, and a requestor loop that cannot take
    a response from ``send_c_store`` (:class:`RequestorOnly`).

    Not the low-latency upper layer: it makes responses arrive sooner still, and the
    requestor gains little from it next to the socket's quick-ack.
    """

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> AssociationSocket:
        """pynetdicom 3.0's ``ApplicationEntity._create_socket`` with our socket.

        ``associate`` calls it on the association it has just made, before starting it:
        the one place to make that association a :class:`RequestorOnly`.
        """
        assoc.__class__ = RequestorOnly
        sock = LowLatencySocket(assoc, address=address)
        if sock.socket is not None:
            tune_socket(sock.socket)
            bound_send_time(sock.socket, self.network_timeout)
        sock.tls_args = tls_args
        return sock


def requestor_handlers() -> list[Any]:
    """Event handlers that tune an SCU's socket: TCP_NODELAY once, TCP_QUICKACK per PDU.

    pynetdicom's public events give us the socket without subclassing the requestor:
    ``EVT_CONN_OPEN`` once connected, ``EVT_DATA_RECV`` after each PDU read.
    """

    def raw_socket(event: Any) -> socket.socket | None:
        assoc_sock = getattr(event.assoc.dul, "socket", None)
        raw = getattr(assoc_sock, "socket", None)
        return raw if isinstance(raw, socket.socket) else None

    def on_open(event: Any) -> None:
        raw = raw_socket(event)
        if raw is not None:
            tune_socket(raw)

    def on_data(event: Any) -> None:
        raw = raw_socket(event)
        if raw is not None:
            quickack(raw)

    return [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_DATA_RECV, on_data)]


__all__ = [
    "LowLatencyAE",
    "LowLatencyAssociation",
    "LowLatencyDUL",
    "LowLatencyRequestHandler",
    "LowLatencyServer",
    "LowLatencySocket",
    "RequestorOnly",
    "requestor_handlers",
    "start_server",
    "tune_socket",
    "wait_readable",
]
