"""A RIS as the appliance meets it: python-hl7's asyncio MLLP server on a loopback port,
on its own thread. It keeps every message it receives and answers per ``mode``: ``ack``
(AA), ``nak`` (AE, application error), ``reject`` (AR) or ``silent`` (reads, never
answers). Stopped by the test that started it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import hl7
import hl7.mllp


class MllpListener:
    def __init__(self, mode: str = "ack") -> None:
        self.mode = mode
        self.received: list[hl7.Message] = []
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the MLLP listener did not start")
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            hl7.mllp.start_hl7_server(self._handle, "127.0.0.1", 0, encoding="utf-8")
        )
        self._ready.set()
        self._loop.run_forever()

    async def _handle(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                self.received.append(message)
                if self.mode == "silent":
                    continue
                code = {"ack": "AA", "nak": "AE", "reject": "AR"}[self.mode]
                writer.writemessage(message.create_ack(code, application="RIS", facility="ZH"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def of_type(self, message_type: str) -> list[hl7.Message]:
        return [m for m in self.received if str(m.segment("MSH")(9)(1)(1)) == message_type]

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
