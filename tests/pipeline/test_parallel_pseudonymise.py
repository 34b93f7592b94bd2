"""Pseudonymising a job's images in worker processes gives what one thread gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.part10 import part10_bytes
from aifi_app.pipeline import parallel_pseudonymise
from aifi_app.pipeline.parallel_pseudonymise import (
    MIN_CPUS_FOR_PROCESSES,
    PARALLEL_FROM_IMAGES,
    processes_for,
    pseudonymise_all,
    work_file,
)
from aifi_app.pseudonymise import (
    BurnedInAnnotationRefused,
    BurnedInPolicy,
    ProfileOption,
    Pseudonymiser,
)
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest, write

KEY = b"k" * 32
OPTIONS = frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})


def _ct(folder: Path, slices: int) -> list[Path]:
    return [write(ds, folder) for ds in ct_series(demo_patient(3), slices, size=16)]


def test_processes_give_byte_identical_files_and_the_same_mappings(tmp_path: Path) -> None:
    sources = _ct(tmp_path / "in", 11)
    serial = pseudonymise_all(
        KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "one", sources, processes=1
    )
    parallel = pseudonymise_all(
        KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "three", sources, processes=3
    )
    assert len(os.listdir(tmp_path / "three")) == len(sources)
    for n in range(len(sources)):
        assert work_file(tmp_path / "three", n).read_bytes() == (
            work_file(tmp_path / "one", n).read_bytes()
        )
    assert sorted(set(parallel)) == sorted(set(serial))
    # every image's SOP Instance UID was replaced: the mappings name them all
    originals = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sources}
    assert originals <= {original for _, original, _ in serial}
    assert not any(
        b"DEMO^PATIENT" in work_file(tmp_path / "three", n).read_bytes() for n in range(11)
    )


def test_files_are_those_of_decoding_and_writing_each_image_whole(tmp_path: Path) -> None:
    """The header-only engine (Pixel Data copied raw) writes exactly the bytes that the
    full path writes: every image read by pydicom, pseudonymised and written again."""
    radiograph = chest_radiograph(demo_patient(4), phantom_chest(64))
    sources = [*_ct(tmp_path / "in", 3), write(radiograph, tmp_path / "in")]
    pseudonymise_all(KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "fast", sources, processes=1)
    whole = Pseudonymiser(KEY, OPTIONS, burned_in=BurnedInPolicy.REFUSE)
    for n, source in enumerate(sources):
        expected = part10_bytes(whole.pseudonymise(dcmread(source)))
        assert work_file(tmp_path / "fast", n).read_bytes() == expected


def test_a_refused_image_in_a_worker_process_refuses_the_study(tmp_path: Path) -> None:
    slices = list(ct_series(demo_patient(4), 9, size=16))
    slices[7].BurnedInAnnotation = "YES"  # in the last of three parts
    sources = [write(ds, tmp_path / "in") for ds in slices]
    with pytest.raises(BurnedInAnnotationRefused):
        pseudonymise_all(KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "w", sources, processes=3)


def test_small_studies_stay_in_this_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert processes_for(2) == 1
    assert processes_for(PARALLEL_FROM_IMAGES - 1) == 1
    assert processes_for(500) == 4


def test_a_machine_with_few_cores_keeps_every_study_in_this_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: MIN_CPUS_FOR_PROCESSES - 1)
    assert processes_for(500) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: MIN_CPUS_FOR_PROCESSES)
    assert processes_for(500) == MIN_CPUS_FOR_PROCESSES


def test_processes_that_cannot_start_leave_the_work_to_this_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool that cannot start (no processes left, say) is logged and the study is
    pseudonymised here instead, the same files."""

    class NoProcesses:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError(11, "Resource temporarily unavailable")

    sources = _ct(tmp_path / "in", 5)
    expected = pseudonymise_all(
        KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "one", sources, processes=1
    )
    monkeypatch.setattr(parallel_pseudonymise, "ProcessPoolExecutor", NoProcesses)
    got = pseudonymise_all(
        KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "w", sources, processes=2
    )
    assert sorted(got) == sorted(expected)
    for n in range(5):
        assert (
            work_file(tmp_path / "w", n).read_bytes() == work_file(tmp_path / "one", n).read_bytes()
        )
    assert "doing it in this thread" in caplog.text


def test_items_whose_claim_is_refused_are_skipped_and_the_others_made(tmp_path: Path) -> None:
    """``pseudonymise_claimed`` asks before each image and skips those another process
    holds (it goes on after them); the files it makes are those of one thread."""
    sources = _ct(tmp_path / "in", 6)
    items = list(enumerate(sources))
    asked: list[int] = []

    def claim(n: int) -> bool:
        asked.append(n)
        return n not in (1, 4)

    _, made = parallel_pseudonymise.pseudonymise_claimed(
        KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "work", items, claim
    )
    assert asked == [0, 1, 2, 3, 4, 5] and made == 4
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        work_file(tmp_path / "work", n).name for n in (0, 2, 3, 5)
    ]
    pseudonymise_all(KEY, OPTIONS, BurnedInPolicy.REFUSE, tmp_path / "all", sources, processes=1)
    for n in (0, 2, 3, 5):
        got = work_file(tmp_path / "work", n).read_bytes()
        assert got == work_file(tmp_path / "all", n).read_bytes()
