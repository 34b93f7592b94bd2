"""A vendor gateway as the appliance meets it (BoneXpert Server, an RBfracture gateway):
a Storage SCP that takes a study, and after a delay sends a secondary capture and an SR
back into the same study to the caller's node. It checks every byte it receives for
original identifiers. Modes: reply, silent (never answers: the timeout path), refuse
(every C-STORE gets 0xA700, out of resources), flaky (the first association's stores are
refused, later ones accepted)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, CodedConcept, Finding
from aifi_app.dicom_node.storage_scu import Peer, send_files
from aifi_app.results import build_measurement_report, build_secondary_capture
from aifi_app.sample_studies import write

VENDOR = AlgorithmIdentity("bonexpert", "BoneXpert (simulated)", "3.2", "Visiana (simulated)")
BONE_AGE = CodedConcept("443849008", "SCT", "Bone age")


def vendor_results(source: Dataset) -> tuple[Dataset, Dataset]:
    """What the simulated vendor makes of an image: a secondary capture and an SR
    (highdicom, via the appliance's builders) in the image's (pseudonymised) study."""
    finding = Finding(
        concept=BONE_AGE,
        score=0.9,
        threshold=0.5,
        positive=True,
        source_sop_instance_uid=str(source.SOPInstanceUID),
        source_sop_class_uid=str(source.SOPClassUID),
        source_series_instance_uid=str(source.SeriesInstanceUID),
        label="Bone age 8.4 y",
    )
    result = AlgorithmResult(algorithm=VENDOR, findings=(finding,))
    sc = build_secondary_capture(
        source,
        result,
        finding,
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=801,
        instance_number=1,
        manufacturer="Visiana",
        software_version="3.2",
    )
    sr = build_measurement_report(
        [source],
        result,
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=802,
        instance_number=1,
        device_observer_uid=generate_uid(),
        manufacturer="Visiana",
        software_version="3.2",
    )
    return sc, sr


class VendorSimulator:
    def __init__(
        self,
        folder: Path,
        *,
        ae_title: str = "VENDOR_SIM",
        forbidden: tuple[str, ...] = (),
        delay: float = 0.5,
        mode: str = "reply",
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ae_title = ae_title
        self.forbidden = forbidden
        self.delay = delay
        self.mode = mode
        self.reply_to: Peer | None = None
        self.received: list[Dataset] = []
        self.leaks: list[str] = []
        self.replies: list[int] = []
        self.associations: set[int] = set()
        self._threads: list[threading.Thread] = []
        ae = AE(ae_title=ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_RELEASED, self._released)],
        )
        assert server is not None
        self._server = server
        self.port = int(server.server_address[1])

    def _store(self, event: Any) -> int:
        self.associations.add(id(event.assoc))
        if self.mode == "refuse" or (self.mode == "flaky" and len(self.associations) == 1):
            return 0xA700
        if _config.STORE_RECV_CHUNKED_DATASET:
            raw = Path(event.dataset_path).read_bytes()
        else:
            raw = event.encoded_dataset()
        for secret in self.forbidden:
            if secret.encode() in raw:
                self.leaks.append(secret)
        self.received.append(dcmread(io.BytesIO(raw)))
        return 0

    def _released(self, event: Any) -> None:
        if self.mode in ("reply", "flaky") and self.received:
            images = list(self.received)
            thread = threading.Thread(target=self._reply, args=(images,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _reply(self, images: list[Dataset]) -> None:
        time.sleep(self.delay)
        sc, sr = vendor_results(images[0])
        paths = [write(sc, self.folder / "out"), write(sr, self.folder / "out")]
        assert self.reply_to is not None
        outcomes = send_files(self.reply_to, paths, calling_ae_title=self.ae_title, timeout=10)
        self.replies.extend(o.status if o.status is not None else -1 for o in outcomes)

    def stop(self) -> None:
        self._server.shutdown()
        for thread in self._threads:
            thread.join(10)
