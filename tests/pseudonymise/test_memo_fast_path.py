"""The memo's fast path: a series' later instances written from the file's bytes give the
same files, mappings and counts as the full path, and anything not plain falls back."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from aifi_app.pseudonymise import BurnedInAnnotationRefused, ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo
from aifi_app.pseudonymise.memo_fast_path import HEAD_BYTES, read_raw_header
from aifi_app.sample_studies import ct_series, demo_patient, write
from tests.helpers.phi_corpus import as_series, leaks, write_ct, write_dx
from tests.helpers.pseudonymise_runs import Result, pseudonymise_each
from tests.pseudonymise.test_batch import OPTION_SETS

SECRET = b"fast-path-secret-0123456789abcdef"


def _run(
    options: frozenset[ProfileOption], sources: list[Path], folder: Path, memo: ElementMemo | None
) -> list[Result]:
    """Each source pseudonymised in order; per file its bytes, mappings and counts."""
    return pseudonymise_each(SECRET, options, sources, folder, memo)


def _ct(folder: Path, patient: int = 1, slices: int = 6, size: int = 16) -> list[Path]:
    return [
        write(ds, folder / f"{n:03d}")
        for n, ds in enumerate(ct_series(demo_patient(patient), slices, size=size))
    ]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_a_ct_series_the_same_as_the_full_path(
    tmp_path: Path, options: frozenset[ProfileOption]
) -> None:
    sources = _ct(tmp_path / "in")
    plain = _run(options, sources, tmp_path / "plain", None)
    memo = ElementMemo()
    assert _run(options, sources, tmp_path / "fast", memo) == plain
    assert memo.fast_instances == len(sources) - 1  # all but the first
    for source in sources:  # and what pydicom writes for the whole instance
        buffer = io.BytesIO()
        pseudonymiser = Pseudonymiser(SECRET, options)
        pydicom.dcmwrite(
            buffer, pseudonymiser.pseudonymise(dcmread(source)), enforce_file_format=True
        )
        assert (tmp_path / "fast" / source.name).read_bytes() == buffer.getvalue()


@pytest.fixture(scope="module")
def flat_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The PHI corpus without its sequences (which take the full path), each instance
    followed by three more of its series (their own SOP Instance UID, number, position):
    planted PHI in every text VR, private blocks, overlays, seven character sets."""
    root = tmp_path_factory.mktemp("flat-phi")
    planted = [*write_ct(root / "ct", 14, size=16), *write_dx(root / "dx", 3, rows=20, columns=16)]
    return as_series(planted, 4, drop_sequences=True)


@pytest.mark.parametrize("options", OPTION_SETS)
def test_the_phi_corpus_as_series_the_same_as_the_full_path(
    flat_corpus: list[Path], tmp_path: Path, options: frozenset[ProfileOption]
) -> None:
    plain = _run(options, flat_corpus, tmp_path / "plain", None)
    memo = ElementMemo()
    # twice over: the second pass meets every context again
    assert _run(options, [*flat_corpus, *flat_corpus], tmp_path / "fast", memo) == plain + plain
    assert memo.fast_instances >= len(flat_corpus)  # the later three of four, and pass two
    if options & {ProfileOption.RETAIN_DEVICE_IDENTITY, ProfileOption.RETAIN_INSTITUTION_IDENTITY}:
        return  # those keep planted device and institution names, by design
    for source in flat_corpus:
        assert leaks(tmp_path / "fast" / source.name, int(source.stem[2:6])) == [], source.name


def test_patients_interleaved_take_their_own_contexts(tmp_path: Path) -> None:
    first = _ct(tmp_path / "a", patient=1, slices=4)
    second = _ct(tmp_path / "b", patient=2, slices=4)
    interleaved = [p for pair in zip(first, second, strict=True) for p in pair]
    options = frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})
    plain = _run(options, interleaved, tmp_path / "plain", None)
    memo = ElementMemo()
    assert _run(options, interleaved, tmp_path / "fast", memo) == plain
    assert memo.fast_instances == 6
    names = {dcmread(tmp_path / "fast" / p.name).PatientName for p in interleaved}
    assert len(names) == 2


def test_burned_in_text_refused_in_the_middle_of_a_series(tmp_path: Path) -> None:
    slices = list(ct_series(demo_patient(4), 4, size=8))
    slices[2].BurnedInAnnotation = "YES"
    sources = [write(ds, tmp_path / "in" / str(n)) for n, ds in enumerate(slices)]
    pseudonymiser = Pseudonymiser(SECRET, frozenset())
    memo = ElementMemo()
    for n, source in enumerate(sources):
        target = tmp_path / "out" / f"{n}.dcm"
        if n == 2:
            with pytest.raises(BurnedInAnnotationRefused):
                pseudonymise_file(pseudonymiser, source, target, memo=memo)
        else:
            pseudonymise_file(pseudonymiser, source, target, memo=memo)
    assert memo.fast_instances == 2  # slices 1 and 3


def _saved(tmp_path: Path, name: str, **changes: object) -> Path:
    (ds,) = ct_series(demo_patient(6), 1, size=8)
    syntax = changes.pop("syntax", None)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path = tmp_path / name
    if isinstance(syntax, UID):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(
            path,
            little_endian=syntax != ExplicitVRBigEndian,
            implicit_vr=syntax == ImplicitVRLittleEndian,
            enforce_file_format=True,
        )
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def test_a_plain_header_is_read_as_pydicom_reads_it(tmp_path: Path) -> None:
    path = _saved(tmp_path, "plain.dcm")
    data = path.read_bytes()
    header = read_raw_header(data[:HEAD_BYTES], whole_file=len(data) <= HEAD_BYTES)
    assert header is not None and header.at_pixel_data
    ds = dcmread(path, stop_before_pixels=True)
    read = [(int(e.tag), e.VR.encode(), e.value) for e in (ds.get_item(t) for t in list(ds.keys()))]
    assert [e for e in header.elements if e[0] != 0x00080005] == [
        e for e in read if e[0] != 0x00080005
    ]
    assert data[header.end : header.end + 4] == b"\xe0\x7f\x10\x00"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"syntax": ImplicitVRLittleEndian}, id="implicit-vr"),
        pytest.param({"syntax": ExplicitVRBigEndian}, id="big-endian"),
        pytest.param({"ReferencedImageSequence": Sequence()}, id="sequence"),
        pytest.param({"PatientComments": "x" * HEAD_BYTES}, id="header-too-long"),
    ],
)
def test_what_is_not_plain_is_not_read(tmp_path: Path, changes: dict[str, object]) -> None:
    data = _saved(tmp_path, "x.dcm", **changes).read_bytes()
    assert read_raw_header(data[:HEAD_BYTES], whole_file=len(data) <= HEAD_BYTES) is None


def test_not_plain_instances_take_the_full_path_with_the_same_output(tmp_path: Path) -> None:
    """A series whose later instances carry a sequence, a private block of its own (a new
    context) or a de-identification attribute: the full path writes them."""
    slices = list(ct_series(demo_patient(7), 6, size=8))
    slices[2].ReferencedImageSequence = Sequence()
    slices[4].add(DataElement(0x00190010, "LO", "SOME VENDOR"))
    slices[4].add(DataElement(0x00191001, "UN", b"12"))
    slices[5].PatientIdentityRemoved = "NO"
    sources = [write(ds, tmp_path / "in" / f"{n:03d}") for n, ds in enumerate(slices)]
    options = frozenset({ProfileOption.RETAIN_SAFE_PRIVATE})
    plain = _run(options, sources, tmp_path / "plain", None)
    memo = ElementMemo()
    assert _run(options, sources, tmp_path / "fast", memo) == plain
    assert memo.fast_instances == 2  # slices 1 and 3


def test_a_character_set_change_in_the_series(tmp_path: Path) -> None:
    slices = list(ct_series(demo_patient(8), 4, size=8))
    slices[2].SpecificCharacterSet = "ISO_IR 192"
    slices[3].SpecificCharacterSet = "ISO_IR 192"
    slices[3].InstitutionName = "Ziekenhuis \u00e9\u00e8"
    sources = [write(ds, tmp_path / "in" / f"{n:03d}") for n, ds in enumerate(slices)]
    options = frozenset({ProfileOption.RETAIN_INSTITUTION_IDENTITY})
    plain = _run(options, sources, tmp_path / "plain", None)
    memo = ElementMemo()
    assert _run(options, sources, tmp_path / "fast", memo) == plain
    assert memo.fast_instances == 2  # slices 1 and 3: slice 2 begins its own context


def test_a_series_without_pixel_data(tmp_path: Path) -> None:
    slices = list(ct_series(demo_patient(9), 4, size=8))
    for ds in slices:
        del ds.PixelData
    sources = [write(ds, tmp_path / "in" / f"{n:03d}") for n, ds in enumerate(slices)]
    plain = _run(frozenset(), sources, tmp_path / "plain", None)
    memo = ElementMemo()
    assert _run(frozenset(), sources, tmp_path / "fast", memo) == plain
    assert memo.fast_instances == 3


def _with_element_before_pixels(data: bytes, element: bytes) -> bytes:
    at = data.index(b"\xe0\x7f\x10\x00OW")
    return data[:at] + element + data[at:]


@pytest.mark.parametrize(
    "element",
    [
        pytest.param(b"\xf1\x7f\x00\x00UL\x04\x00\x04\x00\x00\x00", id="group-length"),
        pytest.param(b"\xf1\x7f\x10\x00UN\x00\x00\xff\xff\xff\xff", id="undefined-length"),
        pytest.param(b"\xf1\x7f\x10\x00ZZ\x00\x00", id="unknown-vr"),
    ],
)
def test_raw_elements_that_are_not_plain_are_not_read(tmp_path: Path, element: bytes) -> None:
    data = _saved(tmp_path, "x.dcm").read_bytes()
    assert read_raw_header(data, whole_file=True) is not None
    assert read_raw_header(_with_element_before_pixels(data, element), whole_file=True) is None


def test_elements_out_of_order_are_not_read(tmp_path: Path) -> None:
    data = _saved(tmp_path, "x.dcm").read_bytes()
    first = b"\x08\x00\x16\x00UI"  # SOP Class UID, written again after the last element
    at = data.index(first)
    length = int.from_bytes(data[at + 6 : at + 8], "little")
    again = data[at : at + 8 + length]
    assert read_raw_header(_with_element_before_pixels(data, again), whole_file=True) is None
