"""Re-identification in place (the pipeline's): the same bytes as the copy, a refused
result left as it was, every UID looked up once."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept, SegmentationMask
from aifi_app.part10 import part10_bytes
from aifi_app.pseudonymise import (
    PatientMixError,
    ProfileOption,
    Pseudonymiser,
    ResultScope,
    UnknownReferenceError,
    check_reidentification,
    reidentify,
    reidentify_in_place,
)
from aifi_app.results import build_segmentation
from aifi_app.sample_studies import ct_series, demo_patient
from tests.pseudonymise.test_reidentifier import ORIGINAL, SECRET
from tests.pseudonymise.test_reidentifier_strict import MODIFIED, FullTable, _setup

ALGORITHM = AlgorithmIdentity("ct-lung-volume", "Lung volume", "1.0.0", "AIFI")


class CountingTable(FullTable):
    """A mapping table that counts how often each UID is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    def original_for(self, pseudonym: str) -> str | None:
        self.asked[pseudonym] += 1
        return super().original_for(pseudonym)


def _seg_job(
    options: frozenset[ProfileOption] = MODIFIED,
) -> tuple[Dataset, Dataset, CountingTable, ResultScope]:
    """A 6-slice CT pseudonymised, and a SEG built on it (a mask on four slices)."""
    originals = list(ct_series(demo_patient(3), 6, size=16))
    table = CountingTable()
    pseudonymiser = Pseudonymiser(SECRET, options, table.record)
    slices = [pseudonymiser.pseudonymise(ds) for ds in originals]
    mask = np.zeros((6, 16, 16), dtype=bool)
    mask[1:5, 4:12, 3:9] = True
    seg = build_segmentation(
        slices,
        SegmentationMask.from_array(
            CodedConcept("39607008", "SCT", "Lung"),
            "Lung",
            tuple(str(ds.SOPInstanceUID) for ds in slices),
            mask,
        ),
        ALGORITHM,
        series_instance_uid="2.25.900000000000000000000000000000000001",
        sop_instance_uid="2.25.900000000000000000000000000000000002",
        series_number=9003,
        instance_number=1,
        software_version="0.3.0",
    )
    header = originals[0]
    studies = {str(ds.SOPInstanceUID): str(ds.StudyInstanceUID) for ds in originals}
    scope = ResultScope(
        study_uid=str(header.StudyInstanceUID),
        patient_pseudonym=pseudonymiser.patient_pseudonym(header.PatientID),
        accession_number=header.AccessionNumber,
        study_id=str(header.get("StudyID", "")),
        study_of_instance=studies.get,
        date_offset_days=pseudonymiser.date_offset_days(header.PatientID)
        if ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
        else None,
    )
    return seg, header, table, scope


@pytest.mark.parametrize("options", [MODIFIED, frozenset()], ids=["shifted", "kept dates"])
def test_a_seg_re_identified_in_place_gives_the_copys_bytes(
    options: frozenset[ProfileOption],
) -> None:
    seg, header, table, scope = _seg_job(options)
    expected = part10_bytes(reidentify(seg, table.original_for, header, scope))
    restored = reidentify_in_place(seg, table.original_for, header, scope)
    assert restored is seg
    assert part10_bytes(restored) == expected
    # it is re-identified: every reference maps back onto the original study
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert scope.study_of_instance(source) == scope.study_uid
    assert seg.StudyInstanceUID == scope.study_uid
    assert seg.PatientID == header.PatientID
    assert "PatientIdentityRemoved" not in seg


def test_an_sr_re_identified_in_place_gives_the_copys_bytes_without_a_scope() -> None:
    header, _, result, table, scope = _setup()
    for used in (scope, None):
        ds = copy.deepcopy(result)
        expected = part10_bytes(reidentify(ds, table.original_for, header, used))
        assert part10_bytes(reidentify_in_place(ds, table.original_for, header, used)) == expected


def test_each_uid_is_looked_up_once_however_often_the_seg_names_it() -> None:
    seg, header, table, scope = _seg_job()
    reidentify_in_place(seg, table.original_for, header, scope)
    assert table.asked  # the study, series, frame of reference and each source image
    assert max(table.asked.values()) == 1


def test_a_refused_seg_is_left_as_it_was() -> None:
    """The checks run before anything changes: a SEG that references an unknown image
    or another study is still the pseudonymised SEG (as the quarantine keeps it)."""
    seg, header, table, scope = _seg_job()
    frames = seg.PerFrameFunctionalGroupsSequence
    frames[-1].DerivationImageSequence[0].SourceImageSequence[
        0
    ].ReferencedSOPInstanceUID = "2.25.1234"
    before = part10_bytes(seg)
    with pytest.raises(UnknownReferenceError, match=r"\(0008,1155\)"):
        reidentify_in_place(seg, table.original_for, header, scope)
    assert part10_bytes(seg) == before

    seg, header, table, scope = _seg_job()
    other_study = "2.25.77"
    table.originals["2.25.78"] = other_study
    seg.StudyInstanceUID = "2.25.78"
    before = part10_bytes(seg)
    with pytest.raises(PatientMixError, match="another study"):
        reidentify_in_place(seg, table.original_for, header, scope)
    assert part10_bytes(seg) == before


def test_an_item_two_results_share_is_re_identified_once_when_both_are_checked_first() -> None:
    """Results of one job are all checked, then all applied (as the pipeline does): a
    nested item that both hold (the same object) gets its UID mapped and its date
    shifted once, as each result's copy would have it."""
    header, image, first, table, scope = _setup()
    second = copy.deepcopy(first)
    shared = Dataset()
    shared.ReferencedSOPClassUID = image.SOPClassUID
    shared.ReferencedSOPInstanceUID = image.SOPInstanceUID
    shared.AcquisitionDate = image.StudyDate  # shifted back by the pseudonymiser
    first.ReferencedImageSequence = Sequence([shared])
    second.ReferencedImageSequence = Sequence([shared])
    scope = dataclasses.replace(
        scope,
        sibling_uids=frozenset(
            str(ds[keyword].value)
            for ds in (first, second)
            for keyword in ("SOPInstanceUID", "SeriesInstanceUID")
        ),
    )
    expected = [
        part10_bytes(reidentify(ds, table.original_for, header, scope)) for ds in (first, second)
    ]
    checked = [
        check_reidentification(ds, table.original_for, header, scope) for ds in (first, second)
    ]
    assert [part10_bytes(result.apply()) for result in checked] == expected
    assert shared.ReferencedSOPInstanceUID == ORIGINAL["instance"]
    assert shared.AcquisitionDate == header.StudyDate
