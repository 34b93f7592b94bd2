"""``aifi-app demo``: the whole chain on built-in defaults, with sample studies.

Starts the appliance in a fresh data directory, a small stand-in PACS in the same process
(unless ``--pacs`` names a real one), sends sample chest radiographs and one CT that no
route takes, waits for every study to finish and prints what happened. The demo keeps its
pseudonymisation key in memory only: its data are invented and thrown away.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from aifi_app.config.loading import parse_node_address, validate
from aifi_app.config.settings import CompletionSettings, NodeSettings, Settings, StorageSettings
from aifi_app.dicom_node.storage_scu import Peer, send_files
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store.status import queue_snapshot

log = logging.getLogger(__name__)

DEMO_SCU = "AIFI_DEMO_SCU"


class DemoPacs:
    """A minimal Storage SCP that keeps what it receives in a folder (demo only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title="DEMO_PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        assert server is not None  # non-blocking start returns the server
        self._server = server
        self.port = int(server.server_address[1])

    def _store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        target = self.folder / f"{uid}.dcm"
        if _config.STORE_RECV_CHUNKED_DATASET:
            # the appliance's node in this process switched pynetdicom to streaming to disk
            shutil.copyfile(event.dataset_path, target)
        else:
            target.write_bytes(event.encoded_dataset())
        return 0

    def stop(self) -> None:
        self._server.shutdown()


def _images(npz: Path | None, count: int) -> list[tuple[np.ndarray[Any, Any], str]]:
    if npz is not None and not npz.is_file():
        print(f"  {npz} not found: using drawn phantom images instead")
        npz = None
    if npz is None:
        return [(phantom_chest(seed=n), "phantom") for n in range(count)]
    data = np.load(npz)
    images, labels = data["test_images"], data["test_labels"].ravel()
    normal, pneumonia = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    # alternate the two classes, spread over the test split
    picks = [
        int((pneumonia if n % 2 else normal)[(n // 2) * 37 % len(pneumonia if n % 2 else normal)])
        for n in range(count)
    ]
    return [(images[i], "pneumonia" if labels[i] else "normal") for i in picks]


def run_demo(
    *,
    studies: int,
    images: Path | None,
    data_dir: Path | None,
    pacs: str | None,
    timeout: float = 180.0,
) -> int:
    """Run the demo; returns the exit status (0 when every chest study was delivered)."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="aifi-demo-"))
    stand_in = None if pacs else DemoPacs(data_dir / "demo-pacs")
    pacs_node = parse_node_address(
        pacs or f"DEMO_PACS@127.0.0.1:{stand_in.port if stand_in else 0}"
    )
    settings = Settings(
        node=NodeSettings(port=0, allowed_calling_ae_titles=(DEMO_SCU,)),
        remote_nodes=(pacs_node,),
        completion=CompletionSettings(idle_seconds=2.0),
        storage=StorageSettings(data_dir=str(data_dir)),
    )
    settings = replace(
        settings,
        delivery=replace(settings.delivery, pacs=pacs_node.name, retry_initial_seconds=2.0),
    )
    validate(settings)
    key = secrets.token_bytes(32)
    appliance = Appliance(settings, secret_for=lambda _: key)
    appliance.start()
    print(f"AIFI Appliance demo: data in {data_dir}")
    print(
        f"  DICOM node {settings.node.ae_title} on port {appliance.node.port}, PACS "
        f"{pacs_node.ae_title}@{pacs_node.host}:{pacs_node.port}"
    )
    try:
        node = Peer(settings.node.ae_title, "127.0.0.1", appliance.node.port)
        outbox = data_dir / "demo-outbox"
        truth = []
        for n, (pixels, label) in enumerate(_images(images, studies), start=1):
            path = write(chest_radiograph(demo_patient(n), pixels), outbox / f"cxr{n}")
            outcome = send_files(node, [path], calling_ae_title=DEMO_SCU)[0]
            truth.append(label)
            print(f"  sent chest X-ray {n} ({label}): status 0x{outcome.status or 0:04X}")
        ct = [write(ds, outbox / "ct") for ds in ct_series(demo_patient(99), 5)]
        send_files(node, ct, calling_ae_title=DEMO_SCU)
        print("  sent a 5-slice CT (no route takes it)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = queue_snapshot(appliance.db)
            unfinished = [s for s in snap["studies"] if s["state"] in ("receiving", "complete")]
            busy = [
                j
                for j in snap["jobs"]
                if j["state"] not in ("delivered", "failed", "rejected", "cancelled")
            ]
            if len(snap["studies"]) >= studies + 1 and not unfinished and not busy:
                break
            time.sleep(0.5)
        return _report(appliance, truth, stand_in)
    finally:
        appliance.stop()
        if stand_in is not None:
            stand_in.stop()


def _report(appliance: Appliance, truth: list[str], stand_in: DemoPacs | None) -> int:
    import json

    snap = queue_snapshot(appliance.db)
    print("\nstudy  modality  state      job state        finding (score)                 truth")
    ok = True
    for study in sorted(snap["studies"], key=lambda s: int(s["id"])):
        job = next((j for j in snap["jobs"] if j["study_id"] == study["id"]), None)
        finding = ""
        if job is not None:
            row = appliance.db.query("SELECT result_json FROM jobs WHERE id = ?", (job["id"],))[0]
            if row["result_json"]:
                f = json.loads(row["result_json"])["findings"][0]
                finding = f"{f['label']} ({f['score']:.2f})"
        label = (
            truth[study["id"] - 1]
            if study["modality"] == "DX" and study["id"] <= len(truth)
            else ""
        )
        print(
            f"{study['id']:>5}  {study['modality']:<8}  {study['state']:<9}  "
            f"{(job or {}).get('state', '-'):<15}  {finding:<30}  {label}"
        )
        if study["modality"] == "DX":
            ok &= job is not None and job["state"] == "delivered"
        if study["state"] == "no_match":
            print(f"       reason: {study['reason']}")
    if stand_in is not None:
        received = len(list(stand_in.folder.glob("*.dcm")))
        print(f"\nstand-in PACS holds {received} result object(s) in {stand_in.folder}")
    print(
        "demo "
        + (
            "succeeded: every chest X-ray has its results in the PACS"
            if ok
            else "FAILED: see the states above and 'aifi-app status'"
        )
    )
    return 0 if ok else 1
