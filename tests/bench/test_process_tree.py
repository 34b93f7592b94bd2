"""The bench's process-tree memory sampler sees a grandchild's memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.process_tree import TreePeak, descendants

MB = 1_000_000
# a child that starts a grandchild holding 60 MB (touched), says "ready" and waits
GRANDCHILD = "b = bytearray(60_000_000); print('ready', flush=True); input()"
CHILD = (
    "import subprocess, sys; "
    f"p = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}], stdin=subprocess.PIPE, "
    "stdout=subprocess.PIPE, text=True); "
    "print(p.stdout.readline().strip(), p.pid, flush=True); input(); p.communicate('')"
)


def test_tree_peak_counts_descendants_memory() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        ready, grandchild = child.stdout.readline().split()
        assert ready == "ready"
        assert {child.pid, int(grandchild)} <= set(descendants(os.getpid()))
        with TreePeak(os.getpid(), interval=60) as tree:  # samples on entry and exit
            pass
        assert tree.peak_processes >= 3
        assert tree.child_hwm_bytes >= 60 * MB
        assert tree.peak_bytes >= 60 * MB + _rss_bytes(os.getpid())
        # the grandchild's 60 MB are its own (counted whole); shared pages are split, so
        # the tree's proportional sum is at most its resident sum
        assert 60 * MB <= tree.peak_pss_bytes <= tree.peak_bytes
        # what the peak is made of: the root named "service", the grandchild's 60 MB
        parts = {name: pss for name, _rss, pss in tree.at_pss_peak}
        assert "service" in parts
        assert any(
            name.startswith(f"child {grandchild} (") and pss >= 60 * MB
            for name, pss in parts.items()
        )
    finally:
        child.communicate("\n", timeout=30)
    assert int(grandchild) not in descendants(os.getpid())


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_machines_ticks_grow_and_the_stolen_share_is_a_share() -> None:
    from bench.process_tree import machine_ticks, steal_share

    before = machine_ticks()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # some CPU time passes
        pass
    after = machine_ticks()
    assert after[0] > before[0] >= before[1] >= 0 and after[1] >= before[1]
    assert 0.0 <= steal_share(before, after) <= 1.0
    assert steal_share(after, after) == 0.0
    assert steal_share((100, 10), (200, 30)) == 0.2
