"""The two ways of moving a received file into the spool durably, timed on this disk.

    .venv/bin/python bench/durable_move_bench.py [--folder DIR] [--moves 60] [--rounds 4]

"named first": the file gets its spool name, then one flush of the file carries data and
name (one journal commit), then the folder's flush (nothing left to commit). "flushed
first": the file is flushed under its incoming name, renamed, and the folder's flush is
a second journal commit. Both as :func:`aifi_app.dicom_node.spool.durable_move` does them
(checksummed / not); 0.5 MB files like the bench's CT slices, rounds alternating. Run it
while the disk is quiet and while other work writes to it: the difference is in the
second case. The folder must be on the data volume's file system (default: a temporary
folder under the current directory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZE = 512 * 1024 + 1000


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    return fd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", type=Path, default=Path.cwd())
    parser.add_argument("--moves", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    data = os.urandom(SIZE)
    times: dict[str, list[float]] = {}

    def timed(name: str, step: Callable[[], None]) -> None:
        started = time.perf_counter()
        step()
        times.setdefault(name, []).append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory(dir=args.folder, prefix="durable-move-") as tmp:
        incoming, spool = Path(tmp) / "incoming", Path(tmp) / "spool"
        incoming.mkdir()
        spool.mkdir()
        for n in range(args.rounds * args.moves):
            src, dest = incoming / f"{n}.dcm", spool / f"{n}.dcm"
            fd = _write(src, data)
            if (n // args.moves) % 2 == 0:
                os.close(fd)
                os.link(src, dest)
                src.unlink()
                timed("named first: file flush", lambda d=dest: _flush(d))
                timed("named first: folder flush", lambda: _flush(spool))
            else:
                timed("flushed first: file flush", lambda f=fd: os.fsync(f))
                os.close(fd)
                src.rename(dest)
                timed("flushed first: folder flush", lambda: _flush(spool))
    for name, values in times.items():
        print(
            f"{name:<30} median {1000 * statistics.median(values):6.2f} ms"
            f"  mean {1000 * statistics.mean(values):6.2f} ms  ({len(values)} moves)"
        )


if __name__ == "__main__":
    main()
