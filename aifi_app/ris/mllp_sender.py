"""Sends the outbox's HL7 messages to the RIS over MLLP and checks each ACK.

One connection per message with python-hl7's asyncio MLLP client (``hl7.mllp``), run on
this loop's own thread: connect, write the message, read one answer, all within the
site's ``ris.ack_timeout_seconds``. MSA-1 AA (or CA) for our control ID is success; AE,
AR, another answer, no answer or no connection is a failed attempt, resent with doubling
waits (``ris.retry_initial_seconds`` .. ``ris.retry_max_seconds``) until
``ris.max_attempts``, then shown as failed on the job and in the audit log. Logs name
the job, the control ID and the ACK code, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import hl7.mllp

from aifi_app.config.settings import RemoteNode, Settings
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.dispatcher import backoff_seconds
from aifi_app.ris import outbox
from aifi_app.ris.hl7_messages import ack_status
from aifi_app.store.database import Database, now

__all__ = ["RisSender", "exchange"]

log = logging.getLogger(__name__)

ACCEPTED = frozenset({"AA", "CA"})


def exchange(host: str, port: int, message: str, timeout: float) -> str:
    """Send one message over MLLP and return the answer's text (segments separated by
    CR). Raises ``TimeoutError`` when there is no (complete) answer in ``timeout``
    seconds and ``OSError`` when the connection fails. Blocking; any thread without a
    running event loop."""
    return asyncio.run(asyncio.wait_for(_exchange(host, port, message), timeout))


async def _exchange(host: str, port: int, message: str) -> str:
    reader, writer = await hl7.mllp.open_hl7_connection(host, port, encoding="utf-8")
    try:
        writer.writemessage(message)
        await writer.drain()
        answer = await reader.readmessage()
        return str(answer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class RisSender(BackgroundLoop):
    thread_name = "aifi-ris"

    def __init__(self, db: Database, settings: Callable[[], Settings]) -> None:
        super().__init__()
        self.db = db
        self._settings = settings

    def run_once(self) -> bool:
        settings = self._settings()
        node = settings.ris_node
        if node is None:
            return False
        rows = outbox.due(self.db, now())
        for row in rows:
            if self.stopping:
                break
            self.send(row, node, settings)
        return bool(rows)

    def idle_wait(self) -> float:
        due_at = outbox.next_due_at(self.db)
        if due_at is None:
            return 2.0
        return max(0.05, min(2.0, due_at - now()))

    def send(self, row: outbox.OutboxRow, node: RemoteNode, settings: Settings) -> bool:
        """One attempt at one message; True when the RIS accepted it."""
        ris = settings.ris
        try:
            answer = exchange(node.host, node.port, row.message, ris.ack_timeout_seconds)
        except TimeoutError:
            error = f"no answer from {node.name} within {ris.ack_timeout_seconds:g} s"
            return self._failed(row, error, settings)
        except (OSError, ValueError) as exc:
            error = f"{node.name} not reachable ({type(exc).__name__})"
            return self._failed(row, error, settings)
        code, words = ack_status(answer, row.control_id)
        if code in ACCEPTED:
            outbox.record_sent(self.db, row, words)
            log.info("job %d: HL7 %s acknowledged (%s)", row.job_id, row.control_id, code)
            return True
        return self._failed(row, f"{node.name} answered {words}", settings)

    def _failed(self, row: outbox.OutboxRow, error: str, settings: Settings) -> bool:
        ris = settings.ris
        delay = backoff_seconds(row.attempts + 1, ris.retry_initial_seconds, ris.retry_max_seconds)
        failed = outbox.record_attempt_failed(self.db, row, error, ris.max_attempts, delay)
        log.warning(
            "job %d: HL7 %s attempt %d failed%s",
            row.job_id,
            row.control_id,
            row.attempts + 1,
            "; given up" if failed else f"; next in {delay:g} s",
        )
        return False
