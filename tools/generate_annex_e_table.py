"""Generate ``aifi_app/pseudonymise/annex_e_table.py`` from DICOM PS3.15 Table E.1-1.

The source is the machine-readable Table E.1-1 (Application Level Confidentiality Profile
Attributes) published by github.com/innolitics/dicom-standard as
``standard/confidentiality_profile_attributes.json``. The appliance never reads that JSON at
run time: this tool turns it into a small Python module of compact tuples, which is checked in.

Usage (from the repository root)::

    python tools/generate_annex_e_table.py [SOURCE_JSON] [--output PATH] [--check]

``--check`` writes nothing and exits with status 1 when the checked-in module differs from
what the source would generate (used by the tests and CI).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT / "../shared/data/ps3.15/confidentiality_profile_attributes.json"
DEFAULT_OUTPUT = REPO_ROOT / "aifi_app/pseudonymise/annex_e_table.py"
REGENERATE_COMMAND = "python tools/generate_annex_e_table.py"

SOURCE_REPOSITORY = "github.com/innolitics/dicom-standard"
SOURCE_PATH = "standard/confidentiality_profile_attributes.json"
SOURCE_COMMIT = "7f4749d09ed3ef2fa70637d376d423a4b13523cd"
EDITION = "2024b"
LICENCE = "MIT, Copyright (c) 2017 Innolitics, LLC"
EXPECTED_ROW_COUNT = 621

# The option columns in Table E.1-1 order (left to right in the standard).
OPTION_COLUMNS: tuple[str, ...] = (
    "rtnSafePrivOpt",
    "rtnUIDsOpt",
    "rtnDevIdOpt",
    "rtnInstIdOpt",
    "rtnPatCharsOpt",
    "rtnLongFullDatesOpt",
    "rtnLongModifDatesOpt",
    "cleanDescOpt",
    "cleanStructContOpt",
    "cleanGraphOpt",
)
BASIC_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
OPTION_CODES = frozenset({"K", "C"})
KNOWN_KEYS = frozenset({"name", "tag", "id", "stdCompIOD", "basicProfile", *OPTION_COLUMNS})


class SourceError(ValueError):
    """The source JSON does not have the shape this generator understands."""


def load_rows(source: Path) -> list[dict[str, str]]:
    """Read and validate the source JSON; returns its rows in source order.

    Raises :class:`SourceError` on an unknown key, action code or row count, so that a
    change of the upstream format cannot silently produce a wrong table.
    """
    rows = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or len(rows) != EXPECTED_ROW_COUNT:
        raise SourceError(f"expected a list of {EXPECTED_ROW_COUNT} rows")
    for index, row in enumerate(rows):
        unknown = set(row) - KNOWN_KEYS
        if unknown:
            raise SourceError(f"row {index}: unknown keys {sorted(unknown)}")
        if row["basicProfile"] not in BASIC_CODES:
            raise SourceError(f"row {index}: unknown basic profile code {row['basicProfile']!r}")
        if row["stdCompIOD"] not in ("Y", "N"):
            raise SourceError(f"row {index}: unknown stdCompIOD {row['stdCompIOD']!r}")
        for column in OPTION_COLUMNS:
            if column in row and row[column] not in OPTION_CODES:
                raise SourceError(f"row {index}: unknown {column} code {row[column]!r}")
    return rows


def render(rows: Sequence[dict[str, str]], source_sha256: str) -> str:
    """Return the text of the generated module; the same input always gives the same text."""
    lines = [
        '"""DICOM PS3.15 Table E.1-1, Application Level Confidentiality Profile Attributes.',
        "",
        "GENERATED FILE - DO NOT EDIT. Regenerate from the repository root with:",
        "",
        f"    {REGENERATE_COMMAND}",
        "",
        f"Source: {SOURCE_REPOSITORY}, {SOURCE_PATH}",
        f"at commit {SOURCE_COMMIT} (DICOM edition {EDITION}).",
        f"Source data licence: {LICENCE}.",
        "",
        "Each row is (tag pattern as printed in the standard, attribute name, in the standard",
        "composite IODs, Basic Profile action code, ((option column, action code), ...)).",
        "Option columns are named as in the source JSON; see profile_options.ProfileOption.",
        '"""',
        "",
        "from typing import Final",
        "",
        f"SOURCE_REPOSITORY: Final = {SOURCE_REPOSITORY!r}",
        f"SOURCE_PATH: Final = {SOURCE_PATH!r}",
        f"SOURCE_COMMIT: Final = {SOURCE_COMMIT!r}",
        f"SOURCE_SHA256: Final = {source_sha256!r}",
        f"EDITION: Final = {EDITION!r}",
        f"LICENCE: Final = {LICENCE!r}",
        "",
        "OPTION_COLUMNS: Final[tuple[str, ...]] = (",
        *(f"    {column!r}," for column in OPTION_COLUMNS),
        ")",
        "",
        "Row = tuple[str, str, bool, str, tuple[tuple[str, str], ...]]",
        "",
        "ROWS: Final[tuple[Row, ...]] = (",
    ]
    for row in rows:
        options = tuple((column, row[column]) for column in OPTION_COLUMNS if column in row)
        entry = (row["tag"], row["name"], row["stdCompIOD"] == "Y", row["basicProfile"], options)
        lines.append(f"    {entry!r},")
    lines += [")", ""]
    return "\n".join(lines)


def generate(source: Path) -> str:
    """Read ``source`` and return the generated module text."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return render(load_rows(source), digest)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="compare with OUTPUT instead of writing it"
    )
    args = parser.parse_args(argv)
    text = generate(args.source)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
