"""No PHI in anything the appliance writes about its work: a study full of planted PHI
(``tests/helpers/phi_corpus.py``) goes through ``aifi-app serve`` with failures on the way,
and every log line, audit row, status JSON, heartbeat and crash report is scanned.

Failures on the way: the PACS is down (results wait, with the reason), a CT no route takes
(no_match, with the reason), an instance without a Study Instance UID (0xA900), a
truncated data set (a failure status), a calling AE title that is not allowed, and a
plain-TCP client on the TLS-less node's port speaking garbage.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo, send_files
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.phi_corpus import NAME_PARTS, phi_markers, write_ct, write_dx
from tests.helpers.ports import free_port
from tests.helpers.tools import storescu

pytestmark = pytest.mark.dcmtk


def _markers(numbers: range) -> set[str]:
    found: set[str] = set(NAME_PARTS)
    for n in numbers:
        found.update(m for m in phi_markers(n) if len(m) >= 6)
    return found


def test_no_planted_phi_in_logs_audit_status_or_crash_reports(tmp_path: Path) -> None:
    dead_pacs = free_port()  # nothing listens there: the PACS is down
    app = ApplianceProcess(tmp_path / "app", pacs=("PACS", dead_pacs), idle_seconds=0.5)
    app.start()
    try:
        dx = list(write_dx(tmp_path / "dx", 2, rows=256, columns=256))
        ct = list(write_ct(tmp_path / "ct", 2, size=64))
        storescu(dx + ct, app.port)
        peer = Peer(app.ae_title, "127.0.0.1", app.port)
        # an instance without Study Instance UID
        ds = dcmread(dx[0])
        del ds.StudyInstanceUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"
        no_study = tmp_path / "bad" / "no_study.dcm"
        no_study.parent.mkdir()
        ds.save_as(no_study, enforce_file_format=True)
        (outcome,) = send_files(peer, [no_study], calling_ae_title="STORESCU")
        assert outcome.status == 0xA900
        # a data set cut off in the middle of its PHI
        raw = dx[1].read_bytes()
        cut = raw.index(b"PHIADDRESS")
        truncated = tmp_path / "bad" / "truncated.dcm"
        truncated.write_bytes(raw[: cut + 4])
        outcomes = send_files(peer, [truncated], calling_ae_title="STORESCU")
        assert not outcomes[0].ok
        # a caller that is not allowed, and a client that does not speak DICOM
        with pytest.raises(AssociationFailed):
            echo(peer, calling_ae_title="INTRUDER")
        with socket.create_connection(("127.0.0.1", app.port)) as s:
            s.sendall(b"\x01\x00\x00\x00\x00\x10PHIGARBAGE-Jansen")
        app.wait_for(
            lambda snap: any(j["state"] == "result_received" and j["attempts"] > 0
                             for j in snap["jobs"])
            and any(s["state"] == "no_match" for s in snap["studies"]),
            what="results waiting for the dead PACS and the CT without a route",
        )  # fmt: skip
        status_proc = app.cli("status", "--json", check=False)
        status_text = status_proc.stdout
        assert status_proc.returncode == 1  # degraded: results wait for the PACS
    finally:
        app.stop()
    export = tmp_path / "audit.jsonl"
    app.cli("audit", "export", "--format", "jsonl", "--output", str(export))
    plain_status = json.loads(status_text)
    assert any("not reachable" in (j["reason"] or "") for j in plain_status["jobs"])

    texts: dict[str, str] = {
        "status --json": status_text,
        "audit export": export.read_text(encoding="utf-8"),
        "serve output": app.log_path.read_text(encoding="utf-8", errors="replace"),
    }
    data = app.data_dir
    for folder in ("logs", "crash"):
        for path in sorted((data / folder).glob("*")):
            texts[str(path.relative_to(data))] = path.read_text(encoding="utf-8", errors="replace")
    texts["health.json"] = (data / "health.json").read_text(encoding="utf-8")
    # the failures were written about (so the scan below looks at real fault texts)
    audit_text = texts["audit export"]
    for needle in ("0xA900", "store_refused", "'INTRUDER'", "no_match", "not reachable"):
        assert needle in audit_text or needle in status_text, needle
    found = {
        (where, marker)
        for where, text in texts.items()
        for marker in _markers(range(1, 3))
        if marker in text
    }
    assert found == set(), f"planted PHI found: {sorted(found)}"
