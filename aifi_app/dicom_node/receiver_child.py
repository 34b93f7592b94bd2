"""A receiver process: serves the associations the service hands it, one thread each.

The service (:mod:`aifi_app.dicom_node.receiver_pool`) accepts a connection and passes
its socket over the pipe to this process, which runs the whole association here
(:class:`~aifi_app.dicom_node.storage_acceptor.StorageAssociation`: negotiation, the
calling AE title and address checks, the writes, the checksum, the header checks and
the durable move into the spool), outside the service's interpreter. What only the
service knows it asks over the pipe, and waits for the answer:

- ``refuse``: may a new association begin (the disk floor; the service audits a refusal);
- ``rejected``: an association this process rejected (the service audits it);
- ``store``: an instance durable in the spool; the service checks the disk floor,
  records it in the queue, and answers the C-STORE status, so success is sent only once
  the instance is durable and recorded;
- ``refused``: a C-STORE this process refused (the service logs and audits it);
- ``leave``: the association no longer counts against the limit.

and tells it ``end`` (the association ended). Messages from the service: ``assoc``
(followed by the socket's descriptor), ``reply`` and ``stop``. The process makes its
own empty incoming files (:mod:`aifi_app.dicom_node.spare_files`, named by its pid),
and ends when told to stop or when the service's end of the pipe closes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from pathlib import Path
from typing import Any

from aifi_app.dicom_node.spare_files import SpareFiles
from aifi_app.dicom_node.storage_acceptor import (
    AssociationSlots,
    DataSetStart,
    StorageAssociation,
)
from aifi_app.dicom_node.storage_scp import (
    OUT_OF_RESOURCES,
    NodeConfig,
    StoreRefused,
    acceptor_settings,
    checked_header,
    keep_checked,
)
from aifi_app.dicom_node.tcp_options import set_timeout, tune_socket
from aifi_app.fault_logging import log_fault

log = logging.getLogger(__name__)

_STOP_WAIT_SECONDS = 5.0
_STOP_POLL_SECONDS = 0.05


class ParentGone(Exception):
    """The service's end of the pipe closed: no answer will come."""


class ParentLink:
    """Calls to the service over the pipe, from any of this process's threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._gone = False

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as exc:
            raise ParentGone("the service's pipe is closed") from exc

    def call(self, kind: str, key: int, *args: Any) -> Any:
        """Ask the service; returns its answer (raises :class:`ParentGone`)."""
        request = next(self._ids)
        slot: list[Any] = [threading.Event()]
        with self._lock:
            if self._gone:
                raise ParentGone("the service's pipe is closed")
            self._waiting[request] = slot
        self.send(("call", request, kind, key, *args))
        slot[0].wait()
        if len(slot) < 2:
            raise ParentGone("the service's pipe closed before it answered")
        return slot[1]

    def answer(self, request: int, value: Any) -> None:
        with self._lock:
            slot = self._waiting.pop(request, None)
        if slot is not None:
            slot.append(value)
            slot[0].set()

    def close(self) -> None:
        """No more answers: every waiting call raises :class:`ParentGone`."""
        with self._lock:
            self._gone = True
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot[0].set()


class ChildService:
    """The node's storage service for one association in this process
    (:class:`~aifi_app.dicom_node.storage_acceptor.StorageService`)."""

    def __init__(self, link: ParentLink, key: int, data_dir: Path) -> None:
        self._link = link
        self._key = key
        self._data_dir = data_dir

    def refuse_association(self, calling_ae: str, address: str) -> str | None:
        refused: str | None = self._link.call("refuse", self._key, calling_ae, address)
        return refused

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None:
        self._link.call("rejected", self._key, calling_ae, address, reason, tls_peer)

    def store(
        self,
        path: Path | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        if path is None:
            return self._refused(
                calling_ae, OUT_OF_RESOURCES, "the received data set cannot be written"
            )
        try:
            header = checked_header(path, sop_instance_uid, start)
            kept = keep_checked(self._data_dir, path, header, sop_instance_uid, start, calling_ae)
        except StoreRefused as exc:
            path.unlink(missing_ok=True)
            return self._refused(calling_ae, exc.status, exc.reason)
        except ParentGone:
            raise
        except Exception as exc:
            # never log the exception itself: its message may quote the data
            log_fault(log, "C-STORE from %s failed unexpectedly", exc, calling_ae)
            path.unlink(missing_ok=True)
            return self._refused(
                calling_ae, OUT_OF_RESOURCES, f"internal error ({type(exc).__name__})"
            )
        status: int = self._link.call("store", self._key, kept)
        return status

    def _refused(self, calling_ae: str, status: int, reason: str) -> int:
        answered: int = self._link.call("refused", self._key, calling_ae, status, reason)
        return answered


class ParentSlots(AssociationSlots):
    """The association's slot, counted by the service: it entered when the service handed
    the connection over (``over_limit`` is the service's answer then); leaving tells it.
    This process's own count (for its spare files' quiet time) is kept as well."""

    def __init__(
        self, link: ParentLink, key: int, over_limit: bool, local: AssociationSlots
    ) -> None:
        super().__init__(local.limit)
        self._link = link
        self._key = key
        self._over = over_limit
        self._local = local

    def enter(self) -> None:
        self._local.enter()

    def leave(self) -> None:
        self._local.leave()
        with contextlib.suppress(ParentGone):
            self._link.call("leave", self._key)

    @property
    def over_limit(self) -> bool:
        return self._over


class Receiver:
    """This process's side: reads the service's messages, runs the associations."""

    def __init__(self, conn: Connection, config: NodeConfig, data_dir: Path, spare: int) -> None:
        self._conn = conn
        self._data_dir = data_dir
        self._link = ParentLink(conn)
        self._local = AssociationSlots(0)
        incoming = data_dir / "incoming"
        opened = time.monotonic()
        self._spare = SpareFiles(
            incoming,
            keep=spare,
            quiet_seconds=lambda: min(self._local.quiet_seconds, time.monotonic() - opened),
        )
        self._settings = acceptor_settings(config, incoming, self._spare)
        self._lock = threading.Lock()
        self._open: dict[threading.Thread, socket.socket] = {}

    def run(self) -> None:
        """Serve until told to stop (then cut the associations, and answer their last
        requests until they ended) or until the service's end of the pipe closes."""
        self._spare.start()
        self._link.send(("ready",))
        stopping = False
        try:
            while not (stopping and self._open_count() == 0):
                if stopping and not self._conn.poll(_STOP_POLL_SECONDS):
                    continue
                message = self._conn.recv()
                kind = message[0]
                if kind == "reply":
                    self._link.answer(message[1], message[2])
                elif kind == "assoc":
                    fd = recv_handle(self._conn)
                    self._begin(fd, *message[1:])
                    if stopping:  # handed over as the stop was sent (the pool's race)
                        self._cut()
                elif kind == "stop":
                    stopping = True
                    self._cut()
        except (EOFError, OSError):
            log.warning("the service's pipe closed: this receiver process ends")
        finally:
            self._link.close()
            self._cut()
            self._join()
            # (its thread runs at a low priority: on a busy machine it may take a while
            # to see the stop; it is a daemon thread, the process ends without it)
            self._spare.stop(wait_seconds=0.2)

    def _begin(self, fd: int, key: int, address: str, over_limit: bool) -> None:
        sock = socket.socket(fileno=fd)
        thread = threading.Thread(
            target=self._serve, args=(sock, key, address, over_limit), name="DicomAssociation"
        )
        thread.daemon = True
        with self._lock:
            self._open[thread] = sock
        thread.start()

    def _serve(self, sock: socket.socket, key: int, address: str, over_limit: bool) -> None:
        try:
            set_timeout(sock, self._settings.timeout)
            tune_socket(sock)
            StorageAssociation(
                sock,
                address,
                self._settings,
                ChildService(self._link, key, self._data_dir),
                ParentSlots(self._link, key, over_limit, self._local),
            ).run()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.pop(threading.current_thread(), None)
            with contextlib.suppress(ParentGone):
                self._link.send(("end", key))

    def _open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def _cut(self) -> None:
        """Cut the associations still open (their threads end and tell the service)."""
        with self._lock:
            open_now = list(self._open.values())
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _join(self) -> None:
        with self._lock:
            threads = list(self._open)
        for thread in threads:
            thread.join(_STOP_WAIT_SECONDS)


def child_main(conn: Connection, config: NodeConfig, data_dir: str, spare: int) -> None:
    """The receiver process's entry point (started by the service with
    :func:`~aifi_app.child_processes.child_process`: its records go to the service's log)."""
    Receiver(conn, config, Path(data_dir), spare).run()
