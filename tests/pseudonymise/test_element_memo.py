"""The element memo gives the same files, mappings and counts as pseudonymising every
element of every instance: on the planted-PHI corpus (seven character sets, private
blocks, nested sequences, overlays), with every option set, across patients, and with one
memo shared by pseudonymisers of different options."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from aifi_app.pseudonymise import ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo
from aifi_app.sample_studies import ct_series, demo_patient, write
from tests.helpers.phi_corpus import as_series, leaks, write_ct, write_dx
from tests.helpers.pseudonymise_runs import Result, pseudonymise_each
from tests.pseudonymise.test_batch import OPTION_SETS

SECRET = b"memo-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The PHI corpus (each instance its own patient, character set and private blocks),
    each instance followed by three more of its series: what differs from instance to
    instance in a series (SOP Instance UID, Instance Number, position) differs, the rest
    is the same, as the memo meets a modality's series."""
    root = tmp_path_factory.mktemp("phi-corpus")
    # each of the corpus's seven character sets twice
    planted = [*write_ct(root / "ct", 14, size=16), *write_dx(root / "dx", 3, rows=20, columns=16)]
    return as_series(planted, 3)


def _hits(memo: ElementMemo) -> int:
    return sum(s.hits for c in memo.contexts.values() for s in c.tags.values())


def _run(
    options: frozenset[ProfileOption],
    sources: list[Path],
    folder: Path,
    memo: ElementMemo | None,
) -> list[Result]:
    """Each source pseudonymised (twice over with the memo: the second pass takes every
    repeated element from it); per file its bytes, mappings and counts."""
    twice = [*sources, *sources] if memo is not None else sources
    return pseudonymise_each(SECRET, options, twice, folder, memo, pixels_copied=True)


@pytest.mark.parametrize("options", OPTION_SETS)
def test_the_memo_gives_the_same_files_mappings_and_counts(
    corpus: list[Path], tmp_path: Path, options: frozenset[ProfileOption]
) -> None:
    plain = _run(options, corpus, tmp_path / "plain", None)
    memo = ElementMemo()
    memoised = _run(options, corpus, tmp_path / "memo", memo)
    assert memoised == plain + plain
    assert _hits(memo) > len(corpus) * 20  # most of each instance's elements
    if options & {ProfileOption.RETAIN_DEVICE_IDENTITY, ProfileOption.RETAIN_INSTITUTION_IDENTITY}:
        return  # those keep planted device and institution names, by design
    for source in corpus:
        n = int(source.stem[2:6])
        assert leaks(tmp_path / "memo" / source.name, n) == [], source.name


def test_the_same_as_pydicom_writes_the_whole_instance(corpus: list[Path], tmp_path: Path) -> None:
    pseudonymiser = Pseudonymiser(SECRET, frozenset())
    memo = ElementMemo()
    for source in [*corpus, *corpus]:
        target = tmp_path / source.name
        pseudonymise_file(pseudonymiser, source, target, memo=memo)
        buffer = io.BytesIO()
        pydicom.dcmwrite(
            buffer, pseudonymiser.pseudonymise(dcmread(source)), enforce_file_format=True
        )
        assert target.read_bytes() == buffer.getvalue(), source.name


def test_patients_interleaved_keep_their_own_pseudonyms(tmp_path: Path) -> None:
    """Two patients' series through one memo, slice by slice: Patient's Name and the date
    shift follow each instance's own Patient ID."""
    first = list(ct_series(demo_patient(1), 4, size=8))
    second = list(ct_series(demo_patient(2), 4, size=8))
    for ds in second:  # the same study date and series facts: only the patient differs
        ds.StudyDate = first[0].StudyDate
    sources = [write(ds, tmp_path / "in" / str(n)) for n, ds in enumerate([*first, *second])]
    interleaved = [p for pair in zip(sources[:4], sources[4:], strict=True) for p in pair]
    options = frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})
    plain = _run(options, interleaved, tmp_path / "plain", None)
    memoised = _run(options, interleaved, tmp_path / "memo", ElementMemo())
    assert memoised == plain + plain
    names = {dcmread(tmp_path / "memo" / p.name).PatientName for p in interleaved}
    assert len(names) == 2


def test_one_memo_for_two_option_sets(corpus: list[Path], tmp_path: Path) -> None:
    memo = ElementMemo()
    for n, options in enumerate(OPTION_SETS):
        values = options.values[0]
        plain = _run(values, corpus, tmp_path / f"plain{n}", None)
        assert _run(values, corpus, tmp_path / f"memo{n}", memo) == plain + plain


def test_a_private_element_follows_its_own_instance_s_private_creator(tmp_path: Path) -> None:
    """The same private element under a safe creator in one instance and an unknown one
    in the next (same patient, series, everything else): kept in the first only."""
    sources = []
    for n, creator in enumerate(["GEMS_ACQU_01", "ANOTHER VENDOR", "GEMS_ACQU_01"]):
        (ds,) = ct_series(demo_patient(5), 1, size=8)
        ds.add(DataElement(0x00190010, "LO", creator))
        ds.add(DataElement(0x00191023, "DS", "12.5"))  # Table Speed where GEMS_ACQU_01
        sources.append(write(ds, tmp_path / "in" / str(n)))
    options = frozenset({ProfileOption.RETAIN_SAFE_PRIVATE})
    plain = _run(options, sources, tmp_path / "plain", None)
    assert _run(options, sources, tmp_path / "memo", ElementMemo()) == plain + plain
    kept = [0x00191023 in dcmread(tmp_path / "memo" / p.name) for p in sources]
    assert kept == [True, False, True]


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, ImplicitVRLittleEndian])
def test_other_encodings_the_same_as_pydicom_writes_them(tmp_path: Path, syntax: UID) -> None:
    """Big endian is memoised (its raw bytes are big endian too); implicit VR is not
    (an element's VR comes from the dictionary), and either way the bytes are pydicom's."""
    pseudonymiser = Pseudonymiser(SECRET, frozenset())
    memo = ElementMemo()
    for n, ds in enumerate(ct_series(demo_patient(3), 5, size=8)):
        ds.file_meta.TransferSyntaxUID = syntax
        source = tmp_path / f"{n}.dcm"
        ds.save_as(
            source,
            little_endian=syntax != ExplicitVRBigEndian,
            implicit_vr=syntax == ImplicitVRLittleEndian,
            enforce_file_format=True,
        )
        for _ in range(2):
            pseudonymise_file(pseudonymiser, source, tmp_path / "out.dcm", memo=memo)
            buffer = io.BytesIO()
            pydicom.dcmwrite(
                buffer, pseudonymiser.pseudonymise(dcmread(source)), enforce_file_format=True
            )
            assert (tmp_path / "out.dcm").read_bytes() == buffer.getvalue(), n
    assert (_hits(memo) > 0) == (syntax == ExplicitVRBigEndian)
