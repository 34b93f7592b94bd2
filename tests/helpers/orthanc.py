"""A real Orthanc (the hospital PACS) on loopback ports, started and stopped by process id."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.ports import free_port, wait_for_port

ORTHANC = shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
"""Debian package orthanc-dicomweb (``dpkg -L orthanc-dicomweb``; serves /dicom-web/)."""


class Orthanc:
    """Orthanc with its own configuration: HTTP on localhost only, DICOM stores from the
    known modalities only (Orthanc 1.10 listens for DICOM on every interface)."""

    def __init__(
        self,
        workdir: Path,
        modalities: dict[str, tuple[str, str, int]],
        plugins: list[str] | None = None,
        *,
        dicomweb: bool = False,
    ) -> None:
        if ORTHANC is None:
            raise RuntimeError("Orthanc is not installed (Debian package orthanc)")
        self.workdir = workdir
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.aet = "ORTHANC"
        workdir.mkdir(parents=True, exist_ok=True)
        plugin_list = list(plugins or [])
        if dicomweb and DICOMWEB_PLUGIN not in plugin_list:
            plugin_list.append(DICOMWEB_PLUGIN)
        config = {
            "Name": "aifi-test-pacs",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {k: list(v) for k, v in modalities.items()},
            "Plugins": plugin_list,
            "DicomWeb": {"Enable": DICOMWEB_PLUGIN in plugin_list, "Root": "/dicom-web/"},
            "StableAge": 1,
            "HttpTimeout": 30,
        }
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = workdir / "orthanc.log"
        if dicomweb and not Path(DICOMWEB_PLUGIN).is_file():
            raise RuntimeError("Orthanc's DICOMweb plugin is not installed (orthanc-dicomweb)")
        self.dicomweb_url = f"http://127.0.0.1:{self.http_port}/dicom-web"
        self.proc: subprocess.Popen[bytes] | None = None
        self.nodelay = True
        """TCP_NODELAY=1 in Orthanc's environment (its DCMTK keeps Nagle's algorithm on
        without it, as a stock installation does)."""

    def start(self) -> Orthanc:
        """Start it (again, after :meth:`stop`: same ports, same storage)."""
        with self.log_path.open("a") as log:
            self.proc = self._popen(log)
        wait_for_port(self.http_port, 60)
        wait_for_port(self.dicom_port, 60)
        return self

    def _popen(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(ORTHANC), str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if k != "TCP_NODELAY"},
                **({"TCP_NODELAY": "1"} if self.nodelay else {}),
            },
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=30) as rsp:
            body = rsp.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload: Any) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as rsp:
            return json.loads(rsp.read())

    def delete(self, path: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method="DELETE")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance Orthanc holds for the study, with its main tags."""
        found = self.post(
            "/tools/find",
            {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        )
        return [self.get(f"/instances/{i['ID']}/simplified-tags") | {"ID": i["ID"]} for i in found]

    def file(self, instance_id: str) -> bytes:
        data = self.get(f"/instances/{instance_id}/file")
        assert isinstance(data, bytes)
        return data

    def wait_for_instances(
        self, study_uid: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = self.instances_of_study(study_uid)
            if len(found) >= count:
                return found
            time.sleep(0.25)
        return found
