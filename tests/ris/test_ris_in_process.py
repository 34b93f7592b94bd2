"""HL7 to the RIS in the in-process chain, against python-hl7's MLLP server on loopback:
the ORU and, for an urgent finding, the priority message arrive and are ACKed; a NAK or
silence is retried and then shown as failed; the outbox survives a restart; no patient
data in the logs."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.cli import main
from aifi_app.config.settings import RemoteNode, RisSettings, Route, Settings
from aifi_app.demo import DemoPacs
from aifi_app.ris import outbox
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest
from aifi_app.service import Appliance
from aifi_app.store.status import queue_snapshot
from tests.helpers.mllp_listener import MllpListener
from tests.helpers.packages import make_package
from tests.helpers.ports import free_port
from tests.pipeline.test_chain_in_process import KEY, _drain, _receive, _settings

PATIENT = SamplePatient(
    name="Jansen-de Vries^Maria",
    patient_id="PID7731902",
    birth_date="19500312",
    sex="F",
    accession="ACC88112233",
)
URGENT = """objects = ["sc", "sr"]
urgent_findings = [{ value = "233604007", scheme = "SCT", meaning = "Pneumonia" }]"""


def _app(tmp_path: Path, pacs: DemoPacs, ris_port: int, **ris: object) -> Appliance:
    base = _settings(tmp_path, pacs.port)
    settings: Settings = dataclasses.replace(
        base,
        remote_nodes=(
            *base.remote_nodes,
            RemoteNode("ris", host="127.0.0.1", port=ris_port, role="ris", protocol="mllp"),
        ),
        routes=(Route(name="urgent", algorithm="urgent-cxr", modalities=("CR", "DX")),),
        ris=RisSettings(
            node="ris",
            sending_facility="RIJNSTATE",
            receiving_application="RIS",
            **{  # type: ignore[arg-type]
                "ack_timeout_seconds": 5.0,
                "max_attempts": 3,
                "retry_initial_seconds": 0.01,
                "retry_max_seconds": 0.02,
                **ris,
            },
        ),
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    if "urgent-cxr" not in app.catalog.known_ids():
        # threshold 0: the finding is positive on any image, so it is urgent
        package = make_package(
            tmp_path / "pkg",
            package_id="urgent-cxr",
            replace={
                'objects = ["sc", "sr"]': URGENT,
                "threshold = 0.4303969591856003": "threshold = 0.0",
            },
        )
        lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    return app


def _send_until_settled(app: Appliance, timeout: float = 60) -> list[dict[str, object]]:
    """Run the RIS sender's passes until no message is pending (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.ris_sender.run_once()
        rows = outbox.messages_of_job(app.db, 1)
        if rows and all(r["state"] != "pending" for r in rows):
            return rows
        time.sleep(0.02)
    raise AssertionError(f"messages still pending: {outbox.messages_of_job(app.db, 1)}")


def _process(app: Appliance, tmp_path: Path) -> None:
    _receive(app, chest_radiograph(PATIENT, phantom_chest()), tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT state, urgent, reason FROM jobs")
    assert job["state"] == "delivered", job["reason"]
    assert job["urgent"] == 1


def test_oru_and_priority_message_reach_the_ris_and_are_acknowledged(
    tmp_path: Path, pacs: DemoPacs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ris = MllpListener("ack")
    try:
        app = _app(tmp_path, pacs, ris.port)
        _process(app, tmp_path)
        rows = _send_until_settled(app)
    finally:
        ris.stop()
    assert [(r["message_type"], r["state"], r["ack_code"], r["attempts"]) for r in rows] == [
        ("OMG^O19^OMG_O19", "sent", "AA", 1),
        ("ORU^R01^ORU_R01", "sent", "AA", 1),
    ]
    # the priority message goes first
    assert [str(m.segment("MSH")(9)) for m in ris.received] == [
        "OMG^O19^OMG_O19",
        "ORU^R01^ORU_R01",
    ]
    (priority,) = ris.of_type("OMG")
    assert str(priority.segment("ORC")(1)) == "XO"
    assert str(priority.segment("TQ1")(9)) == "S^Stat^HL70485"
    (result,) = ris.of_type("ORU")
    for message in (priority, result):
        assert str(message.segment("PID")(3)) == PATIENT.patient_id  # the real one
        assert str(message.segment("PID")(5)) == PATIENT.name
        assert str(message.segment("OBR")(3)) == PATIENT.accession
        assert str(message.segment("MSH")(4)) == "RIJNSTATE"
    coded = next(s for s in result.segments("OBX") if str(s(2)) == "CWE")
    assert str(coded(3)) == "233604007^Pneumonia^SCT"
    assert str(coded(5)) == "52101004^Present^SCT"
    (shown,) = queue_snapshot(app.db)["jobs"]  # what `aifi-app status --json` prints
    assert shown["urgent"] is True
    assert [(m["message_type"], m["state"], m["ack_code"]) for m in shown["hl7"]] == [
        ("OMG^O19^OMG_O19", "sent", "AA"),
        ("ORU^R01^ORU_R01", "sent", "AA"),
    ]
    assert "message" not in shown["hl7"][0]  # never the content
    events = [r["event"] for r in app.db.query("SELECT event FROM audit_events WHERE job_id = 1")]
    assert "urgent_finding" in events
    assert events.count("hl7_acknowledged") == 2
    for record in caplog.records:
        text = record.getMessage()
        for secret in (PATIENT.patient_id, "Jansen", PATIENT.accession, PATIENT.birth_date):
            assert secret not in text
    app.db.close()


@pytest.mark.parametrize("mode", ["nak", "reject", "silent"])
def test_nak_or_silence_is_retried_then_shown_as_failed(
    tmp_path: Path, pacs: DemoPacs, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ris = MllpListener(mode)
    try:
        app = _app(tmp_path, pacs, ris.port, ack_timeout_seconds=0.3)
        _process(app, tmp_path)
        rows = _send_until_settled(app)
    finally:
        ris.stop()
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 3), ("failed", 3)]
    assert len(ris.received) == 6  # each message three times
    expected = {"nak": "answered AE (application error)", "reject": "answered AR (rejected)"}.get(
        mode, "no answer from ris within 0.3 s"
    )
    assert all(expected in str(r["last_error"]) for r in rows)
    (job,) = app.db.query("SELECT state, reason FROM jobs")
    assert job["state"] == "delivered"  # the images are in the PACS; the HL7 failed
    assert "HL7 " in job["reason"] and "to the RIS failed after 3 attempts" in job["reason"]
    events = [r["event"] for r in app.db.query("SELECT event FROM audit_events WHERE job_id = 1")]
    assert events.count("hl7_retry_scheduled") == 4
    assert events.count("hl7_failed") == 2
    app.db.close()
    # 'aifi-app retry' puts them back (the job itself stays delivered)
    assert main(["retry", "1", "--data-dir", str(app.data_dir)]) == 0
    assert "2 HL7 message(s) to the RIS queued again" in capsys.readouterr().out
    again = Appliance(app.settings, secret_for=lambda _: KEY)
    assert {r["state"] for r in outbox.messages_of_job(again.db, 1)} == {"pending"}
    again.db.close()


def test_the_outbox_survives_a_restart(tmp_path: Path, pacs: DemoPacs) -> None:
    port = free_port()  # no RIS listens yet
    app = _app(tmp_path, pacs, port, max_attempts=100)
    _process(app, tmp_path)
    app.ris_sender.run_once()
    assert {r["state"] for r in outbox.messages_of_job(app.db, 1)} == {"pending"}
    assert all("not reachable" in str(r["last_error"]) for r in outbox.messages_of_job(app.db, 1))
    app.db.close()

    ris = MllpListener("ack")
    try:
        settings = dataclasses.replace(
            app.settings,
            remote_nodes=tuple(
                dataclasses.replace(n, port=ris.port) if n.name == "ris" else n
                for n in app.settings.remote_nodes
            ),
        )
        again = Appliance(settings, secret_for=lambda _: KEY)
        rows = _send_until_settled(again)
    finally:
        ris.stop()
    assert [r["state"] for r in rows] == ["sent", "sent"]
    assert len(ris.received) == 2
    again.db.close()


def test_no_ris_configured_sends_nothing_but_marks_urgent(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _app(tmp_path, pacs, free_port())
    app.settings = dataclasses.replace(app.settings, ris=RisSettings())
    _process(app, tmp_path)
    assert outbox.messages_of_job(app.db, 1) == []
    app.db.close()


def test_an_urgent_finding_in_a_vendor_sr_raises_the_priority(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """The vendor simulator's SR reports bone age as present; this package calls that
    concept urgent (a stand-in for e.g. a pulmonary embolism from CINA-iPE)."""
    from aifi_app.dicom_node.storage_scu import Peer
    from tests.helpers.packages import make_remote_package
    from tests.helpers.vendor_simulator import BONE_AGE, VendorSimulator
    from tests.pipeline.test_remote_dicom import ROUTE, _run_until_finished, _study

    vendor = VendorSimulator(tmp_path / "vendor", delay=0.2)
    ris = MllpListener("ack")
    base = _settings(tmp_path, pacs.port)
    settings = dataclasses.replace(
        base,
        remote_nodes=(
            *base.remote_nodes,
            RemoteNode("vendor", "VENDOR_SIM", "127.0.0.1", vendor.port, role="vendor"),
            RemoteNode("ris", host="127.0.0.1", port=ris.port, role="ris", protocol="mllp"),
        ),
        routes=(ROUTE,),
        ris=RisSettings(node="ris", retry_initial_seconds=0.01, retry_max_seconds=0.02),
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    urgent = (
        f'urgent_findings = [{{ value = "{BONE_AGE.value}", scheme = "SCT", '
        f'meaning = "{BONE_AGE.meaning}" }}]'
    )
    package = make_remote_package(tmp_path / "package", results_extra=urgent)
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    app.node.start()
    vendor.reply_to = Peer("AIFI", "127.0.0.1", app.node.port)
    try:
        original = _study()
        _receive(app, original, tmp_path)
        job = _run_until_finished(app)
        assert job["state"] == "delivered", job["reason"]
        rows = _send_until_settled(app)
    finally:
        app.node.stop()
        vendor.stop()
        ris.stop()
    assert app.db.query("SELECT urgent FROM jobs")[0]["urgent"] == 1
    assert [(r["message_type"], r["state"]) for r in rows] == [
        ("OMG^O19^OMG_O19", "sent"),
        ("ORU^R01^ORU_R01", "sent"),
    ]
    (result,) = ris.of_type("ORU")
    assert str(result.segment("PID")(3)) == str(original.PatientID)
    coded = next(s for s in result.segments("OBX") if str(s(2)) == "CWE")
    assert str(coded(3)) == f"{BONE_AGE.value}^{BONE_AGE.meaning}^SCT"
    app.db.close()
