"""Receiving over DICOM TLS against plain TCP: DCMTK storescu (TCP_NODELAY=1) sends the
same CT slices to our node's plain port and its TLS port (certificates made at run time).

    .venv/bin/python bench/tls_ingest_bench.py --slices 100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.net.tls import TlsIdentity, server_context
from aifi_app.store.database import Database
from aifi_app.store.receiving import IdleTimes
from tests.helpers.file_keyring import file_keyring
from tests.helpers.phi_corpus import write_ct
from tests.helpers.pki import CertificateAuthority
from tests.helpers.ports import free_port
from tests.helpers.tools import STORESCU, dcmtk_env


def _send(files: list[Path], port: int, tls: list[str]) -> float:
    args = [str(STORESCU), "-aet", "BENCH", "-aec", "AIFI", "-nh", *tls]
    start = time.perf_counter()
    subprocess.run(
        [*args, "127.0.0.1", str(port), *map(str, files)],
        env=dcmtk_env(), check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, file_keyring(Path(tmp_name)):
        tmp = Path(tmp_name)
        ca = CertificateAuthority.create(tmp / "pki")
        node_cert, client = ca.issue(tmp / "pki", "node"), ca.issue(tmp / "pki", "bench")
        files = list(write_ct(tmp / "ct", args.slices, size=512))
        mb = sum(f.stat().st_size for f in files) / 1e6
        context = server_context(
            TlsIdentity(node_cert.certificate, node_cert.key),
            ca_file=ca.certificate_file,
            require_client_certificate=True,
        )
        tls = ["+tls", str(client.key), str(client.certificate), "+cf", str(ca.certificate_file)]
        results = []
        for label in ("plain TCP", "DICOM TLS"):
            data = tmp / f"data-{len(results)}"
            db = Database(data / "q.db")
            node = StorageNode(
                NodeConfig("AIFI", "127.0.0.1", free_port(), ("BENCH",), 131072, 60,
                           tls_context=context, tls_port=0),
                db, data, idle_seconds_for=IdleTimes(300.0), late_policy="follow_up",
            )  # fmt: skip
            node.start()
            try:
                if label == "plain TCP":
                    seconds = _send(files, node.port, [])
                else:
                    seconds = _send(files, node.tls_port, tls)
            finally:
                node.stop()
                db.close()
            results.append((label, seconds))
        print(f"{args.slices} CT slices 512x512, {mb:.0f} MB, DCMTK storescu -> our node")
        for label, seconds in results:
            print(f"  {label:<18} {seconds:6.2f} s  {mb / seconds:6.1f} MB/s")


if __name__ == "__main__":
    main()
