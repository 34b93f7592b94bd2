"""A receiver process: serves the associations the service hands it, one thread each.

The service (:mod:`aifi_app.dicom_node.receiver_pool`) accepts a connection and passes
its socket over the pipe to this process, which runs the whole association here
(:class:`~aifi_app.dicom_node.storage_acceptor.StorageAssociation`: negotiation, the
calling AE title and address checks, the writes, the checksum), outside the service's
interpreter, and keeps each instance itself
(:class:`~aifi_app.dicom_node.instance_keeper.InstanceKeeper`: the header checks, the disk
floor, the durable move into the spool, the record in the queue database, which SQLite in
WAL mode lets several processes write; a refusal is logged and audited here). Success is
answered once the instance is recorded, as in the service.

With the socket comes a pipe of the association's own (:class:`AssociationLink`). On it
the association tells the service, without waiting:

- ``stored``: an instance of this study (its queue id) was recorded and answered (the
  service holds the study's idle timer while the association is open, and wakes its
  workers); said when the association's study changes, not for every instance;
- ``end``: the association ended (before it closes that pipe);

and asks it, waiting for the answer, what only the service knows:

- ``refuse``: may a new association begin (the disk floor; the service audits a refusal);
- ``rejected``: an association this process rejected (the service audits it);
- ``leave``: the association no longer counts against the limit.

The round trip a store took when the service recorded it (the store's call, the
service's record, its answer: 1.3 ms at the median with four associations at once on the
busy two-core machine, 1.8-1.9 ms through one pipe per process) is no longer in each
instance's path. The process's own pipe carries ``ready`` to the service, and ``assoc``
(followed by the socket's and the association pipe's descriptors) and ``stop`` from it.
The process makes its own empty incoming files (:mod:`aifi_app.dicom_node.spare_files`,
named by its pid), and ends when told to stop or when the service's end of its pipe
closes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from pathlib import Path
from typing import Any

from aifi_app import heap_trim
from aifi_app.dicom_node.instance_keeper import InstanceKeeper, KeepingRules
from aifi_app.dicom_node.spare_files import SpareFiles
from aifi_app.dicom_node.spool import StrPath
from aifi_app.dicom_node.storage_acceptor import (
    AssociationSlots,
    DataSetStart,
    StorageAssociation,
)
from aifi_app.dicom_node.storage_scp import NodeConfig, acceptor_settings
from aifi_app.dicom_node.tcp_options import set_timeout, tune_socket
from aifi_app.store.database import Database

log = logging.getLogger(__name__)

_STOP_WAIT_SECONDS = 5.0
_STOP_POLL_SECONDS = 0.05


class ParentGone(Exception):
    """The service's end of the pipe closed: no answer will come."""


class AssociationLink:
    """One association's calls to the service, over the association's own pipe (only
    that association's thread uses it: one call at a time)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError) as exc:
            raise ParentGone("the service's pipe is closed") from exc

    def call(self, kind: str, *args: Any) -> Any:
        """Ask the service; returns its answer (raises :class:`ParentGone`)."""
        self.send(("call", kind, *args))
        try:
            return self._conn.recv()
        except (EOFError, OSError, ValueError) as exc:
            raise ParentGone("the service's pipe closed before it answered") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()


class ChildService:
    """The node's storage service for one association in this process
    (:class:`~aifi_app.dicom_node.storage_acceptor.StorageService`)."""

    def __init__(self, link: AssociationLink, keeper: InstanceKeeper) -> None:
        self._link = link
        self._keeper = keeper
        self._told: int | None = None
        """The study the service heard of last from this association."""

    def refuse_association(self, calling_ae: str, address: str) -> str | None:
        refused: str | None = self._link.call("refuse", calling_ae, address)
        return refused

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None:
        self._link.call("rejected", calling_ae, address, reason, tls_peer)

    def store(
        self,
        path: StrPath | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        status, study_id = self._keeper.store(path, calling_ae, sop_instance_uid, start)
        if study_id is not None and study_id != self._told:
            # recorded: the service's part only hastens its study's completion (once a
            # study and association: the next slices of a CT tell it nothing new), and a
            # service that is gone (its pipe closed) ends this process soon anyway
            self._told = study_id
            with contextlib.suppress(ParentGone):
                self._link.send(("stored", study_id))
        return status


class ParentSlots(AssociationSlots):
    """The association's slot, counted by the service: it entered when the service handed
    the connection over (``over_limit`` is the service's answer then); leaving tells it.
    This process's own count (for its spare files' quiet time) is kept as well."""

    def __init__(self, link: AssociationLink, over_limit: bool, local: AssociationSlots) -> None:
        super().__init__(local.limit)
        self._link = link
        self._over = over_limit
        self._local = local

    def enter(self) -> None:
        self._local.enter()

    def leave(self) -> None:
        self._local.leave()
        with contextlib.suppress(ParentGone):
            self._link.call("leave")

    @property
    def over_limit(self) -> bool:
        return self._over


class Receiver:
    """This process's side: reads the service's messages, runs the associations."""

    def __init__(
        self,
        conn: Connection,
        config: NodeConfig,
        data_dir: Path,
        spare: int,
        *,
        keeper: InstanceKeeper,
    ) -> None:
        self._conn = conn
        self._keeper = keeper
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
        """Serve until told to stop (then cut the associations and wait until they
        ended: each asks its last on its own pipe) or until the service's end of the
        pipe closes."""
        self._spare.start()
        self._conn.send(("ready",))
        stopping = False
        try:
            while True:
                if stopping:
                    # the count before the look at the pipe: a connection handed over
                    # before the last association ended is in the pipe by then, so it is
                    # read and cut (not left in the pipe until the service closes it)
                    ended = self._open_count() == 0
                    if not self._conn.poll(0 if ended else _STOP_POLL_SECONDS):
                        if ended:
                            break
                        continue
                message = self._conn.recv()
                kind = message[0]
                if kind == "assoc":
                    fd = recv_handle(self._conn)
                    link = AssociationLink(Connection(recv_handle(self._conn)))
                    self._begin(fd, link, *message[1:])
                    if stopping:  # handed over as the stop was sent (the pool's race)
                        self._cut()
                elif kind == "stop":
                    stopping = True
                    self._cut()
        except (EOFError, OSError):
            log.warning("the service's pipe closed: this receiver process ends")
        finally:
            self._cut()
            self._join()
            # (its thread runs at a low priority: on a busy machine it may take a while
            # to see the stop; it is a daemon thread, the process ends without it)
            self._spare.stop(wait_seconds=0.2)
            self._keeper.close()

    def _begin(self, fd: int, link: AssociationLink, address: str, over_limit: bool) -> None:
        sock = socket.socket(fileno=fd)
        thread = threading.Thread(
            target=self._serve, args=(sock, link, address, over_limit), name="DicomAssociation"
        )
        thread.daemon = True
        with self._lock:
            self._open[thread] = sock
        thread.start()

    def _serve(
        self, sock: socket.socket, link: AssociationLink, address: str, over_limit: bool
    ) -> None:
        try:
            set_timeout(sock, self._settings.timeout)
            tune_socket(sock)
            StorageAssociation(
                sock,
                address,
                self._settings,
                ChildService(link, self._keeper),
                ParentSlots(link, over_limit, self._local),
            ).run()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.pop(threading.current_thread(), None)
            with contextlib.suppress(ParentGone):
                link.send(("end",))
            link.close()

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


def child_main(
    conn: Connection,
    config: NodeConfig,
    data_dir: str,
    db_path: str,
    rules: KeepingRules,
    spare: int,
) -> None:
    """The receiver process's entry point (started by the service with
    :func:`~aifi_app.child_processes.child_process`: its records go to the service's log)."""
    db = Database(Path(db_path))
    # (its schema check's connection: this process writes through its recorder's own,
    # and opens one for an association's audit only when it refuses an instance)
    db.close_thread_connection()
    heap_trim.give_back()
    try:
        keeper = InstanceKeeper(db, Path(data_dir), rules)
        Receiver(conn, config, Path(data_dir), spare, keeper=keeper).run()
    finally:
        db.close()
