"""A pynetdicom Storage SCP that notes the SOP Instance UIDs it stores (a PACS that
comes and goes on a port of the test's choosing)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class NotingScp:
    server: Any
    uids: list[str]

    def stop(self) -> None:
        self.server.shutdown()


def storage_scp_on(port: int, ae_title: str = "DEMO_PACS") -> NotingScp:
    """Start it on ``port`` (returns once it listens)."""
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts

    uids: list[str] = []
    ae = AE(ae_title=ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_C_STORE, lambda e: uids.append(e.request.AffectedSOPInstanceUID) or 0)
        ],
    )
    return NotingScp(server, uids)
