"""Key Object Selection: DICOM validity (dciodvfy, dsrdump) and which images are key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import KeyObjectSelectionDocumentStorage

from aifi_app.algorithms.findings import AlgorithmResult, Finding
from aifi_app.results import build_key_object_selection, key_image_uids
from tests.results.test_presentation_state import region

MakeFinding = Callable[..., Finding]
MakeResult = Callable[..., AlgorithmResult]


def build(sources: list[Dataset], result: AlgorithmResult) -> Dataset:
    return build_key_object_selection(
        sources,
        result,
        series_instance_uid="2.25.400000000000000000000000000000000001",
        sop_instance_uid="2.25.400000000000000000000000000000000002",
        series_number=9905,
        instance_number=1,
        device_observer_uid="2.25.400000000000000000000000000000000003",
    )


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_kos_selects_images_with_positive_findings_or_regions(
    dx_source: Dataset,
    cr_source: Dataset,
    ct_source: Dataset,
    make_finding: MakeFinding,
    make_result: MakeResult,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    result = make_result(
        make_finding(dx_source, score=0.9),
        make_finding(ct_source, score=0.1),  # negative: not a key image
    )
    result = AlgorithmResult(
        algorithm=result.algorithm,
        findings=result.findings,
        regions=(region(cr_source, "point", ((10.0, 10.0),)),),
    )
    assert key_image_uids(result) == [str(dx_source.SOPInstanceUID), str(cr_source.SOPInstanceUID)]
    kos = build([dx_source, cr_source, ct_source], result)
    path = write_dicom(kos, "kos")
    dciodvfy(path)
    dump = dsrdump(path)
    assert '"Of Interest"' in dump
    assert "AI result, not a diagnosis: CXR Pneumonia Detector 1.4.2" in dump
    assert dump.count("contains IMAGE") == 2
    assert kos.SOPClassUID == KeyObjectSelectionDocumentStorage
    assert kos.StudyInstanceUID == dx_source.StudyInstanceUID
    referenced = {str(e.value) for e in kos.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    assert referenced == {str(dx_source.SOPInstanceUID), str(cr_source.SOPInstanceUID)}


def test_kos_without_key_images_is_refused(
    dx_source: Dataset, make_finding: MakeFinding, make_result: MakeResult
) -> None:
    with pytest.raises(ValueError, match="positive finding or a region"):
        build([dx_source], make_result(make_finding(dx_source, score=0.1)))
