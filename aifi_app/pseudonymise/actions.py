"""Resolve Table E.1-1 action codes into one concrete action per tag for chosen options.

Resolution of one row, in this order:

1. **Options override the Basic Profile.** When a selected option has a code in the row, that
   code replaces the Basic Profile code.
2. **Conflicts between selected options: the more protective code wins.** Option columns only
   hold K (keep) and C (clean); C beats K. The only practical conflicts are Retain
   Longitudinal Full Dates (K) with Modified Dates (C), where the dates are shifted, and
   Retain Device Identity (K) with Modified Dates (C) on calibration dates, likewise shifted.
3. **C (clean)** is carried out only where the appliance can clean: dates under Retain
   Longitudinal Temporal Information with Modified Dates (DA and DT shifted by a per-patient
   offset; TM kept), and free text (LO, SH, LT, ST, UT) under Clean Descriptors, reduced to
   a safe vocabulary by :mod:`aifi_app.pseudonymise.clean_descriptors`. Any other C
   (structured content, graphics, device and patient characteristics options, descriptor
   sequences and bulk data) falls back to the row's Basic Profile code, which removes or
   blanks the content: the option permits cleaning, it never requires keeping.
4. **Combined codes** (X/Z, X/D, Z/D, X/Z/D, X/Z/U*): the appliance de-identifies whole
   instances, so it takes the strictest action the IOD permits: X (or Z for Z/D) for an
   optional attribute, Z for a Type 2 attribute, D (or U, replacing the UIDs inside the
   sequence) for a Type 1 attribute. Types come from
   :mod:`aifi_app.pseudonymise.iod_requirements`; unlisted attributes are Type 3.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pydicom.datadict import dictionary_VR, keyword_for_tag

from aifi_app.pseudonymise.annex_e_table import ROWS
from aifi_app.pseudonymise.clean_descriptors import CLEANED_VRS
from aifi_app.pseudonymise.iod_requirements import REQUIRED_TYPES, required_type
from aifi_app.pseudonymise.profile_options import ProfileOption


class Action(enum.Enum):
    """A concrete action on one element; values are the PS3.15 letters."""

    KEEP = "K"
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    REPLACE_UID = "U"
    SHIFT_DATE = "C"
    """Clean a date under Modified Dates: DA/DT shifted by the patient's offset."""
    CLEAN_TEXT = "C (text)"
    """Clean a descriptor under Clean Descriptors: only safe-vocabulary words kept."""


DATE_COLUMN: Final = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES.column
DESCRIPTORS_COLUMN: Final = ProfileOption.CLEAN_DESCRIPTORS.column
PRIVATE_PATTERN_TEXT: Final = "(GGGG,EEEE) WHERE GGGG IS ODD"


class TablePatternError(ValueError):
    """A tag pattern in the table could not be parsed."""


@dataclass(frozen=True)
class TagPattern:
    """A Table E.1-1 tag, possibly with x wildcards (one hex digit each) or "odd group".

    ``matches(tag)`` promises: for a plain tag, equality; for a wildcard pattern such as
    (50xx,xxxx) or (60xx,3000), equality on every non-wildcard hex digit; for the private
    row, an odd group number.
    """

    value: int
    mask: int
    private: bool = False

    @classmethod
    def parse(cls, text: str) -> TagPattern:
        """Parse "(gggg,eeee)" with optional x/X wildcards, or the private-attributes row."""
        if text == PRIVATE_PATTERN_TEXT:
            return cls(value=0, mask=0, private=True)
        if len(text) != 11 or text[0] != "(" or text[5] != "," or text[10] != ")":
            raise TablePatternError(f"unrecognised tag pattern {text!r}")
        digits = text[1:5] + text[6:10]
        value = 0
        mask = 0
        for digit in digits:
            value <<= 4
            mask <<= 4
            if digit in "xX":
                continue
            try:
                value |= int(digit, 16)
            except ValueError:
                raise TablePatternError(f"unrecognised tag pattern {text!r}") from None
            mask |= 0xF
        return cls(value=value, mask=mask)

    @property
    def is_wildcard(self) -> bool:
        """True when the pattern matches more than one tag."""
        return self.private or self.mask != 0xFFFFFFFF

    def matches(self, tag: int) -> bool:
        """Return whether ``tag`` (a 32-bit group/element number) is covered by the pattern."""
        if self.private:
            return bool((tag >> 16) & 1)
        return (tag & self.mask) == self.value


@dataclass(frozen=True)
class TableRow:
    """One parsed row of Table E.1-1."""

    pattern: TagPattern
    name: str
    in_standard_iods: bool
    basic: str
    options: dict[str, str]


@functools.cache
def table_rows() -> tuple[TableRow, ...]:
    """Return the parsed rows of the generated table, in table order."""
    return tuple(
        TableRow(TagPattern.parse(tag), name, in_iods, basic, dict(options))
        for tag, name, in_iods, basic, options in ROWS
    )


def effective_code(row: TableRow, options: Iterable[ProfileOption]) -> str:
    """Return the row's action code after applying the selected options.

    Promises one of the table's codes ("K", "X", "Z", "D", "U", a combined code, or "C",
    returned only for a Modified Dates C on a date or time attribute or a Clean Descriptors
    C on a free-text attribute), following rules 1-3
    of the module docstring. A C the appliance cannot perform returns the Basic Profile code.
    """
    selected = {option.column for option in options}
    codes = {column: code for column, code in row.options.items() if column in selected}
    if "C" in codes.values():
        if codes.get(DATE_COLUMN) == "C" and _is_temporal(row.pattern):
            return "C"
        if codes.get(DESCRIPTORS_COLUMN) == "C" and _is_free_text(row.pattern):
            return "C"
        return row.basic
    if "K" in codes.values():
        return "K"
    return row.basic


def resolve_combined(code: str, attribute_type: int) -> Action:
    """Turn a (possibly combined) code into one action for an attribute of ``attribute_type``.

    Type 1 takes the D or U alternative (Z if the code offers neither), Type 2 takes Z (or the
    last alternative if Z is not offered), Type 3 takes the first, strictest alternative.
    A single code maps to its own action; "C" maps to SHIFT_DATE.
    """
    alternatives = [part.rstrip("*") for part in code.split("/")]
    if len(alternatives) == 1:
        return Action(alternatives[0])
    if attribute_type == 1:
        valued = [part for part in alternatives if part in ("D", "U")]
        return Action(valued[-1] if valued else alternatives[-1])
    if attribute_type == 2:
        return Action("Z" if "Z" in alternatives else alternatives[-1])
    return Action(alternatives[0])


def _is_temporal(pattern: TagPattern) -> bool:
    if pattern.is_wildcard:
        return False
    try:
        return dictionary_VR(pattern.value) in ("DA", "DT", "TM")
    except KeyError:
        return False


def _is_free_text(pattern: TagPattern) -> bool:
    if pattern.is_wildcard:
        return False
    try:
        return dictionary_VR(pattern.value) in CLEANED_VRS
    except KeyError:
        return False


def _action_for_row(
    row: TableRow, options: Iterable[ProfileOption], sop_class_uid: str | None
) -> Action:
    code = effective_code(row, options)
    if code == "C":
        vr = dictionary_VR(row.pattern.value)
        if vr in CLEANED_VRS:
            return Action.CLEAN_TEXT
        # Only dates are shifted; a time of day is kept (the offset is a whole number of days).
        return Action.KEEP if vr == "TM" else Action.SHIFT_DATE
    keyword = "" if row.pattern.is_wildcard else keyword_for_tag(row.pattern.value)
    return resolve_combined(code, required_type(keyword, sop_class_uid))


class ActionTable:
    """Table E.1-1 resolved for one set of options: tag -> :class:`Action`.

    Built once (per Pseudonymiser); per SOP Class the few attributes whose combined code
    depends on the IOD are re-resolved once and cached. Private tags are not answered here:
    :meth:`action_for` returns None for them and for tags the table does not list.
    """

    def __init__(self, options: frozenset[ProfileOption]) -> None:
        self.options: Final = options
        self._exact: dict[int, Action] = {}
        self._wildcards: list[tuple[TagPattern, Action]] = []
        self._class_dependent: list[TableRow] = []
        for row in table_rows():
            if row.pattern.private:
                continue
            action = _action_for_row(row, options, None)
            if row.pattern.is_wildcard:
                self._wildcards.append((row.pattern, action))
                continue
            self._exact[row.pattern.value] = action
            if keyword_for_tag(row.pattern.value) in REQUIRED_TYPES:
                self._class_dependent.append(row)
        self._per_class: dict[str | None, dict[int, Action]] = {None: self._exact}

    def for_sop_class(self, sop_class_uid: str | None) -> dict[int, Action]:
        """Return the exact-tag lookup for instances of ``sop_class_uid`` (cached)."""
        lookup = self._per_class.get(sop_class_uid)
        if lookup is None:
            lookup = dict(self._exact)
            for row in self._class_dependent:
                lookup[row.pattern.value] = _action_for_row(row, self.options, sop_class_uid)
            self._per_class[sop_class_uid] = lookup
        return lookup

    def action_for(self, tag: int, sop_class_uid: str | None = None) -> Action | None:
        """Return the action for a public ``tag``, or None when the table does not list it."""
        if (tag >> 16) & 1:
            return None
        action = self.for_sop_class(sop_class_uid).get(tag)
        if action is not None:
            return action
        return self.wildcard_action(tag)

    def wildcard_action(self, tag: int) -> Action | None:
        """Return the action of the first wildcard row matching ``tag``, if any."""
        for pattern, action in self._wildcards:
            if pattern.matches(tag):
                return action
        return None


@functools.lru_cache(maxsize=64)
def action_table(options: frozenset[ProfileOption]) -> ActionTable:
    """The table for ``options``, built once per option set and shared (its per-SOP-Class
    cache only ever adds the same entries, so sharing it between threads is safe)."""
    return ActionTable(options)


def resolve_action(
    tag: int, options: frozenset[ProfileOption], sop_class_uid: str | None = None
) -> Action | None:
    """Return the effective Table E.1-1 action for ``tag`` under ``options``.

    ``sop_class_uid`` selects the IOD used to resolve combined codes (None: no IOD known,
    every attribute treated as optional except those required in all IODs). Returns None for
    tags the table does not list and for private tags, whose handling is the caller's
    (see :mod:`aifi_app.pseudonymise.element_policy`).
    """
    return action_table(options).action_for(tag, sop_class_uid)
