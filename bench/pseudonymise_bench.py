"""Pseudonymisation benchmark: our engine against dicognito, dicom-anonymizer and deid.

Generates the PHI corpus of ``tests/helpers/phi_corpus.py`` (default 300 CT slices 512x512
int16 and 50 radiographs 2500x2000 uint16) on a RAM disk, runs every tool over it in one
process, one after the other, single-threaded, writing to the RAM disk, and prints
instances/s by wall clock and by CPU time of the process (user + system; steadier when
the machine is shared), each the best of ``--rounds`` passes with the tool order rotated
each pass, our speed as a multiple of each tool's, and how many output files still hold
any planted PHI (raw bytes, in every plausible encoding). See bench/README.md.

    .venv/bin/python bench/pseudonymise_bench.py [--ct 300] [--dx 50] [--dir /dev/shm/...]
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aifi_app.pseudonymise import Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo
from tests.helpers.phi_corpus import (
    ENCODINGS,
    NAME_PARTS,
    phi_markers,
    write_ct,
    write_dx,
)

Tool = Callable[[list[Path], Path], None]


def ours(paths: list[Path], out: Path) -> None:
    """As ``aifi-app pseudonymise`` runs: one element memo for the pass (the corpus's
    instances each have their own patient, so it finds little to reuse here; a series
    of one patient is where it pays)."""
    pseudonymiser = Pseudonymiser(b"benchmark-secret-0123456789abcdef", frozenset())
    memo = ElementMemo()
    for path in paths:
        pseudonymise_file(pseudonymiser, path, out / path.name, memo=memo)


def bare_pydicom(paths: list[Path], out: Path) -> None:
    for path in paths:
        pydicom.dcmread(path).save_as(out / path.name)


def dicognito(paths: list[Path], out: Path) -> None:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()
    for path in paths:
        ds = pydicom.dcmread(path)
        anonymizer.anonymize(ds)
        ds.save_as(out / path.name)


def dicom_anonymizer(paths: list[Path], out: Path) -> None:
    from dicomanonymizer import anonymize_dicom_file

    for path in paths:
        anonymize_dicom_file(str(path), str(out / path.name), delete_private_tags=True)


def deid(paths: list[Path], out: Path) -> None:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    replace_identifiers(
        [str(p) for p in paths],
        deid=DeidRecipe(),
        save=True,
        overwrite=True,
        output_folder=str(out),
        remove_private=True,
    )


TOOLS: dict[str, Tool] = {
    "aifi (ours)": ours,
    "bare pydicom read+write": bare_pydicom,
    "dicognito": dicognito,
    "dicom-anonymizer": dicom_anonymizer,
    "deid": deid,
}
PEERS = ("dicognito", "dicom-anonymizer", "deid")


@cache
def _leak_pattern(n: int) -> re.Pattern[bytes]:
    encoded: set[bytes] = set()
    for marker in [*phi_markers(n), *NAME_PARTS]:
        for encoding in ENCODINGS:
            try:
                encoded.add(marker.encode(encoding))
            except UnicodeEncodeError:
                continue
    return re.compile(b"|".join(re.escape(e) for e in sorted(encoded, key=len, reverse=True)))


def leaky_files(out: Path, paths: list[Path]) -> tuple[int, int]:
    """(files with any planted PHI, files missing) among the outputs of ``paths``."""
    leaky = missing = 0
    for path in paths:
        target = out / path.name
        if not target.exists():
            missing += 1
            continue
        if _leak_pattern(int(path.stem[2:])).search(target.read_bytes()):
            leaky += 1
    return leaky, missing


def broken_files(out: Path, paths: list[Path]) -> int:
    """Outputs that pydicom cannot read or whose Pixel Data differs from the input's (an
    output that leaks nothing is no use if its image is not the image)."""
    broken = 0
    for path in paths:
        target = out / path.name
        if not target.exists():
            continue
        try:
            intact = pydicom.dcmread(target).PixelData == pydicom.dcmread(path).PixelData
        except Exception:
            intact = False
        broken += not intact
    return broken


def make_corpus(root: Path, ct: int, dx: int) -> list[Path]:
    stamp = root / f".corpus-{ct}-{dx}"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        list(write_ct(root / "in", ct))
        list(write_dx(root / "in", dx))
        stamp.touch()
    return sorted((root / "in").glob("*.dcm"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=int, default=300)
    parser.add_argument("--dx", type=int, default=50)
    parser.add_argument("--dir", default="/dev/shm/aifi-pseudonymise-bench")
    parser.add_argument("--tools", nargs="*", choices=list(TOOLS), default=list(TOOLS))
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="passes over all tools, in rotated order; each tool's best pass counts",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    root = Path(args.dir)
    start = time.perf_counter()
    paths = make_corpus(root, args.ct, args.dx)
    print(f"corpus: {len(paths)} instances in {root} ({time.perf_counter() - start:.1f} s)")
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    found: dict[str, tuple[int, int, int]] = {}
    for round_number in range(args.rounds):
        shift = round_number % len(args.tools)
        for name in args.tools[shift:] + args.tools[:shift]:
            out = root / "out" / re.sub(r"\W+", "-", name)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            start, start_cpu = time.perf_counter(), time.process_time()
            TOOLS[name](paths, out)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - start_cpu
            best[name] = min(seconds, best.get(name, seconds))
            best_cpu[name] = min(cpu, best_cpu.get(name, cpu))
            if name not in found:
                found[name] = (*leaky_files(out, paths), broken_files(out, paths))
            shutil.rmtree(out, ignore_errors=True)
    rates = {name: len(paths) / seconds for name, seconds in best.items()}
    cpu_rates = {name: len(paths) / seconds for name, seconds in best_cpu.items()}
    rows = [(name, best[name], rates[name], *found[name]) for name in args.tools]
    ours_rate = rates.get("aifi (ours)")
    ours_cpu = cpu_rates.get("aifi (ours)")
    print(
        f"{'tool':26} {'seconds':>8} {'inst/s':>8} {'ours x':>7}"
        f" {'cpu i/s':>8} {'ours x':>7} {'leaky':>6} {'missing':>7} {'broken':>6}"
    )
    for name, seconds, rate, leaky, missing, broken in rows:
        ratio = f"{ours_rate / rate:.2f}" if ours_rate else "-"
        cpu_ratio = f"{ours_cpu / cpu_rates[name]:.2f}" if ours_cpu else "-"
        print(
            f"{name:26} {seconds:8.2f} {rate:8.1f} {ratio:>7}"
            f" {cpu_rates[name]:8.1f} {cpu_ratio:>7} {leaky:6d} {missing:7d} {broken:6d}"
        )
    peers = {name: rates[name] for name in PEERS if name in rates}
    if ours_rate and ours_cpu and peers:
        fastest = max(peers, key=lambda name: peers[name])
        print(
            f"ours / fastest peer ({fastest}): {ours_rate / peers[fastest]:.2f}x wall,"
            f" {ours_cpu / cpu_rates[fastest]:.2f}x CPU (goal 2x, zero leaky files)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
