"""A vendor's DICOMweb service as the appliance meets it: a real Orthanc with its DICOMweb
plugin takes the study by STOW-RS; a thread plays the vendor's algorithm. For each study
that arrives (Orthanc's StableStudy change), it reads every stored instance, checks its
bytes for original identifiers, and after a delay stores a secondary capture and an SR
into the same study (the vendor's own upload, through Orthanc's REST API), where the
appliance finds them by QIDO-RS. Modes: reply, silent (stores nothing: the timeout path)."""

from __future__ import annotations

import io
import threading
import time
import urllib.request
from pathlib import Path

from pydicom import Dataset, dcmread

from tests.helpers.orthanc import Orthanc
from tests.helpers.vendor_simulator import vendor_results


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class DicomwebVendor:
    def __init__(
        self,
        workdir: Path,
        *,
        forbidden: tuple[str, ...] = (),
        delay: float = 0.3,
        mode: str = "reply",
    ) -> None:
        self.forbidden = forbidden
        self.delay = delay
        self.mode = mode
        self.received: list[Dataset] = []
        self.leaks: list[str] = []
        self.stored_results: list[str] = []
        """SOP Instance UIDs of the result objects the vendor stored."""
        self.orthanc = Orthanc(workdir, {}, dicomweb=True).start()
        self.url = self.orthanc.dicomweb_url
        self._handled: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        since = 0
        while not self._stop.is_set():
            changes = self.orthanc.get(f"/changes?since={since}&limit=100")
            for change in changes["Changes"]:
                if change["ChangeType"] == "StableStudy" and change["ID"] not in self._handled:
                    self._handled.add(change["ID"])
                    self._handle(change["ID"])
            since = changes["Last"]
            self._stop.wait(0.2)

    def _handle(self, orthanc_study_id: str) -> None:
        images = []
        for instance in self.orthanc.get(f"/studies/{orthanc_study_id}/instances"):
            raw = self.orthanc.file(instance["ID"])
            for secret in self.forbidden:
                if secret.encode() in raw:
                    self.leaks.append(secret)
            images.append(dcmread(io.BytesIO(raw)))
        self.received.extend(images)
        if self.mode != "reply" or not images:
            return
        time.sleep(self.delay)
        for result in vendor_results(images[0]):
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.orthanc.http_port}/instances",
                data=_bytes(result),
                headers={"Content-Type": "application/dicom"},
            )
            with urllib.request.urlopen(request, timeout=30) as rsp:
                rsp.read()
            self.stored_results.append(str(result.SOPInstanceUID))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.orthanc.stop()
