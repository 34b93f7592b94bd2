"""CPU per slice of ``pseudonymise_file`` on one CT series with the element memo.

The bench CT of ``bench/data.py`` (one patient, 512x512 int16) on the RAM disk; each pass
pseudonymises the whole series with a fresh memo; it prints the CPU time of the process
(user + system) per slice after the first, best of ``--rounds`` passes::

    .venv/bin/python bench/pseudonymise_series_bench.py --slices 60 --rounds 5
    .venv/bin/python bench/pseudonymise_series_bench.py --profile   # cProfile, one pass
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aifi_app.pseudonymise import Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo
from bench.data import make_ct

SECRET = b"benchmark-secret-0123456789abcdef"


def one_pass(paths: list[Path], out: Path) -> float:
    """CPU seconds per slice after the first, for one pass with a fresh memo."""
    pseudonymiser = Pseudonymiser(SECRET, frozenset(), on_pseudonym=lambda *m: None)
    memo = ElementMemo()
    counts: Counter[str] = Counter()
    pseudonymise_file(pseudonymiser, paths[0], out / paths[0].name, counts, memo)
    start = time.process_time()
    for path in paths[1:]:
        pseudonymise_file(pseudonymiser, path, out / path.name, counts, memo)
    return (time.process_time() - start) / (len(paths) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        paths = make_ct(root / "in", args.slices)
        out = root / "out"
        out.mkdir()
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(one_pass, paths, out)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
            return
        per_slice = min(one_pass(paths, out) for _ in range(args.rounds))
        print(f"{args.slices} slices: {per_slice * 1000:.2f} ms CPU per slice after the first")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
