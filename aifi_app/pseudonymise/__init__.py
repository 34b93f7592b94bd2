"""Pseudonymisation (DICOM PS3.15 Annex E, keyed and recursive) and re-identification.

The core pseudonymises every received instance before any algorithm sees it and
re-identifies the results before they go back to the PACS. The action table is generated
from DICOM PS3.15 Table E.1-1 by ``tools/generate_annex_e_table.py``.
"""

from aifi_app.pseudonymise.actions import Action, ActionTable, TagPattern, resolve_action
from aifi_app.pseudonymise.burned_in import (
    BurnedInAnnotationRefused,
    BurnedInPolicy,
    burned_in_risk,
)
from aifi_app.pseudonymise.profile_options import BASIC_PROFILE, ProfileCode, ProfileOption
from aifi_app.pseudonymise.pseudonymiser import (
    PseudonymCallback,
    PseudonymisationError,
    Pseudonymiser,
)
from aifi_app.pseudonymise.reidentifier import (
    RESTORED_KEYWORDS,
    CheckedResult,
    PatientMixError,
    ReidentificationError,
    ResultScope,
    UnknownReferenceError,
    check_reidentification,
    reidentify,
    reidentify_in_place,
)

__all__ = [
    "BASIC_PROFILE",
    "RESTORED_KEYWORDS",
    "Action",
    "ActionTable",
    "BurnedInAnnotationRefused",
    "BurnedInPolicy",
    "CheckedResult",
    "PatientMixError",
    "ProfileCode",
    "ProfileOption",
    "PseudonymCallback",
    "PseudonymisationError",
    "Pseudonymiser",
    "ReidentificationError",
    "ResultScope",
    "TagPattern",
    "UnknownReferenceError",
    "burned_in_risk",
    "check_reidentification",
    "reidentify",
    "reidentify_in_place",
    "resolve_action",
]
