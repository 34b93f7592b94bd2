"""Receiving in child processes: the service accepts, a receiver process serves.

One Python process gains little from threads when several associations arrive at once
(the interpreter's lock): each instance costs the serving process 1.6-2.1 ms of CPU for
its PDUs, writes, checksum and header checks. With ``[node] receive_processes`` set, the
service starts that many receiver processes (:mod:`aifi_app.dicom_node.receiver_child`,
started as :mod:`aifi_app.child_processes` says: forked by the fork server on Linux, which
has the node's modules imported already, spawned elsewhere; never forked from the service,
which has threads); the node's plain-TCP listener accepts each connection as before and
passes its socket over a pipe (``SCM_RIGHTS``, :func:`multiprocessing.reduction.send_handle`)
to the ready process with the fewest associations, with one end of a pipe of the
association's own. The process runs the association and keeps each instance itself, as
the service would (:mod:`aifi_app.dicom_node.instance_keeper`: header, disk floor, the
durable move, the queue's record, on the same database; a refusal logged and audited
there), answers the C-STORE, and then tells the service which study it joined
(``stored``, no answer awaited: :meth:`~aifi_app.dicom_node.storage_scp.StorageNode.instance_stored`
holds the study's idle timer for the association and wakes the workers). What only the
service knows it asks over that pipe (may a new association begin, the association limit,
the audit of a rejected association); a thread here per association answers it.

The processes start once the node has been quiet for a second after its port opened
(:meth:`~aifi_app.dicom_node.storage_scp.StorageNode.start`): their imports (or the fork
server's, once) would compete with a study sent the moment the port accepts. Served
here, on a thread of the service as before: TLS associations (the listener wraps the
socket, the handshake's state stays in this process), every association on Windows (a
service under ``pythonservice.exe`` may not spawn, and a socket would need
``socket.share``), any that arrives while no receiver process is ready (before they
started, or after one died), and, with ``[node] receive_first_in_process``, one that
arrives while the service serves none.

A receiver process that dies (a crash, SIGKILL): the service sends an A-ABORT on each of
its associations (it keeps its own copy of every socket it handed over) and closes them,
removes the process's partial incoming files, audits ``receiver_process_died`` and
starts another. Nothing acknowledged is lost: success is sent only after the instance
was recorded in the queue (a process killed between its record and its ``stored`` leaves
a recorded instance the service was not told of: the worker finds its study by its idle
timer in the queue, without the association's hold). :meth:`ReceiverPool.stop` tells each
process to stop (it cuts its associations), waits for it and kills one that does not end
(by its pid).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import socket
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aifi_app.child_processes import child_context, child_process
from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.spare_files import is_spare
from aifi_app.fault_logging import log_fault

if TYPE_CHECKING:
    from aifi_app.dicom_node.instance_keeper import KeepingRules
    from aifi_app.dicom_node.storage_scp import NodeConfig

log = logging.getLogger(__name__)

_STOP_WAIT_SECONDS = 10.0
_ABORT_SEND_SECONDS = 1.0


class PoolService(Protocol):
    """What the receiver processes ask of the node (:class:`StorageNode`)."""

    def refuse_association(self, calling_ae: str, address: str) -> str | None: ...

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None: ...

    def instance_stored(self, study_id: int, key: int) -> None:
        """Association ``key`` kept and recorded an instance of ``study_id``."""
        ...

    def association_began(self, key: int) -> bool:
        """A connection handed over counts against the limit now; True: over the limit."""
        ...

    def association_left(self, key: int) -> None:
        """It no longer counts against the limit (released, rejected or ended)."""
        ...

    def association_ended(self, key: int) -> None: ...

    def receiver_died(self, pid: int, exitcode: int | None, cut_off: int) -> None: ...


@dataclass
class _Handed:
    sock: socket.socket
    left: bool = False


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    open: dict[int, _Handed] = field(default_factory=dict)
    reader: threading.Thread | None = None


class ReceiverPool:
    """``processes`` receiver processes for the node's plain-TCP associations."""

    def __init__(
        self,
        service: PoolService,
        config: NodeConfig,
        data_dir: Path,
        *,
        db_path: Path,
        rules: KeepingRules,
        processes: int,
        spare_files: int,
    ) -> None:
        self._service = service
        self._config = dataclasses.replace(config, tls_context=None)  # (not picklable)
        self._data_dir = data_dir
        self._db_path = db_path
        self._rules = rules
        self._processes = processes
        self._spare_files = spare_files
        self._context = child_context()
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self._starting = 0
        self._children: list[_Child] = []
        self._keys = itertools.count(1)
        self._stopping = False
        self.handed_over = 0
        """Connections handed to a receiver process so far."""

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the processes; returns at once (each takes connections once it is ready)."""
        with self._lock:
            self._stopping = False
        for _ in range(self._processes):
            self._start_child()

    def _start_child(self) -> None:
        from aifi_app.dicom_node import receiver_child  # (imports the node: not at the top)

        ours, theirs = self._context.Pipe(duplex=True)
        process = child_process(
            self._context,
            receiver_child.child_main,
            (
                theirs,
                self._config,
                str(self._data_dir),
                str(self._db_path),
                self._rules,
                self._spare_files,
            ),
            name="aifi-receiver",
        )
        with self._lock:
            if self._stopping:
                ours.close()
                theirs.close()
                return
            self._starting += 1
        child: _Child | None = None
        try:
            # not under the lock: the fork server's first start waits for its imports,
            # and connections are handed over meanwhile (to the processes already ready)
            process.start()
            child = _Child(process, ours)
            # the one thread that waits for the process's end (its pipe's end, then its
            # exit code): started before stop() can see the child
            child.reader = threading.Thread(
                target=self._read, args=(child,), name=f"aifi-receiver-{process.pid}", daemon=True
            )
            child.reader.start()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        finally:
            with self._lock:  # stop() sees the child, or waits for it to be here
                if child is not None:
                    self._children.append(child)
                self._starting -= 1
                self._started.notify_all()
        theirs.close()

    def stop(self) -> None:
        """Stop every process (cutting its associations) and wait for it; no orphans."""
        with self._lock:
            self._stopping = True
            self._started.wait_for(lambda: self._starting == 0)
            children = list(self._children)
        for child in children:
            with contextlib.suppress(OSError, ValueError), child.send_lock:
                child.conn.send(("stop",))
        for child in children:
            # only the child's reader waits for the process (multiprocessing's fork-server
            # Popen is not safe for two threads: the second to read the exit code got
            # EOF, 255, and the stop was audited as a receiver that died)
            assert child.reader is not None
            child.reader.join(_STOP_WAIT_SECONDS)
            if child.reader.is_alive():  # the process has not closed its pipe: hung
                log.warning("receiver process %s did not stop: killed", child.process.pid)
                child.process.kill()
                child.reader.join(_STOP_WAIT_SECONDS)

    @property
    def pids(self) -> list[int]:
        """The receiver processes' ids (those started and not yet seen to end)."""
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    @property
    def ready(self) -> int:
        """How many receiver processes take connections now."""
        with self._lock:
            return sum(1 for c in self._children if c.ready)

    # --- handing connections over (the listener's accepting thread) -------------------------
    def hand_off(self, sock: socket.socket, address: str) -> bool:
        """Give ``sock`` to the ready process with the fewest associations; False: none is
        ready (the caller serves it)."""
        with self._lock:
            if self._stopping or not any(c.ready for c in self._children):
                return False
            key = -next(self._keys)
        over_limit = self._service.association_began(key)
        with self._lock:
            ready = [c for c in self._children if c.ready]
            if ready:
                child = min(ready, key=lambda c: len(c.open))
                child.open[key] = _Handed(sock)
        if not ready:  # the last one died meanwhile
            self._service.association_left(key)
            self._service.association_ended(key)
            return False
        ours, theirs = self._context.Pipe(duplex=True)
        try:
            pid = child.process.pid
            assert pid is not None
            with child.send_lock:
                child.conn.send(("assoc", address, over_limit))
                send_handle(child.conn, sock.fileno(), pid)
                send_handle(child.conn, theirs.fileno(), pid)
        except (OSError, ValueError) as exc:
            log.warning("a receiver process did not take a connection (%s)", type(exc).__name__)
            ours.close()
            with self._lock:
                child.open.pop(key, None)
            self._service.association_left(key)
            self._service.association_ended(key)
            return False
        finally:
            theirs.close()
        threading.Thread(
            target=self._answer, args=(child, key, ours), name="aifi-receiver-calls", daemon=True
        ).start()
        with self._lock:
            self.handed_over += 1
        return True

    # --- the process's messages (one thread per process) ------------------------------------
    def _read(self, child: _Child) -> None:
        while True:
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "ready":
                with self._lock:
                    child.ready = True
            else:
                log.error("a receiver process sent an unknown message %r", message[0])
        self._gone(child)

    # --- an association's calls (one thread per association) --------------------------------
    def _answer(self, child: _Child, key: int, conn: Connection) -> None:
        """Hear the association's instances and answer its calls until it says it ended
        (then it no longer counts), or until its pipe closes: the process died, and
        :meth:`_gone` cuts the association off (an A-ABORT to its peer)."""
        try:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return
                if message[0] == "stored":
                    self._stored(key, message[1])
                    continue
                if message[0] == "end":
                    self._end(child, key)
                    return
                _, call, *args = message
                try:
                    value = self._call(child, key, call, args)
                except Exception as exc:
                    log_fault(log, "a receiver process's request failed", exc)
                    value = self._failed_answer(call)
                with contextlib.suppress(OSError, ValueError):
                    conn.send(value)
        finally:
            conn.close()

    def _stored(self, key: int, study_id: int) -> None:
        try:
            self._service.instance_stored(study_id, key)
        except Exception as exc:  # recorded and answered: this only hastens its completion
            log_fault(log, "a recorded instance's study could not be woken", exc)

    def _call(self, child: _Child, key: int, call: str, args: list[Any]) -> Any:
        service = self._service
        if call == "leave":
            self._leave(child, key)
            return None
        if call == "refuse":
            return service.refuse_association(*args)
        if call == "rejected":
            service.association_rejected(*args)
            return None
        raise ValueError(f"unknown request {call!r}")

    @staticmethod
    def _failed_answer(call: str) -> Any:
        """The answer to a call whose handling raised, so that the receiver's association
        does not wait for an answer forever (nor its process's stop): a new association is
        refused, the others get nothing."""
        if call == "refuse":
            return "internal error"
        return None

    def _leave(self, child: _Child, key: int) -> None:
        with self._lock:
            handed = child.open.get(key)
            if handed is None or handed.left:
                return
            handed.left = True
        self._service.association_left(key)

    def _end(self, child: _Child, key: int) -> None:
        self._leave(child, key)
        with self._lock:
            handed = child.open.pop(key, None)
        if handed is None:
            return
        with contextlib.suppress(OSError):
            handed.sock.close()
        self._service.association_ended(key)

    def _gone(self, child: _Child) -> None:
        """The process's end of the pipe closed: it stopped, or it died."""
        child.process.join(_STOP_WAIT_SECONDS)
        with self._lock:
            with contextlib.suppress(ValueError):
                self._children.remove(child)
            stopping = self._stopping
            cut_off = list(child.open.items())
        for _, handed in cut_off:
            # the peer hears of it (an A-ABORT) rather than waiting for its timeout
            with contextlib.suppress(OSError):
                handed.sock.settimeout(_ABORT_SEND_SECONDS)
                handed.sock.sendall(
                    ul.encode_abort(ul.SOURCE_SERVICE_PROVIDER, ul.REASON_NOT_SPECIFIED)
                )
            with contextlib.suppress(OSError):
                handed.sock.shutdown(socket.SHUT_RDWR)
        for key, _ in cut_off:
            self._end(child, key)
        child.conn.close()
        pid = child.process.pid
        if pid is not None:
            remove_partial_files(self._data_dir / "incoming", pid)
        exitcode = child.process.exitcode
        if stopping and exitcode == 0:
            return
        log.error(
            "receiver process %s ended unexpectedly (exit code %s); %d association(s) cut off",
            pid,
            exitcode,
            len(cut_off),
        )
        try:
            self._service.receiver_died(pid or 0, exitcode, len(cut_off))
        except Exception as exc:
            log_fault(log, "could not audit a receiver process's end", exc)
        if stopping:
            return
        if child.ready:
            self._start_child()
        else:  # it could not start: another would fail alike (no endless restarts)
            log.error("receiver process %s never became ready: associations stay here", pid)


def remove_partial_files(incoming: Path, pid: int) -> None:
    """Remove what process ``pid`` had begun to write in ``incoming`` (its empty spare
    files stay: the next start takes them back)."""
    prefix = f"{pid}-"
    with contextlib.suppress(OSError):
        for path in incoming.iterdir():
            if not path.name.startswith(prefix):
                continue
            with contextlib.suppress(OSError):
                if is_spare(path) and path.stat().st_size == 0:
                    continue
                path.unlink()
