"""The appliance as a separate process (``aifi-app serve``), so tests can SIGKILL it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.process_tree import descendants
from tests.helpers.ports import free_port, wait_for_port


def keyring_env(home: Path) -> dict[str, str]:
    """A file keyring for tests (a CI machine has no Secret Service); never for production."""
    return {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
    }


class ApplianceProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        pacs: tuple[str, int] | None,
        allowed: tuple[str, ...] = ("STORESCU",),
        idle_seconds: float = 1.0,
        extra_toml: str = "",
        port: int | None = None,
        storage_toml: str = "",
        completion_toml: str = "",
        node_toml: str = "",
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = port or free_port()
        self.ae_title = "AIFI"
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "[node]",
            f'ae_title = "{self.ae_title}"',
            f"port = {self.port}",
            f"allowed_calling_ae_titles = {json.dumps(list(allowed))}",
            node_toml,
            "[completion]",
            f"idle_seconds = {idle_seconds}",
            completion_toml,
            "[storage]",
            f'data_dir = "{self.data_dir}"',
            storage_toml,
            "[delivery]",
            "retry_initial_seconds = 0.5",
            "retry_max_seconds = 2.0",
        ]
        if pacs is not None:
            lines += [
                'pacs = "PACS"',
                "[[remote_nodes]]",
                'name = "PACS"',
                f'ae_title = "{pacs[0]}"',
                'host = "127.0.0.1"',
                f"port = {pacs[1]}",
            ]
        self.config = workdir / "aifi.toml"
        self.config.write_text("\n".join(lines) + "\n" + extra_toml)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, **keyring_env(workdir)}
        self.log_path = workdir / "serve.log"

    def start(self, failpoints: str = "") -> ApplianceProcess:
        env = dict(self.env)
        env.pop("AIFI_FAILPOINTS", None)
        if failpoints:
            env["AIFI_FAILPOINTS"] = failpoints
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aifi_app", "serve", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                # tried every 5 ms: the start-up benchmark's figure is this wait
                wait_for_port(self.port, 0.5, interval=0.005)
                return self
            except TimeoutError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"appliance did not start ({self.proc.poll()}):\n"
                        + self.log_path.read_text()[-3000:]
                    ) from None

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aifi_app", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=check,
        )

    def status(self) -> dict[str, Any]:
        """``status --json``; its exit code is the health (0 healthy, 1 degraded, 2 down)."""
        proc = self.cli("status", "--json", check=False)
        if proc.returncode not in (0, 1, 2) or not proc.stdout:
            raise AssertionError(f"status failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out: dict[str, Any] = json.loads(proc.stdout)
        assert out["health"]["exit_code"] == proc.returncode
        return out

    def wait_for(
        self, predicate: Any, timeout: float = 90, what: str = "condition"
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline:
            snap = self.status()
            if predicate(snap):
                return snap
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"appliance exited ({self.proc.returncode}) waiting for {what}:"
                    f"\n{self.log_path.read_text()[-3000:]}"
                )
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(snap)[:3000]}")

    def cpu_seconds(self) -> float:
        """The CPU time so far (user and system, Linux) of the service and its child
        processes (the receiver processes, the pre-pseudonymiser)."""
        assert self.proc is not None
        ticks = 0
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # ended meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def settle(self, quiet_seconds: float = 2.0, limit: float = 15.0) -> None:
        """Wait until the service has finished starting: its port accepts within ~1 s of
        launch, but it loads the worker's model runtime and the pre-pseudonymiser once
        its node has been quiet for 1 s (``aifi_app.service.START_QUIET_SECONDS``), for
        about a second more. Settled: under 5 % of a core for ``quiet_seconds`` (longer
        than that quiet time, so that the loading has begun)."""
        deadline = time.monotonic() + limit
        quiet = 0.0
        before = self.cpu_seconds()
        while quiet < quiet_seconds and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.cpu_seconds()
            quiet = quiet + 0.2 if now - before < 0.01 else 0.0
            before = now

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory (VmHWM) so far."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")


def all_jobs(state: str, count: int):  # type: ignore[no-untyped-def]
    def check(snap: dict[str, Any]) -> bool:
        jobs = snap["jobs"]
        return len(jobs) >= count and all(j["state"] == state for j in jobs)

    return check
