"""Sending instances to a remote node (C-STORE SCU) and verifying nodes (C-ECHO SCU).

Runs on the calling thread and blocks until the association ends. Every instance's
status is checked; the caller decides what to retry. The association is our own lean
requestor (:mod:`aifi_app.dicom_node.requestor`, which says why we do not use
pynetdicom's); each file is sent as stored, with its own transfer syntax, read once
(:mod:`aifi_app.dicom_node.store_request`). While the peer works on one instance, the
next one is read from disk.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dimse_messages import C_ECHO_RQ
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.requestor import (
    AssociationFailed,
    Link,
    LinkLost,
    Peer,
    UnreadableFile,
    associate,
    command_set,
)
from aifi_app.dicom_node.store_request import (
    InstanceFile,
    Prepared,
    StoreCommands,
    instance_file,
    prepare,
)

log = logging.getLogger(__name__)

C_STORE_RSP = 0x8001
C_ECHO_RSP = 0x8030


@dataclass(frozen=True)
class SendOutcome:
    path: Path
    status: int | None
    """The C-STORE status, or None when no response came (association failed)."""
    error: str = ""

    @property
    def ok(self) -> bool:
        # 0xB000, 0xB007, 0xB006 are warnings: the peer stored the instance
        return self.status is not None and (self.status == 0 or self.status >> 12 == 0xB)


def send_files(
    peer: Peer,
    paths: Sequence[Path],
    *,
    calling_ae_title: str,
    timeout: float = 60.0,
    on_data_sent: Callable[[int], object] | None = None,
) -> list[SendOutcome]:
    """C-STORE each file (as stored, with its own transfer syntax) over one association.

    Returns an outcome per file, in order: a file that cannot be read, or whose kind the
    peer did not accept, fails alone. Raises :class:`AssociationFailed` when no association
    can be made. ``timeout`` bounds each wait: for the association, for the peer to take
    our data, for each response, and for the release. ``on_data_sent(n)`` is called (on
    this thread) once the ``n``-th file's data set is all with the peer's socket, before
    its response is awaited.
    """
    files = [instance_file(path) for path in paths]
    contexts = sorted({(f.sop_class, f.syntax) for f in files if isinstance(f, InstanceFile)})
    if not contexts:
        return [SendOutcome(path, None, str(f)) for path, f in zip(paths, files, strict=True)]
    link = associate(peer, calling_ae_title=calling_ae_title, contexts=contexts, timeout=timeout)
    sender = _Sender(link, files, on_data_sent)
    try:
        outcomes = [sender.store(n, path) for n, path in enumerate(paths)]
    except BaseException:
        link.abort()
        raise
    finally:
        sender.close()
    if link.open:
        link.release()
    return outcomes


class _Sender:
    """C-STORE one file after the other on ``link``, reading the next while the peer
    works on the current one."""

    def __init__(
        self,
        link: Link,
        files: Sequence[InstanceFile | str],
        on_data_sent: Callable[[int], object] | None = None,
    ) -> None:
        self.link = link
        self.files = files
        self.on_data_sent = on_data_sent
        self.commands = StoreCommands()
        self.message_id = 0
        self.ahead: Prepared | str | None = None
        self.ahead_of: InstanceFile | None = None

    def store(self, n: int, path: Path) -> SendOutcome:
        """Send the ``n``-th file (at ``path``)."""
        file = self.files[n]
        if isinstance(file, str):
            return SendOutcome(path, None, file)
        if not self.link.open:
            return SendOutcome(path, None, "association ended")
        pair = (file.sop_class, file.syntax)
        context_id = self.link.accepted.get(pair)
        if context_id is None:
            return SendOutcome(
                path, None, f"not sent: the peer does not accept it ({self.link.refused[pair]})"
            )
        ready = self._take(file)
        if isinstance(ready, str):
            return SendOutcome(path, None, ready)
        try:
            self.link.send_message(context_id, ready.command, ready.blocks(), ready.size)
            ready.close()
            if self.on_data_sent is not None:
                self.on_data_sent(n)
            self._read_ahead(n + 1)
            response = self.link.read_response(ready.message_id, C_STORE_RSP)
        except UnreadableFile as exc:  # nothing of it was sent: the association goes on
            return SendOutcome(path, None, str(exc))
        except LinkLost as exc:
            log.warning("C-STORE to %s: %s; association aborted", self.link.peer.where, exc)
            self.link.abort()
            return SendOutcome(path, None, _lost(exc))
        finally:
            ready.close()
        return SendOutcome(path, int(response.Status))

    def _take(self, file: InstanceFile) -> Prepared | str:
        if self.ahead is not None and self.ahead_of is file:
            ready, self.ahead, self.ahead_of = self.ahead, None, None
            return ready
        self._drop_ahead()
        return prepare(file, self._next_id(), self.commands)

    def _read_ahead(self, start: int) -> None:
        """Prepare the next file that will be sent, if any."""
        for file in itertools.islice(self.files, start, None):
            if isinstance(file, InstanceFile):
                if (file.sop_class, file.syntax) in self.link.accepted:
                    self.ahead = prepare(file, self._next_id(), self.commands)
                    self.ahead_of = file
                return

    def _next_id(self) -> int:
        self.message_id = self.message_id % 0xFFFF + 1
        return self.message_id

    def _drop_ahead(self) -> None:
        if isinstance(self.ahead, Prepared):
            self.ahead.close()
        self.ahead = self.ahead_of = None

    def close(self) -> None:
        self._drop_ahead()


def _lost(exc: LinkLost) -> str:
    if isinstance(exc.__cause__, TimeoutError):
        return "no response (timeout or abort)"
    return f"no response: {exc}"


def echo(peer: Peer, *, calling_ae_title: str, timeout: float = 10.0) -> int:
    """C-ECHO the peer; returns the status (0 is success). Raises AssociationFailed."""
    pair = (str(Verification), str(ImplicitVRLittleEndian))
    link = associate(peer, calling_ae_title=calling_ae_title, contexts=[pair], timeout=timeout)
    context_id = link.accepted.get(pair)
    if context_id is None:
        link.release()
        raise AssociationFailed(f"{peer.where} does not accept verification ({link.refused[pair]})")
    request = C_ECHO()
    request.MessageID = 1
    request.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(request)
    try:
        link.send_message(context_id, command_set(message))
        response = link.read_response(1, C_ECHO_RSP)
    except LinkLost as exc:
        link.abort()
        raise AssociationFailed(f"no C-ECHO response from {peer.where} ({exc})") from exc
    except BaseException:
        link.abort()
        raise
    link.release()
    return int(response.Status)


__all__ = ["AssociationFailed", "Peer", "SendOutcome", "echo", "send_files"]
