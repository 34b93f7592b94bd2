"""``python -m bench [--quick] [--only SECTION ...]``: every benchmark, ours beside the peer's.

Prints one table: for each benchmark our median, the peer's median in the same run, and
the ratio (our throughput over the peer's; above 1 means we are faster). See README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import appliance_runs, behind_ct, data, send_runs
from bench.peers import SEND_STEAL, StoreSCP, clear_orthanc, start_orthanc, storescu
from bench.report import Row, median_of


def ingest(work: Path, ct: list[Path], rx: list[Path], runs: int) -> list[Row]:
    """Ours, storescp and Orthanc in turn, run by run: each run of ours sits beside the
    peers' runs made straight after it, under the same load (this machine is shared, and
    our durable stores feel a busy disk where ``storescp`` does not)."""
    ct_mb, rx_mb = data.size_of(ct) / 1e6, data.size_of(rx) / 1e6
    quarters = [ct[i::4] for i in range(4)]
    times: dict[str, list[float]] = {}
    steals: dict[str, list[float]] = {}  # the host's share of the CPUs during each send

    def timed(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)
        steals.setdefault(name, []).append(SEND_STEAL[-1] if SEND_STEAL else 0.0)

    scp = StoreSCP(work / "storescp", nodelay=True).start()
    fork = StoreSCP(work / "storescp-fork", nodelay=True, fork=True).start()
    orthanc = start_orthanc(work / "orthanc-ingest", nodelay=True)
    try:

        def to_scp(paths: list[Path]) -> float:
            scp.clear()
            return storescu(paths, scp.port, called=scp.ae_title)

        def to_fork() -> float:
            fork.clear()
            return appliance_runs.concurrent_storescu(quarters, fork.port, fork.ae_title)

        def to_orthanc(groups: list[list[Path]]) -> float:
            clear_orthanc(orthanc)
            return appliance_runs.concurrent_storescu(groups, orthanc.dicom_port, orthanc.aet)

        for _ in range(runs):
            timed("ours_ct", appliance_runs.ingest(work / "a", [ct]))
            timed("scp_ct", to_scp(ct))
            timed("orthanc_ct", to_orthanc([ct]))
            # with a route that takes the CT: pseudonymised in the background meanwhile
            timed("ours_routed", appliance_runs.ingest(work / "a", [ct], appliance_runs.CT_ROUTE))
            timed("ours_rx", appliance_runs.ingest(work / "a", [rx]))
            timed("ours_rx_at_once", appliance_runs.ingest(work / "a", [rx], settle=False))
            timed("scp_rx", to_scp(rx))
            timed("orthanc_rx", to_orthanc([rx]))
            timed("ours_4", appliance_runs.ingest(work / "a", quarters))
            timed("fork_4", to_fork())
            timed("orthanc_4", to_orthanc(quarters))
    finally:
        orthanc.stop()
        fork.stop()
        scp.stop()
    m = {name: statistics.median(values) for name, values in times.items()}
    n = len(ct)
    # each run of ours beside the peer's made straight after it (the goal: >= 0.5x in every run)
    pairs = [("ours_ct", "scp_ct"), ("ours_routed", "scp_ct"), ("ours_4", "fork_4")]
    pairs += [("ours_rx", "scp_rx"), ("ours_rx_at_once", "scp_rx")]
    for run in range(runs):
        ratios = ", ".join(
            f"{ours} {times[peer][run] / times[ours][run]:.2f}x" for ours, peer in pairs
        )
        stolen = ", ".join(
            f"{name} {steals[name][run]:.0%}" for name in ("ours_ct", "scp_ct", "ours_4", "fork_4")
        )
        print(f"  ingest run {run + 1}, ours over storescp: {ratios}", flush=True)
        print(f"    the host's steal of the CPUs during the sends: {stolen}", flush=True)
    return [
        Row(f"ingest CT {n} slices", m["ours_ct"], "storescp", m["scp_ct"], megabytes=ct_mb),
        Row(f"ingest CT {n} slices", m["ours_ct"], "Orthanc", m["orthanc_ct"], megabytes=ct_mb),
        Row(f"ingest CT {n}, routed", m["ours_routed"], "storescp", m["scp_ct"], megabytes=ct_mb),
        Row(
            "ingest CT, 4 associations",
            m["ours_4"],
            "storescp --fork",
            m["fork_4"],
            megabytes=ct_mb,
        ),
        Row("ingest CT, 4 associations", m["ours_4"], "Orthanc", m["orthanc_4"], megabytes=ct_mb),
        Row("ingest radiograph study (2)", m["ours_rx"], "storescp", m["scp_rx"], megabytes=rx_mb),
        Row(
            "ingest radiograph study (2)", m["ours_rx"], "Orthanc", m["orthanc_rx"], megabytes=rx_mb
        ),
        Row(
            "ingest radiograph (2), sent at start",
            m["ours_rx_at_once"],
            "storescp",
            m["scp_rx"],
            megabytes=rx_mb,
        ),
    ]


def send(work: Path, ct: list[Path], runs: int) -> list[Row]:
    ct_mb = data.size_of(ct) / 1e6
    rows = []
    scp = StoreSCP(work / "storescp-stock", nodelay=False).start()
    try:

        def ours_scp() -> float:
            scp.clear()
            return send_runs.our_scu(ct, scp.port, scp.ae_title)

        def dcmtk_scp() -> float:
            scp.clear()
            return storescu(ct, scp.port, called=scp.ae_title)

        rows.append(
            Row(
                "send CT to stock storescp",
                median_of(runs, ours_scp),
                "DCMTK storescu",
                median_of(1, dcmtk_scp),  # Nagle-bound, 25 s and steady: one run
                megabytes=ct_mb,
            )
        )
    finally:
        scp.stop()
    tuned = StoreSCP(work / "storescp-nodelay", nodelay=True).start()
    try:

        def ours_tuned() -> float:
            tuned.clear()
            return send_runs.our_scu(ct, tuned.port, tuned.ae_title)

        def dcmtk_tuned() -> float:
            tuned.clear()
            return storescu(ct, tuned.port, called=tuned.ae_title)

        rows.append(
            Row(
                "send CT to storescp TCP_NODELAY=1",
                median_of(runs, ours_tuned),
                "DCMTK storescu",
                median_of(runs, dcmtk_tuned),
                megabytes=ct_mb,
            )
        )
    finally:
        tuned.stop()
    orthanc = start_orthanc(work / "orthanc-stock", nodelay=False)
    try:

        def ours_orthanc() -> float:
            clear_orthanc(orthanc)
            return send_runs.our_scu(ct, orthanc.dicom_port, orthanc.aet)

        def dcmtk_orthanc() -> float:
            clear_orthanc(orthanc)
            return storescu(ct, orthanc.dicom_port, called=orthanc.aet)

        rows.append(
            Row(
                "send CT to stock Orthanc",
                median_of(runs, ours_orthanc),
                "DCMTK storescu",
                median_of(1, dcmtk_orthanc),  # Nagle-bound, 25 s and steady: one run
                megabytes=ct_mb,
            )
        )
    finally:
        orthanc.stop()
    return rows


def settle_disk() -> None:
    """Before a section: the earlier sections' writes on disk (``sync``), so that a
    section does not pay for the gigabytes another one wrote and deleted (measured: the
    CT's 370-470 links into its job's folder took 0.16-0.27 s right after the ingest and
    send sections, 0.02-0.06 s with the disk at rest). Prints how long it took."""
    started = time.monotonic()
    os.sync()
    took = time.monotonic() - started
    if took > 0.5:
        print(f"  (the disk took {took:.1f} s to take the earlier sections' writes)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="100 slices, one run each (a smoke test)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["ingest", "send", "e2e", "behind", "memory", "startup", "gui"],
        help="run only these sections",
    )
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [node] setting for our appliance in the ingest runs, e.g. receive_processes=0",
    )
    parser.add_argument(
        "--memory-cts",
        type=int,
        default=appliance_runs.LATER_CTS + 1,
        metavar="N",
        help="CTs through one appliance in the memory section (a long run: 30)",
    )
    args = parser.parse_args()
    if args.memory_cts < 2:
        parser.error("--memory-cts: at least 2 (the first CT and one after it)")
    appliance_runs.NODE_TOML = "\n".join(args.node)
    runs = 1 if args.quick else args.runs
    slices = 100 if args.quick else 500
    sections = set(args.only or ["ingest", "send", "e2e", "behind", "memory", "startup", "gui"])
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aifi-bench-") as tmp:
        work = Path(tmp)
        needs_data = bool(sections - {"gui"})
        ct = data.make_ct(work / "ct", slices) if needs_data else []
        rx = data.make_radiograph_study(work / "rx") if needs_data else []
        if "ingest" in sections:
            settle_disk()
            rows += ingest(work, ct, rx, runs)
        if "send" in sections:
            settle_disk()
            rows += send(work, ct, runs)
        if "e2e" in sections:
            settle_disk()
            rows += appliance_runs.end_to_end(work, rx, runs)
            rows += appliance_runs.end_to_end_ct(work, ct, runs)
        if "behind" in sections:
            settle_disk()
            rows += behind_ct.radiograph_behind_ct(work, slices, runs)
        if "memory" in sections:
            settle_disk()
            rows += appliance_runs.memory(work, ct, args.memory_cts - 1)
        if "startup" in sections:
            settle_disk()
            rows += appliance_runs.startup(work, max(runs, 3))
    if "gui" in sections:
        # the desktop window on 100,000 jobs (no peer: figures against the goals)
        from bench import gui_bench

        gui_lines = gui_bench.run(10_000 if args.quick else 100_000, 5.0 if args.quick else 10.0)
        print("\ndesktop window (goal: open < 2 s, worst GUI-thread stall < 50 ms):")
        for line in gui_lines:
            print("  " + line)
    print(f"\n{'benchmark':<38} {'ours (median)':<22} {'peer':<24} {'peer (median)':<22} ratio")
    for row in rows:
        print(row.line())
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nload average at the end {load} on {os.cpu_count()} CPUs;"
        f" {runs} run(s) per figure; ratio = our throughput / the peer's (>1: we are faster);"
        f" whole run {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
