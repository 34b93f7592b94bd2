"""Result previews: the first frame of an image object as 8-bit grey or RGB bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from aifi_app.results.preview import NoImageError, preview_pixels


def _save(path: Path, pixels: np.ndarray | None, photometric: str = "MONOCHROME2") -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    if pixels is not None:
        bits = 8 if pixels.dtype == np.uint8 else 16
        ds.set_pixel_data(pixels, photometric, bits)
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def test_grey_image_is_scaled_to_8_bits(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 4000, 4, dtype=np.uint16), (100, 1))  # 100 x 1000
    preview = preview_pixels(_save(tmp_path / "a.dcm", ramp), max_side=500)
    assert (preview.width, preview.height, preview.channels) == (500, 50, 1)
    data = np.frombuffer(preview.data, dtype=np.uint8).reshape(50, 500)
    assert data[0, 0] == 0 and data[0, -1] >= 254 and np.all(np.diff(data[0].astype(int)) >= 0)


def test_monochrome1_is_inverted_and_rgb_kept(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[0, 0] = 200
    inverted = preview_pixels(_save(tmp_path / "m1.dcm", pixels, "MONOCHROME1"))
    assert inverted.data[0] == 0 and inverted.data[1] == 255
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    colour = preview_pixels(_save(tmp_path / "rgb.dcm", rgb, "RGB"))
    assert (colour.width, colour.height, colour.channels) == (6, 4, 3)
    assert colour.data[:3] == bytes([255, 0, 0])


def test_multiframe_gives_the_first_frame_and_sr_has_none(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 4), v, dtype=np.uint8) for v in (0, 255)])
    frames[0, 0, 0] = 255
    first = preview_pixels(_save(tmp_path / "mf.dcm", frames))
    assert (first.width, first.height) == (4, 4) and first.data[0] == 255 and first.data[1] == 0
    with pytest.raises(NoImageError):
        preview_pixels(_save(tmp_path / "sr.dcm", None))
