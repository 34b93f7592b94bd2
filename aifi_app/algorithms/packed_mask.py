"""A stack of binary frames kept bit-packed: 1 bit per pixel instead of numpy's 1 byte.

A 500-slice CT's lung mask is 131 MB as a ``bool`` array and 16 MB packed. Each frame is
packed on its own, little-endian bit order (the first pixel in the lowest bit), which is
also how a DICOM BINARY Segmentation stores its frames (PS3.5 8.1.1, PS3.3 C.8.20.2.1):
:meth:`PackedFrames.pixel_data` gives the Pixel Data of chosen frames without unpacking
them when a frame's pixel count is a multiple of 8.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_POPCOUNT = np.array([bin(n).count("1") for n in range(256)], dtype=np.uint8)


class PackedFrames:
    """``frames`` binary frames of ``rows`` x ``columns``, bit-packed, frame by frame.

    Not thread-safe for writing; reading from several threads is fine.
    """

    def __init__(self, frames: int, rows: int, columns: int) -> None:
        """All frames empty."""
        if frames < 0 or rows < 1 or columns < 1:
            raise ValueError(f"no mask of {frames} frames of {rows} x {columns}")
        self.frames = frames
        self.rows = rows
        self.columns = columns
        self.bits: npt.NDArray[np.uint8] = np.zeros(
            (frames, (rows * columns + 7) // 8), dtype=np.uint8
        )

    def release(self) -> None:
        """Let the frames' memory go (a 500-slice CT's mask: 16 MB) once nothing is to
        read them again: the frames are then empty, and :attr:`released` is True."""
        self.bits = np.zeros((0, self.bits.shape[1]), dtype=np.uint8)

    @property
    def released(self) -> bool:
        """Whether :meth:`release` let the frames go (their bits hold fewer frames)."""
        return len(self.bits) != self.frames

    @classmethod
    def from_array(cls, mask: npt.NDArray[np.bool_]) -> PackedFrames:
        """Pack a (frames, rows, columns) array (non-zero: set)."""
        if mask.ndim != 3:
            raise ValueError(f"a mask is (frames, rows, columns), not {mask.shape}")
        packed = cls(*mask.shape)
        for n, plane in enumerate(mask):
            packed.set_frame(n, plane)
        return packed

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.frames, self.rows, self.columns

    def frame(self, index: int) -> npt.NDArray[np.bool_]:
        """Frame ``index`` unpacked, (rows, columns), a new array."""
        flat = np.unpackbits(self.bits[index], count=self.rows * self.columns, bitorder="little")
        return flat.view(np.bool_).reshape(self.rows, self.columns)

    def set_frame(self, index: int, plane: npt.NDArray[np.bool_]) -> None:
        if plane.shape != (self.rows, self.columns):
            raise ValueError(f"frame is {plane.shape}, not {(self.rows, self.columns)}")
        self.bits[index] = np.packbits(plane.astype(np.bool_, copy=False), bitorder="little")

    def clear_frame(self, index: int) -> None:
        self.bits[index] = 0

    def to_array(self) -> npt.NDArray[np.bool_]:
        """All frames unpacked, (frames, rows, columns): 1 byte per pixel again."""
        out = np.empty(self.shape, dtype=np.bool_)
        for n in range(self.frames):
            out[n] = self.frame(n)
        return out

    def frames_set(self) -> npt.NDArray[np.bool_]:
        """Per frame: whether any of its pixels is set."""
        return np.asarray(self.bits.any(axis=1), dtype=np.bool_)

    def count(self) -> int:
        """How many pixels are set in all frames together."""
        return int(sum(int(_POPCOUNT[row].sum(dtype=np.int64)) for row in self.bits))

    def pixel_data(self, indices: Sequence[int]) -> bytes:
        """The DICOM BINARY Segmentation Pixel Data of frames ``indices`` in that order:
        their bits one after the other, no padding between frames, the whole padded with
        zero bits to an even number of bytes.

        Frames that end on a byte are joined straight from the packed rows (each a view:
        only the result is made, not a copy of each frame first: 16 MB, not 33, for a
        500-slice CT's mask)."""
        if (self.rows * self.columns) % 8 == 0:
            parts = [self.bits[i].data for i in indices]
            if (len(parts) * self.bits.shape[1]) % 2:
                parts.append(memoryview(b"\0"))
            return b"".join(parts)
        # frames do not end on a byte: pack the frames' pixels as one run
        pixels = [self.frame(i).ravel() for i in indices]
        run = np.concatenate(pixels) if pixels else np.zeros(0, dtype=np.bool_)
        data = np.packbits(run, bitorder="little").tobytes()
        return data + b"\0" * (len(data) % 2)
