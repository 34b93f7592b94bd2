"""A storage peer that accepts the association and then stalls (pynetdicom).

Two ways to stall, as seen with real PACS and vendor nodes:

- ``"no_response"``: it reads the whole C-STORE request and never answers it;
- ``"no_read"``: it stops reading the socket after the association is accepted, so the
  sender's socket buffers fill and a large data set cannot even be sent.

``healthy = True`` turns it into a normal peer for the next associations (the peer
"comes back"); :meth:`stop` releases every stalled association and shuts the server down.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.presentation import AllStoragePresentationContexts

from tests.helpers.ports import free_port


class StallingPeer:
    def __init__(self, mode: str, ae_title: str = "STALLER") -> None:
        if mode not in ("no_response", "no_read"):
            raise ValueError(mode)
        self.mode = mode
        self.ae_title = ae_title
        self.port = free_port()
        self.healthy = False
        self.stored: list[str] = []
        """SOP Instance UIDs answered with success (while healthy)."""
        self.stalled_associations = 0
        self._release = threading.Event()
        self._stalled: set[int] = set()
        self._lock = threading.Lock()
        # receive into memory: pynetdicom leaves the temporary file of a chunked receive
        # open when the association is aborted mid-transfer, as these stalls end
        self._chunked = _config.STORE_RECV_CHUNKED_DATASET
        _config.STORE_RECV_CHUNKED_DATASET = False
        ae = AE(ae_title=ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.network_timeout = 300
        ae.acse_timeout = 300
        ae.dimse_timeout = 300
        self._server: Any = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_PDU_RECV, self._on_pdu),
            ],
        )

    def _stall(self, event: Any) -> None:
        with self._lock:
            if id(event.assoc) not in self._stalled:
                self._stalled.add(id(event.assoc))
                self.stalled_associations += 1
        self._release.wait()

    def _on_pdu(self, event: Any) -> None:
        # runs on the association's reactor thread: blocking here stops all reading
        if self.mode == "no_read" and not self.healthy and isinstance(event.pdu, P_DATA_TF):
            self._stall(event)

    def _on_store(self, event: Any) -> int:
        if self.mode == "no_response" and not self.healthy:
            self._stall(event)
            return 0xA700
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        _config.STORE_RECV_CHUNKED_DATASET = self._chunked
