"""``aifi-app serve`` with DICOM TLS from its settings file: a TLS-only node that DCMTK
reaches with its certificate, refuses without one, and results delivered over TLS to a
DCMTK storescp PACS that requires ours."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.pki import CertificateAuthority
from tests.helpers.ports import free_port, wait_for_port
from tests.helpers.tools import DCMTK_BIN, STORESCU, dcmtk_env

pytestmark = pytest.mark.dcmtk


def test_serve_tls_only_receives_and_delivers_over_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ca = CertificateAuthority.create(pki)
    node, modality, pacs = (ca.issue(pki, n) for n in ("aifi", "modality", "pacs"))
    pacs_port, tls_port = free_port(), free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    storescp = subprocess.Popen(
        [str(DCMTK_BIN / "storescp"), "-aet", "PACS", "+tls", str(pacs.key),
         str(pacs.certificate), "+cf", str(ca.certificate_file), "-od", str(received),
         str(pacs_port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = ApplianceProcess(tmp_path / "app", pacs=("PACS", pacs_port), idle_seconds=0.5)
    text = app.config.read_text()
    text = text.replace(
        "[node]\n",
        "[node]\n"
        f"tls_port = {tls_port}\nplain_tcp = false\n"
        f'tls_certificate_file = "{node.certificate}"\ntls_key_file = "{node.key}"\n'
        f'tls_ca_file = "{ca.certificate_file}"\n',
    )
    text += f'tls = true\nca_file = "{ca.certificate_file}"\n'  # the PACS node (last table)
    app.config.write_text(text)
    app.port = tls_port  # what the helper waits on
    try:
        wait_for_port(pacs_port, 20)
        app.start()
        path = write(chest_radiograph(demo_patient(7), phantom_chest()), tmp_path / "in")
        base = [str(STORESCU), "-aet", "STORESCU", "-aec", "AIFI", "-nh"]
        refused = subprocess.run(
            [*base, "127.0.0.1", str(tls_port), str(path)],
            env=dcmtk_env(), capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        sent = subprocess.run(
            [*base, "+tls", str(modality.key), str(modality.certificate),
             "+cf", str(ca.certificate_file), "127.0.0.1", str(tls_port), str(path)],
            env=dcmtk_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        app.wait_for(
            lambda s: [j["state"] for j in s["jobs"]] == ["delivered"],
            what="results delivered over TLS",
        )
        assert len(list(received.iterdir())) == 2
    finally:
        app.stop()
        os.kill(storescp.pid, signal.SIGTERM)
        storescp.wait(10)
    export = tmp_path / "audit.jsonl"
    app.cli("audit", "export", "--format", "jsonl", "--output", str(export))
    assert "does not speak TLS" in export.read_text(encoding="utf-8")
