"""A small preview of a result object's image (the first frame), for the desktop client.

Decodes with pydicom and scales with numpy into 8-bit grey or RGB bytes that a GUI turns
into an image (the Qt side only wraps the bytes). Blocking (file read and decode): call it
off the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.pixels.processing import convert_color_space


@dataclass(frozen=True)
class PreviewPixels:
    width: int
    height: int
    channels: int
    """1 (grey) or 3 (RGB)."""
    data: bytes
    """Rows of ``width * channels`` bytes, top to bottom."""


class NoImageError(ValueError):
    """The object holds no pixel data (a structured report, for example)."""


def preview_pixels(path: Path, max_side: int = 512) -> PreviewPixels:
    ds = dcmread(path)
    if "PixelData" not in ds:
        raise NoImageError(f"{path.name} holds no image")
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:  # colour
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        image = pixels.astype(np.uint8) if pixels.dtype == np.uint8 else _to_uint8(pixels)
    else:
        image = _to_uint8(pixels.astype(np.float64))
        if photometric == "MONOCHROME1":
            image = 255 - image
    step = max(1, -(-max(image.shape[:2]) // max_side))  # ceiling division
    image = np.ascontiguousarray(image[::step, ::step])
    channels = 3 if image.ndim == 3 else 1
    return PreviewPixels(image.shape[1], image.shape[0], channels, image.tobytes())


def _to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
