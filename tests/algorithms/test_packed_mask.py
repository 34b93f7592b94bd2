"""Bit-packed mask frames: round trips, counts, and DICOM BINARY Pixel Data."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels.utils import pack_bits

from aifi_app.algorithms.packed_mask import PackedFrames


@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 5, 7), (1, 1, 1), (2, 512, 512)])
def test_frames_round_trip_and_count(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.3
    mask[0] = False  # an empty frame
    packed = PackedFrames.from_array(mask)
    assert packed.shape == shape
    assert packed.bits.nbytes == shape[0] * ((shape[1] * shape[2] + 7) // 8)
    np.testing.assert_array_equal(packed.to_array(), mask)
    for n in range(shape[0]):
        np.testing.assert_array_equal(packed.frame(n), mask[n])
    assert packed.count() == int(mask.sum())
    np.testing.assert_array_equal(packed.frames_set(), mask.any(axis=(1, 2)))


def test_frames_are_set_and_cleared_one_by_one() -> None:
    packed = PackedFrames(3, 4, 6)
    plane = np.zeros((4, 6), dtype=bool)
    plane[1:3, 2:5] = True
    packed.set_frame(1, plane)
    assert packed.count() == 6
    assert packed.frames_set().tolist() == [False, True, False]
    packed.clear_frame(1)
    assert packed.count() == 0
    with pytest.raises(ValueError, match="not"):
        packed.set_frame(0, np.zeros((6, 4), dtype=bool))
    with pytest.raises(ValueError):
        PackedFrames.from_array(np.zeros((4, 6), dtype=bool))


@pytest.mark.parametrize(
    "shape",
    [(5, 8, 8), (5, 5, 7), (3, 3, 3), (5, 1, 8), (4, 4, 2)],  # odd byte counts: padded
)
def test_pixel_data_is_the_frames_packed_as_dicom_binary(shape: tuple[int, int, int]) -> None:
    """The chosen frames, in the chosen order, packed as one run of bits (pydicom's
    pack_bits, as a BINARY Segmentation stores them), padded to an even length."""
    rng = np.random.default_rng(7)
    mask = rng.random(shape) < 0.5
    packed = PackedFrames.from_array(mask)
    order = [3, 0, 2] if shape[0] > 3 else [2, 0]
    expected = pack_bits(mask[order].astype(np.uint8).ravel(), pad=True)
    data = packed.pixel_data(order)
    assert type(data) is bytes
    assert data == expected
    assert len(data) % 2 == 0
    assert packed.pixel_data([]) == b""


def test_released_frames_let_their_memory_go() -> None:
    """Released (its SEG written), a mask holds no frames: its bits are freed, and a
    frame asked for afterwards is an error, not an empty frame."""
    packed = PackedFrames.from_array(np.ones((4, 16, 16), dtype=bool))
    bits = packed.bits
    assert not packed.released
    packed.release()
    assert packed.released
    assert packed.bits.nbytes == 0 and bits.nbytes == 4 * 32  # (the caller's own reference)
    with pytest.raises(IndexError):
        packed.frame(0)
    assert packed.count() == 0
