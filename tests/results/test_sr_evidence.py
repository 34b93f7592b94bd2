"""An SR's evidence of its sources made ahead and joined after re-identification: the
same bytes as highdicom's SR built with every source as evidence and re-identified
whole, for findings on several series, regions, measurements with and without their
segment, and a restored identity that changes the character set."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult
from aifi_app.encoded_sequences import encoded_items
from aifi_app.part10 import part10_bytes, write_part10_durably
from aifi_app.pseudonymise import ResultScope, check_reidentification
from aifi_app.results.sr_evidence import EvidenceJoin, evidence_digest, sources_evidence
from aifi_app.results.structured_report import SegmentReference
from tests.helpers.highdicom_clock import stop_highdicom_clock
from tests.results.conftest import MakeFinding, MakeResult, _make_ct_series
from tests.results.test_presentation_state import NODULE, region
from tests.results.test_structured_report import build, lung_volume_result

SEG_UID = "2.25.300000000000000000000000000000000001"
SEG_SERIES_UID = "2.25.300000000000000000000000000000000002"


def _original(uid: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'original/{uid}').int}"


@dataclasses.dataclass
class Job:
    """Pseudonymised sources, and how their results are re-identified."""

    sources: list[Dataset]
    header: Dataset
    mapping: dict[str, str]
    instances: dict[str, str]
    """Original SOP Instance UID -> original Study Instance UID."""

    def scope(self, siblings: frozenset[str] = frozenset()) -> ResultScope:
        return ResultScope(
            study_uid=self.mapping[str(self.sources[0].StudyInstanceUID)],
            patient_pseudonym=str(self.sources[0].PatientID),
            accession_number=str(self.header.AccessionNumber),
            study_id=str(self.header.StudyID),
            study_of_instance=self.instances.get,
            date_offset_days=None,
            sibling_uids=siblings,
        )

    def reidentify(self, ds: Dataset, siblings: frozenset[str] = frozenset()) -> Dataset:
        return check_reidentification(
            ds, self.mapping.get, self.header, self.scope(siblings)
        ).apply()


def _job(sources: list[Dataset], patient_name: str = "Jansen^Anna") -> Job:
    sources = [copy.deepcopy(ds) for ds in sources]
    mapping: dict[str, str] = {}
    instances: dict[str, str] = {}
    for ds in sources:
        ds.PatientName = f"{ds.PatientID}^"  # the pseudonymiser's: the patient's pseudonym
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            mapping[str(ds.get(keyword))] = _original(str(ds.get(keyword)))
        instances[mapping[str(ds.SOPInstanceUID)]] = mapping[str(ds.StudyInstanceUID)]
    header = Dataset()
    header.SpecificCharacterSet = "ISO_IR 100"
    header.PatientName = patient_name
    header.PatientID = "123456789"
    header.PatientBirthDate = "19560101"
    header.PatientSex = "F"
    header.StudyDate = "20240311"
    header.StudyTime = "101500"
    header.AccessionNumber = "ACC-1"
    header.StudyID = "STUDY-1"
    header.StudyInstanceUID = mapping[str(sources[0].StudyInstanceUID)]
    mapping[str(sources[0].AccessionNumber)] = "ACC-1"
    mapping[str(sources[0].StudyID)] = "STUDY-1"
    return Job(sources, header, mapping, instances)


def _whole_and_joined(
    job: Job, result: AlgorithmResult, tmp_path: Path, segments: list[SegmentReference]
) -> tuple[bytes, bytes, Dataset]:
    """The re-identified SR's file built whole, and built with its sources' evidence made
    ahead (written by the pipeline's writer); and the latter as highdicom built it
    (re-identified)."""
    siblings = frozenset({SEG_UID, SEG_SERIES_UID, "2.25.200000000000000000000000000000000001"})
    siblings |= {"2.25.200000000000000000000000000000000002"}
    whole = job.reidentify(build(job.sources, result, segments=segments), siblings)
    evidence = sources_evidence(job.sources, job.reidentify)
    light = build(job.sources, result, segments=segments, evidence_of_all_sources=False)
    join = EvidenceJoin.of(light, evidence)
    joined = join.apply(job.reidentify(light, siblings))
    path = tmp_path / "joined.dcm"
    write_part10_durably(path, joined)
    assert part10_bytes(joined) == path.read_bytes()
    return part10_bytes(whole), path.read_bytes(), light


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_a_ct_measured_on_its_segment_gives_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
    algorithm: AlgorithmIdentity,
    tmp_path: Path,
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    stop_highdicom_clock(monkeypatch)
    job = _job(_make_ct_series(40))
    result = lung_volume_result(job.sources, algorithm)
    segment = SegmentReference(SEG_UID, SEG_SERIES_UID, 1, result.segmentations[0])
    whole, joined, light = _whole_and_joined(job, result, tmp_path, [segment])
    assert joined == whole
    # highdicom was given the first source and the SEG: one instance of the CT's series
    (study,) = light.CurrentRequestedProcedureEvidenceSequence
    assert [len(s.ReferencedSOPSequence) for s in study.ReferencedSeriesSequence] == [1, 1]
    path = tmp_path / "joined.dcm"
    dciodvfy(path)
    assert "Referenced Segment" in dsrdump(path)
    sr = dcmread(path)
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert str(study.StudyInstanceUID) == str(job.header.StudyInstanceUID)
    ct_series, seg_series = study.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in ct_series.ReferencedSOPSequence] == [
        job.mapping[str(ds.SOPInstanceUID)] for ds in job.sources
    ]
    assert seg_series.SeriesInstanceUID == SEG_SERIES_UID


def test_findings_regions_and_measurements_on_several_series_give_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
    dx_source: Dataset,
    cr_source: Dataset,
    make_finding: MakeFinding,
    make_result: MakeResult,
    algorithm: AlgorithmIdentity,
    tmp_path: Path,
) -> None:
    """Sources in two series, some of them referenced by the content (a finding, a
    region, a measurement without its segment), others not; a restored patient name
    that is not ASCII (the SR's character set changes when it is re-identified)."""
    stop_highdicom_clock(monkeypatch)
    second = copy.deepcopy(dx_source)
    second.SOPInstanceUID = "2.25.400000000000000000000000000000000001"
    third = copy.deepcopy(cr_source)
    third.SOPInstanceUID = "2.25.400000000000000000000000000000000002"
    for patient_name in ("Jansen^Anna", "Müller^Jürgen"):
        job = _job([dx_source, second, cr_source, third], patient_name)
        dx, second_dx, cr, _ = job.sources
        base = make_result(make_finding(cr, score=0.8))
        ct = _job(_make_ct_series(3)).sources
        measured = lung_volume_result(ct, algorithm).measurements[0]
        measurement = dataclasses.replace(
            measured,
            source_series_instance_uid=str(second_dx.SeriesInstanceUID),
            source_sop_instance_uids=(str(second_dx.SOPInstanceUID),),
        )
        result = AlgorithmResult(
            algorithm=base.algorithm,
            findings=base.findings,
            measurements=(measurement,),
            regions=(region(cr, "point", ((100.0, 200.0),), NODULE, "Nodule", None),),
        )
        whole, joined, light = _whole_and_joined(job, result, tmp_path, [])
        assert joined == whole, patient_name
        (study,) = light.CurrentRequestedProcedureEvidenceSequence
        recorded = [
            i.ReferencedSOPInstanceUID
            for s in study.ReferencedSeriesSequence
            for i in s.ReferencedSOPSequence
        ]
        # (re-identified) the first source (the SR's patient and study), then those the
        # content references; not the fourth
        assert recorded == [job.mapping[str(ds.SOPInstanceUID)] for ds in (dx, second_dx, cr)]


def test_a_join_refuses_an_sr_of_other_sources(
    algorithm: AlgorithmIdentity, dx_source: Dataset, make_finding: MakeFinding
) -> None:
    job = _job(_make_ct_series(4))
    result = lung_volume_result(job.sources, algorithm)
    light = build(job.sources, result, evidence_of_all_sources=False)
    other = _job([dx_source])
    with pytest.raises(ValueError, match="not of the sources"):
        EvidenceJoin.of(light, sources_evidence(other.sources, other.reidentify))
    assert evidence_digest(job.sources) != evidence_digest(job.sources[::-1])
    assert evidence_digest(job.sources) == sources_evidence(job.sources, job.reidentify).digest


def test_sources_of_two_studies_are_refused(ct_series: list[Dataset], dx_source: Dataset) -> None:
    with pytest.raises(ValueError, match="more than one study"):
        sources_evidence([*ct_series, dx_source], lambda ds: ds)
    with pytest.raises(ValueError, match="no sources"):
        sources_evidence([], lambda ds: ds)


def test_encoded_items_are_the_bytes_pydicom_writes(ct_series: list[Dataset]) -> None:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    ds = Dataset()
    items = []
    for source in ct_series:
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        items.append(item)
    ds.ReferencedSOPSequence = items
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, ds["ReferencedSOPSequence"])
    written = fp.getvalue()
    assert written[12:] == encoded_items(items)  # after the tag, VR, reserved and length


def test_the_digest_is_the_same_for_sources_read_and_decoded(
    ct_series: list[Dataset], tmp_path: Path
) -> None:
    from pydicom import dcmwrite

    paths = []
    for n, ds in enumerate(ct_series):
        paths.append(tmp_path / f"{n}.dcm")
        dcmwrite(paths[-1], ds, enforce_file_format=True)
    read = [dcmread(p, stop_before_pixels=True) for p in paths]  # raw until asked for
    digest = evidence_digest(read)
    assert digest == evidence_digest(ct_series)
    for ds in read:
        assert str(ds.SOPInstanceUID)  # decoded now
    assert evidence_digest(read) == digest
