"""The DICOM PS3.15 Annex E profile and its options, with their CID 7050 codes.

Each :class:`ProfileOption` carries its code from CID 7050 "De-identification Method" (coding
scheme DCM), its code meaning, and the name of its column in Table E.1-1 as used by the
generated :mod:`aifi_app.pseudonymise.annex_e_table`.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

CODING_SCHEME: Final = "DCM"


class ProfileCode(NamedTuple):
    """A coded concept from CID 7050: code value and code meaning (scheme DCM)."""

    value: str
    meaning: str


BASIC_PROFILE: Final = ProfileCode("113100", "Basic Application Confidentiality Profile")


class ProfileOption(enum.Enum):
    """The ten Table E.1-1 options; ``.code`` is the CID 7050 code, ``.column`` the table column.

    The Clean Pixel Data (113101) and Clean Recognizable Visual Features (113102) options
    have no column in Table E.1-1 and are not offered here.
    """

    RETAIN_SAFE_PRIVATE = (
        "rtnSafePrivOpt",
        ProfileCode("113111", "Retain Safe Private Option"),
    )
    RETAIN_UIDS = ("rtnUIDsOpt", ProfileCode("113110", "Retain UIDs Option"))
    RETAIN_DEVICE_IDENTITY = (
        "rtnDevIdOpt",
        ProfileCode("113109", "Retain Device Identity Option"),
    )
    RETAIN_INSTITUTION_IDENTITY = (
        "rtnInstIdOpt",
        ProfileCode("113112", "Retain Institution Identity Option"),
    )
    RETAIN_PATIENT_CHARACTERISTICS = (
        "rtnPatCharsOpt",
        ProfileCode("113108", "Retain Patient Characteristics Option"),
    )
    RETAIN_LONGITUDINAL_FULL_DATES = (
        "rtnLongFullDatesOpt",
        ProfileCode("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    )
    RETAIN_LONGITUDINAL_MODIFIED_DATES = (
        "rtnLongModifDatesOpt",
        ProfileCode("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    )
    CLEAN_DESCRIPTORS = ("cleanDescOpt", ProfileCode("113105", "Clean Descriptors Option"))
    CLEAN_STRUCTURED_CONTENT = (
        "cleanStructContOpt",
        ProfileCode("113104", "Clean Structured Content Option"),
    )
    CLEAN_GRAPHICS = ("cleanGraphOpt", ProfileCode("113103", "Clean Graphics Option"))

    @property
    def column(self) -> str:
        """The option's column name in Table E.1-1 (as in the generated table)."""
        column: str = self.value[0]
        return column

    @property
    def code(self) -> ProfileCode:
        """The option's CID 7050 code (scheme DCM)."""
        code: ProfileCode = self.value[1]
        return code

    @classmethod
    def from_column(cls, column: str) -> ProfileOption:
        """Return the option whose Table E.1-1 column is ``column``; KeyError if none."""
        for option in cls:
            if option.column == column:
                return option
        raise KeyError(column)


def sorted_options(options: frozenset[ProfileOption]) -> list[ProfileOption]:
    """Return ``options`` in the enum's declaration order (a stable, documented order)."""
    return [option for option in ProfileOption if option in options]
