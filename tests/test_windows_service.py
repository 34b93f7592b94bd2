"""The Windows service host's portable part: serve until told to stop, by an event.

The Service Control Manager side (ctypes, advapi32) runs only on Windows and is on the
release checklist (installer/README.md); here: the arguments it takes, and that the
appliance it runs stops cleanly when the event is set (the SCM's "stop"), not a signal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aifi_app import windows_service
from aifi_app.dicom_node.storage_scu import Peer, echo
from tests.helpers.appliance import keyring_env
from tests.helpers.ports import free_port, wait_for_port


def test_the_service_takes_the_serve_arguments() -> None:
    args = windows_service.serve_arguments(["--port", "104", "--ae-title", "AIFI_RAD"])
    assert (args.command, args.port, args.ae_title) == ("serve", 104, "AIFI_RAD")
    with pytest.raises(SystemExit):
        windows_service.serve_arguments(["--port", "not-a-port"])


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal off Windows")
def test_off_windows_it_refuses_and_points_to_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert windows_service.main([]) == 2
    assert "aifi-app serve" in capsys.readouterr().err


def test_console_output_goes_to_a_file_in_the_data_folder(tmp_path: Path) -> None:
    saved = sys.stdout, sys.stderr
    try:
        stream = windows_service._console_to_file(tmp_path)
        print("hello from the service")
        stream.close()
    finally:
        sys.stdout, sys.stderr = saved
    assert "hello from the service" in (tmp_path / "logs" / "service-console.log").read_text()


def test_serve_stops_when_its_event_is_set(tmp_path: Path) -> None:
    port = free_port()
    stop_file = tmp_path / "stop"
    script = textwrap.dedent(
        f"""
        import pathlib, threading, time
        from aifi_app import cli, windows_service
        args = windows_service.serve_arguments(
            ["--data-dir", {str(tmp_path / "d")!r}, "--port", "{port}", "--ae-title", "SVC",
             "--allow", "MODALITY"])
        stop = threading.Event()
        result = []
        worker = threading.Thread(target=lambda: result.append(cli.serve(args, stop)))
        worker.start()
        while not pathlib.Path({str(stop_file)!r}).exists():
            time.sleep(0.1)
        stop.set()
        worker.join(60)
        print("returned", result)
        """
    )
    env = {**os.environ, **keyring_env(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, 60)
        assert echo(Peer("SVC", "127.0.0.1", port), calling_ae_title="MODALITY") == 0
    finally:
        stop_file.touch()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "returned [0]" in out
