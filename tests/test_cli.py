"""The ``aifi-app`` command line: serve with overrides, status, process-now, retry, echo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from aifi_app.cli import main
from aifi_app.dicom_node.storage_scu import Peer, echo
from tests.helpers.appliance import keyring_env
from tests.helpers.ports import free_port, wait_for_port


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aifi_app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_serve_with_command_line_overrides(tmp_path: Path) -> None:
    env = {**os.environ, **keyring_env(tmp_path)}
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aifi_app",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--ae-title",
            "AIFI_TEST",
            "--pacs",
            "PACS@127.0.0.1:1",
            "--allow",
            "MODALITY",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, 60)
        assert echo(Peer("AIFI_TEST", "127.0.0.1", port), calling_ae_title="MODALITY") == 0
        status = _run("status", "--json", "--data-dir", str(tmp_path / "d"), env=env)
        snap = json.loads(status.stdout)
        assert snap["studies"] == [] and snap["jobs"] == []
        # running; the PACS at port 1 refuses connections, which degrades it once probed
        assert snap["health"]["status"] in ("healthy", "degraded")
        assert status.returncode == snap["health"]["exit_code"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "serving as AIFI_TEST" in out
    assert (tmp_path / "d" / "aifi.sqlite3").exists()
    assert (tmp_path / "d" / "logs" / "aifi-app.log").exists()
    # database, spool, logs, heartbeat: readable by the service's account only
    for path in [tmp_path / "d", *(tmp_path / "d").rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


def test_serve_refuses_to_start_without_a_keyring(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    proc = _run("serve", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()), env=env)
    assert proc.returncode == 3
    assert "no OS keyring is available" in proc.stderr


def test_bad_settings_exit_with_the_reason(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "a.toml"
    cfg.write_text("[node]\nport = 'eleven'\n")
    assert main(["status", "--config", str(cfg)]) == 2
    assert "node.port: expected an integer" in capsys.readouterr().err


def test_process_now_and_retry_on_unknown_rows(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "d")
    assert main(["process-now", "5", "--data-dir", d]) == 1
    assert "study 5 is not receiving" in capsys.readouterr().err
    assert main(["retry", "9", "--data-dir", d]) == 1
    assert "no job 9" in capsys.readouterr().err


def test_settings_reference_and_echo_failure(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["settings"]) == 0
    assert "`node.ae_title`" in capsys.readouterr().out
    assert main(["echo", f"NOBODY@127.0.0.1:{free_port()}"]) == 1
    assert "C-ECHO failed" in capsys.readouterr().err


AIFI = (sys.executable, "-m", "aifi_app")


def test_nodes_set_token_keeps_it_in_the_keyring_only(tmp_path: Path) -> None:
    env = {**os.environ, **keyring_env(tmp_path)}
    config = tmp_path / "aifi.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "d"}"\n\n[[remote_nodes]]\nname = "vendor-api"\n'
        'protocol = "http"\nurl = "https://vendor.example/api"\nrole = "vendor"\n'
    )
    token = "tok-6b1f0c2e9a"
    proc = subprocess.run(
        [*AIFI, "nodes", "set-token", "--config", str(config), "vendor-api"],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "token of vendor-api stored in the OS keyring" in proc.stdout
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from aifi_app.secrets import node_token as t; print(t('vendor-api'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert read.stdout.strip() == token
    assert token not in config.read_text()
    unknown = subprocess.run(
        [*AIFI, "nodes", "set-token", "--config", str(config), "nope"],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert "no remote node named 'nope'" in unknown.stderr
