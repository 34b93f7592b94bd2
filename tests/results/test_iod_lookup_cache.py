"""highdicom's IOD look-up with its answers kept: the same answers as highdicom's own."""

from __future__ import annotations

import pytest
from highdicom import _standard_utils
from pydicom import Dataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    EnhancedCTImageStorage,
    SegmentationStorage,
)

from aifi_app.results import iod_lookup_cache

QUESTIONS = [
    ("PerFrameFunctionalGroupsSequence", CTImageStorage),
    ("PerFrameFunctionalGroupsSequence", EnhancedCTImageStorage),
    ("PerFrameFunctionalGroupsSequence", SegmentationStorage),
    ("ContentDate", ComprehensiveSRStorage),
    ("PixelData", ComprehensiveSRStorage),
    ("PixelData", CTImageStorage),
]


def test_installed_look_up_answers_as_highdicoms_own_and_remembers() -> None:
    iod_lookup_cache.install()
    iod_lookup_cache.install()  # again: still one layer over highdicom's
    installed = _standard_utils.is_attribute_in_iod
    highdicoms = iod_lookup_cache.original()
    assert installed is not highdicoms
    assert not isinstance(highdicoms, type(installed))
    expected = [highdicoms(attribute, uid) for attribute, uid in QUESTIONS]
    assert True in expected and False in expected
    assert [installed(attribute, uid) for attribute, uid in QUESTIONS] == expected
    assert [installed(attribute, uid) for attribute, uid in QUESTIONS] == expected  # kept
    # a question with excluded path elements goes to highdicom as it is
    assert installed("PixelData", CTImageStorage, ["IconImageSequence"]) == highdicoms(
        "PixelData", CTImageStorage, ["IconImageSequence"]
    )
    with pytest.raises(KeyError):
        installed("PixelData", "1.2.3.4")  # an unknown SOP class is still refused


@pytest.mark.parametrize(
    ("sop_class", "multiframe"),
    [(CTImageStorage, False), (EnhancedCTImageStorage, True), (SegmentationStorage, True)],
)
def test_highdicom_still_tells_multiframe_images(sop_class: str, multiframe: bool) -> None:
    iod_lookup_cache.install()
    ds = Dataset()
    ds.SOPClassUID = sop_class
    assert _standard_utils.is_multiframe_image(ds) is multiframe


def test_a_highdicom_without_the_private_look_up_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(_standard_utils, "is_attribute_in_iod")
    iod_lookup_cache.install()  # nothing to keep answers of: no error, nothing added
    assert not hasattr(_standard_utils, "is_attribute_in_iod")
