"""Batch pseudonymisation on the PHI corpus: nothing planted survives; valid objects; CLI."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement

from aifi_app.cli import main
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file, pseudonymise_tree, text_progress
from tests.helpers.phi_corpus import leaks, write_ct, write_dx
from tests.helpers.tools import DCIODVFY

SECRET = b"batch-test-secret-0123456789"
Opt = ProfileOption
OPTION_SETS = [
    pytest.param(frozenset(), id="basic"),
    pytest.param(frozenset({Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES}), id="modified-dates"),
    pytest.param(
        frozenset(
            {
                Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES,
                Opt.RETAIN_PATIENT_CHARACTERISTICS,
                Opt.CLEAN_DESCRIPTORS,
                Opt.CLEAN_STRUCTURED_CONTENT,
                Opt.CLEAN_GRAPHICS,
                Opt.RETAIN_SAFE_PRIVATE,
                Opt.RETAIN_DEVICE_IDENTITY,
                Opt.RETAIN_INSTITUTION_IDENTITY,
            }
        ),
        id="every-option-but-uids-and-full-dates",
    ),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phi-corpus")
    list(write_ct(root / "ct", 6, size=16))
    list(write_dx(root / "dx", 3, rows=20, columns=16))
    return root


def _instance_number(path: Path) -> int:
    return int(path.stem[2:])


@pytest.mark.parametrize("options", OPTION_SETS[:2])
def test_no_planted_phi_survives(
    corpus: Path, tmp_path: Path, options: frozenset[ProfileOption]
) -> None:
    summary = pseudonymise_tree(Pseudonymiser(SECRET, options), corpus, tmp_path / "out")
    assert summary.written == summary.files == 9
    assert summary.pixel_data_copied_raw == 9
    for path in sorted((tmp_path / "out").rglob("*.dcm")):
        assert leaks(path, _instance_number(path)) == [], path.name


def test_cleaning_options_leak_nothing(corpus: Path, tmp_path: Path) -> None:
    options = frozenset(
        {
            Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES,
            Opt.RETAIN_PATIENT_CHARACTERISTICS,
            Opt.CLEAN_DESCRIPTORS,
            Opt.CLEAN_STRUCTURED_CONTENT,
            Opt.CLEAN_GRAPHICS,
            Opt.RETAIN_SAFE_PRIVATE,
        }
    )
    pseudonymise_tree(Pseudonymiser(SECRET, options), corpus, tmp_path / "out")
    for path in sorted((tmp_path / "out").rglob("*.dcm")):
        assert leaks(path, _instance_number(path)) == [], path.name
        ds = dcmread(path)
        if ds.Modality == "CT":
            assert ds.StudyDescription == "CT HEAD"  # cleaned, not dropped


def test_fast_path_equals_the_plain_path(corpus: Path, tmp_path: Path) -> None:
    pseudonymiser = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES}))
    for source in sorted(corpus.rglob("*.dcm")):
        fast = tmp_path / "fast.dcm"
        assert pseudonymise_file(pseudonymiser, source, fast)
        buffer = io.BytesIO()
        pydicom.dcmwrite(
            buffer, pseudonymiser.pseudonymise(dcmread(source)), enforce_file_format=True
        )
        assert fast.read_bytes() == buffer.getvalue(), source.name
        assert dcmread(fast).PixelData == dcmread(source).PixelData


def test_fast_path_copies_the_right_bytes_of_files_larger_than_the_read_buffer(
    tmp_path: Path,
) -> None:
    """Real-sized images: the header is read through a buffer that runs ahead of where
    Pixel Data starts, so the raw copy must not start where the descriptor happens to be
    (it did, and wrote a broken file, before the copy named its offsets)."""
    pseudonymiser = Pseudonymiser(SECRET, frozenset())
    sources = [
        *write_ct(tmp_path / "ct", 2, size=512),
        *write_dx(tmp_path / "dx", 1, rows=600, columns=500),
    ]
    for source in sources:
        fast = tmp_path / "fast.dcm"
        assert pseudonymise_file(pseudonymiser, source, fast)
        buffer = io.BytesIO()
        pydicom.dcmwrite(
            buffer, pseudonymiser.pseudonymise(dcmread(source)), enforce_file_format=True
        )
        assert fast.read_bytes() == buffer.getvalue(), source.name


def test_uids_stay_consistent_within_study_and_series(corpus: Path, tmp_path: Path) -> None:
    pseudonymise_tree(Pseudonymiser(SECRET, frozenset()), corpus, tmp_path / "out")
    cts = [dcmread(p) for p in sorted((tmp_path / "out" / "ct").glob("*.dcm"))]
    assert len({ds.StudyInstanceUID for ds in cts}) == 1
    assert len({ds.SeriesInstanceUID for ds in cts}) == 1
    assert len({ds.FrameOfReferenceUID for ds in cts}) == 1
    assert len({ds.SOPInstanceUID for ds in cts}) == len(cts)
    assert all(ds.StudyInstanceUID.startswith("2.25.") for ds in cts)


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(
        [str(DCIODVFY), "-new", str(path)], capture_output=True, text=True, check=False
    )
    lines = (run.stdout + run.stderr).splitlines()
    # the element path names the instance's own values nowhere; compare the messages
    return {line for line in lines if line.startswith("Error")}


@pytest.mark.dicom3tools
@pytest.mark.parametrize("options", OPTION_SETS)
def test_outputs_add_no_iod_errors(
    corpus: Path, tmp_path: Path, options: frozenset[ProfileOption]
) -> None:
    assert shutil.which(str(DCIODVFY))
    pseudonymise_tree(Pseudonymiser(SECRET, options), corpus, tmp_path / "out")
    for source in [corpus / "ct" / "ct0001.dcm", corpus / "dx" / "dx0001.dcm"]:
        out = tmp_path / "out" / source.relative_to(corpus)
        assert _dciodvfy_errors(out) <= _dciodvfy_errors(source), source.name


def test_every_pydicom_test_file_passes_without_a_crash(tmp_path: Path) -> None:
    pseudonymiser = Pseudonymiser(
        SECRET,
        frozenset({Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES}),
        burned_in=BurnedInPolicy.ACCEPT_CLEANED_BY_VENDOR,
    )
    outcome: Counter[str] = Counter()
    for n, name in enumerate(get_testdata_files()):
        source = Path(name)
        try:
            dcmread(source, force=True)
        except Exception:
            outcome["unreadable by pydicom"] += 1
            continue
        target = tmp_path / f"{n}.dcm"
        try:
            pseudonymise_file(pseudonymiser, source, target)
        except pydicom.errors.InvalidDicomError:
            outcome["not an instance"] += 1  # README, JSON, ICC profile, a bare fragment
            continue
        dcmread(target, force=True)  # the output is readable again
        outcome["passed"] += 1
    print(dict(outcome))
    assert outcome["passed"] >= 160, outcome
    assert outcome["unreadable by pydicom"] < 20, outcome


def test_cli_writes_a_summary_and_never_a_value(corpus: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123")
    out = tmp_path / "out"
    exit_code = main(["pseudonymise", str(corpus), str(out), "--key-file", str(key), "--quiet"])
    assert exit_code == 0
    assert len(list(out.rglob("*.dcm"))) == 9


def test_cli_summary_and_progress(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123")
    (tmp_path / "in").mkdir()
    shutil.copytree(corpus, tmp_path / "in" / "c")
    (tmp_path / "in" / "notes.txt").write_text("PHI not dicom")
    sc = dcmread(tmp_path / "in" / "c" / "ct" / "ct0001.dcm")
    sc.BurnedInAnnotation = "YES"
    sc.save_as(tmp_path / "in" / "burned.dcm")
    exit_code = main(
        [
            "pseudonymise",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--key-file",
            str(key),
            "--option",
            "retain_longitudinal_modified_dates",
        ]
    )
    captured = capsys.readouterr()
    assert exit_code == 0
    assert "[" + "#" * 30 + "] 11/11" in captured.err
    assert "files: 11, written: 9" in captured.out
    assert "not DICOM: 1" in captured.out
    assert "refused (possible burned-in text): 1" in captured.out
    assert "private removed:" in captured.out
    assert "PHI" not in captured.out + captured.err
    assert not (tmp_path / "out" / "burned.dcm").exists()
    assert not (tmp_path / "out" / "notes.txt").exists()


def test_cli_refuses_a_short_key_and_an_output_inside_the_input(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"short")
    (tmp_path / "in").mkdir()
    assert (
        main(["pseudonymise", str(tmp_path / "in"), str(tmp_path / "o"), "--key-file", str(key)])
        == 2
    )
    key.write_bytes(b"0123456789abcdef0123")
    inside = tmp_path / "in" / "out"
    assert main(["pseudonymise", str(tmp_path / "in"), str(inside), "--key-file", str(key)]) == 2


def test_text_progress_draws_one_line() -> None:
    written: list[str] = []
    draw = text_progress(written.append, width=4)
    draw(1, 2)
    draw(2, 2)
    assert written == ["\r[##--] 1/2", "\r[####] 2/2\n"]


def test_kept_elements_read_from_a_file_are_copied_raw(corpus: Path) -> None:
    source = dcmread(corpus / "ct" / "ct0001.dcm")
    tags = [tag_for_keyword(k) for k in ("Rows", "PixelSpacing", "SliceThickness", "PixelData")]
    assert all(isinstance(source.get_item(tag), RawDataElement) for tag in tags if tag)
    out = Pseudonymiser(SECRET, frozenset()).pseudonymise(source)
    for tag in tags:
        assert tag is not None
        assert out.get_item(tag) is source.get_item(tag), tag
    assert out.StudyInstanceUID != source.StudyInstanceUID  # replaced, so decoded
