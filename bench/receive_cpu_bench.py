"""The node's own CPU for each received instance, one process: steadier than wall clock.

The DICOM node (:class:`~aifi_app.dicom_node.storage_scp.StorageNode`) runs on a thread
of this process (``receive_processes = 0``), with its queue database and a disk floor as
the service configures them, on the real disk (its flushes are part of the cost); DCMTK
``storescu`` (``TCP_NODELAY=1``) sends a CT over one association, and the figure is this
process's CPU time (user and system, ``time.process_time``) over the send, per instance; the
sender's CPU is its own process's, not counted. Each round gets a fresh data folder;
the best and the median of ``--rounds`` are printed.

    .venv/bin/python bench/receive_cpu_bench.py --slices 500 --rounds 7

On the two-core development machine a round of 500 slices takes about 2 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskFloor, DiskGuard
from aifi_app.store.receiving import IdleTimes
from bench import data
from bench.peers import SEND_STEAL, storescu
from tests.helpers.ports import free_port


def one_round(work: Path, ct: list[Path]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for one CT sent to a fresh node."""
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    db = Database(data_dir / "queue.db")
    node = StorageNode(
        NodeConfig("AIFI", "127.0.0.1", free_port(), ("STORESCU",), 131072, 30),
        db,
        data_dir,
        idle_seconds_for=IdleTimes(600.0),
        late_policy="follow_up",
        disk_guard=DiskGuard(data_dir, DiskFloor(min_free_mb=1024, min_free_percent=5)),
    )
    node.start()
    try:
        time.sleep(1.5)  # the spare incoming files made (the node quiet)
        before = time.process_time()
        wall = storescu(ct, node.port, called="AIFI")
        cpu = time.process_time() - before
        stored = db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"]
        if stored != len(ct):
            raise RuntimeError(f"the node recorded {stored} of {len(ct)} instances")
    finally:
        node.stop()
        db.close()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aifi-receive-cpu-") as tmp:
        work = Path(tmp)
        ct = data.make_ct(work / "ct", args.slices)
        one_round(work, ct[:20])  # warm: imports, the first association
        cpus, walls = [], []
        for n in range(args.rounds):
            cpu, wall = one_round(work, ct)
            cpus.append(cpu)
            walls.append(wall)
            per = 1000 * cpu / len(ct)
            stolen = SEND_STEAL[-1]  # (a round at 10-20% steal reads the host, not the node)
            print(
                f"  round {n + 1}: {per:.3f} ms CPU an instance, {wall:.2f} s;"
                f" the host's steal of the CPUs {stolen:.0%}",
                flush=True,
            )
    per_instance = [1000 * c / len(ct) for c in cpus]
    print(
        f"node CPU an instance: best {min(per_instance):.3f} ms,"
        f" median {statistics.median(per_instance):.3f} ms;"
        f" wall median {statistics.median(walls):.2f} s ({len(ct)} slices, one association)"
    )


if __name__ == "__main__":
    main()
