"""Files pseudonymised one after another, as a pass over a series meets them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aifi_app.pseudonymise import ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo

Mapping = tuple[str, str, str]
Result = tuple[bytes, list[Mapping], Counter[str]]


def pseudonymise_each(
    secret: bytes,
    options: frozenset[ProfileOption],
    sources: list[Path],
    folder: Path,
    memo: ElementMemo | None,
    *,
    pixels_copied: bool = False,
) -> list[Result]:
    """Each source pseudonymised in order into ``folder`` by one pseudonymiser; per file
    its bytes, the pseudonym mappings it made and its counts. ``pixels_copied``: each
    file's Pixel Data must have been copied raw."""
    out = []
    mappings: list[Mapping] = []
    pseudonymiser = Pseudonymiser(secret, options, on_pseudonym=lambda *m: mappings.append(m))
    for source in sources:
        mappings.clear()
        counts: Counter[str] = Counter()
        target = folder / source.name
        copied = pseudonymise_file(pseudonymiser, source, target, counts, memo)
        assert copied or not pixels_copied
        out.append((target.read_bytes(), list(mappings), counts))
    return out
