"""Input conformance and series selection: which images of a study an algorithm gets, or
why the study does not conform, in words ("slice thickness 5 mm, algorithm needs at most
2.5 mm"). Pure functions on the original headers; runs on the worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from aifi_app.algorithms.input_rules import (
    image_count_mismatch,
    number,
    series_mismatch,
    view_mismatch,
)
from aifi_app.algorithms.package import InputSpec

NEEDS = "algorithm needs"
FRONTAL_VIEWS = ("PA", "AP")


class InputNotConforming(Exception):
    """The study does not give the algorithm what its manifest asks for (reason in words)."""


@dataclass(frozen=True)
class Image:
    path: Path
    header: Dataset


@dataclass(frozen=True)
class Series:
    uid: str
    images: tuple[Image, ...]

    @property
    def first(self) -> Dataset:
        return self.images[0].header


def group_series(images: Sequence[Image]) -> list[Series]:
    """Images grouped by Series Instance UID, in order of arrival."""
    by_uid: dict[str, list[Image]] = {}
    for image in images:
        by_uid.setdefault(str(image.header.get("SeriesInstanceUID") or ""), []).append(image)
    return [Series(uid, tuple(items)) for uid, items in by_uid.items()]


def _slice_order(image: Image) -> tuple[float, float]:
    position = image.header.get("ImagePositionPatient")
    z = float(position[2]) if position is not None and len(position) == 3 else 0.0
    return (number(image.header, "InstanceNumber") or 0.0, z)


def _why_not(spec: InputSpec, series: Series) -> str:
    why = series_mismatch(spec.rules, series.first, NEEDS)
    if why:
        return why
    if spec.selection.scope == "series":
        return view_mismatch(spec.views, series.first, NEEDS) or image_count_mismatch(
            len(series.images), spec.images, NEEDS
        )
    return ""


def _reject(reasons: list[str]) -> InputNotConforming:
    unique = list(dict.fromkeys(reasons))
    if len(unique) == 1:
        return InputNotConforming(unique[0])
    return InputNotConforming("no series conforms: " + "; ".join(unique))


def select_images(spec: InputSpec, series: Sequence[Series]) -> list[Path]:
    """The files to send, in order; raises :class:`InputNotConforming` with the reason."""
    if not series:
        raise InputNotConforming("the study holds no images")
    reasons: list[str] = []
    conforming: list[Series] = []
    for s in series:
        why = _why_not(spec, s)
        if why:
            reasons.append(why)
        else:
            conforming.append(s)
    if not conforming:
        raise _reject(reasons)
    if spec.selection.scope == "series":
        prefer = spec.selection.prefer
        if prefer == "thinnest":
            conforming.sort(key=lambda s: number(s.first, "SliceThickness") or float("inf"))
        elif prefer == "most_images":
            conforming.sort(key=lambda s: -len(s.images))
        chosen = sorted(conforming[0].images, key=_slice_order)
        return [i.path for i in chosen]
    candidates: list[Image] = []
    for s in conforming:
        for image in s.images:
            why = view_mismatch(spec.views, image.header, NEEDS)
            if why:
                reasons.append(why)
            else:
                candidates.append(image)
    if not candidates:
        raise _reject(reasons)
    too_few = image_count_mismatch(len(candidates), spec.images, NEEDS)
    if too_few and spec.images.low is not None and len(candidates) < spec.images.low:
        raise InputNotConforming(too_few)
    if spec.selection.prefer == "frontal":
        candidates.sort(
            key=lambda i: (
                0 if str(i.header.get("ViewPosition") or "").upper() in (*FRONTAL_VIEWS, "") else 1
            )
        )
    limit = spec.selection.max_images or len(candidates)
    return [i.path for i in candidates[:limit]]
