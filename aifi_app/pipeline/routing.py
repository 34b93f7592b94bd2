"""Routing rules: which algorithms a complete study goes to, and why not when none.

Rules are evaluated on the original (not yet pseudonymised) headers, one per series, on
the worker thread. A route matches when one series satisfies all its criteria.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydicom import Dataset
from pydicom.multival import MultiValue

from aifi_app.config.settings import Route


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    matched: bool
    reason: str
    """Why it did not match, in words ("" when it matched)."""
    series_uids: tuple[str, ...] = ()


def patient_age_years(ds: Dataset) -> float | None:
    """Age from Patient's Age ("045Y", "006M", "010W", "003D") or birth and study date."""
    age = str(ds.get("PatientAge") or "")
    match = re.fullmatch(r"(\d{3})([DWMY])", age)
    if match:
        n = int(match.group(1))
        return {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12, "Y": float(n)}[match.group(2)]
    birth, when = str(ds.get("PatientBirthDate") or ""), str(ds.get("StudyDate") or "")
    try:
        b = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
        s = date(int(when[:4]), int(when[4:6]), int(when[6:8]))
    except ValueError:
        return None
    return (s - b).days / 365.25


def _number(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _series_mismatch(route: Route, ds: Dataset) -> str:
    """Why one series does not satisfy the route ("" when it does)."""
    modality = str(ds.get("Modality") or "")
    if route.modalities and modality not in route.modalities:
        return f"modality {modality or 'missing'}, route needs {'/'.join(route.modalities)}"
    body_part = str(ds.get("BodyPartExamined") or "").upper()
    if route.body_parts and body_part and body_part not in {b.upper() for b in route.body_parts}:
        return f"body part {body_part}, route needs {'/'.join(route.body_parts)}"
    if route.study_description and not re.search(
        route.study_description, str(ds.get("StudyDescription") or ""), re.IGNORECASE
    ):
        return "study description does not match the route's pattern"
    if route.series_description and not re.search(
        route.series_description, str(ds.get("SeriesDescription") or ""), re.IGNORECASE
    ):
        return "series description does not match the route's pattern"
    if route.min_patient_age_years is not None or route.max_patient_age_years is not None:
        age = patient_age_years(ds)
        if age is None:
            return "patient age unknown, route has an age range"
        if route.min_patient_age_years is not None and age < route.min_patient_age_years:
            return (
                f"patient age {age:.1f} y, route needs at least {route.min_patient_age_years:g} y"
            )
        if route.max_patient_age_years is not None and age > route.max_patient_age_years:
            return f"patient age {age:.1f} y, route needs at most {route.max_patient_age_years:g} y"
    if route.min_slice_thickness_mm is not None or route.max_slice_thickness_mm is not None:
        thickness = _number(ds, "SliceThickness")
        if thickness is None:
            return "slice thickness unknown, route has a thickness range"
        if route.min_slice_thickness_mm is not None and thickness < route.min_slice_thickness_mm:
            return (
                f"slice thickness {thickness:g} mm, "
                f"route needs at least {route.min_slice_thickness_mm:g} mm"
            )
        if route.max_slice_thickness_mm is not None and thickness > route.max_slice_thickness_mm:
            return (
                f"slice thickness {thickness:g} mm, "
                f"route needs at most {route.max_slice_thickness_mm:g} mm"
            )
    if route.convolution_kernels:
        kernel = ds.get("ConvolutionKernel")
        values = [
            str(k) for k in (kernel if isinstance(kernel, MultiValue | list) else [kernel]) if k
        ]
        if not {k.upper() for k in values} & {k.upper() for k in route.convolution_kernels}:
            return (
                f"convolution kernel {'/'.join(values) or 'missing'},"
                f" route needs {'/'.join(route.convolution_kernels)}"
            )
    return ""


def evaluate(routes: Sequence[Route], series_headers: Sequence[Dataset]) -> list[RouteDecision]:
    """Each route's decision for a study given one header per series."""
    decisions = []
    for route in routes:
        reasons = []
        matched_series = []
        for ds in series_headers:
            why = _series_mismatch(route, ds)
            if why:
                reasons.append(why)
            else:
                matched_series.append(str(ds.SeriesInstanceUID))
        if matched_series:
            decisions.append(RouteDecision(route, True, "", tuple(matched_series)))
        else:
            decisions.append(RouteDecision(route, False, "; ".join(sorted(set(reasons)))))
    return decisions


def no_match_reason(decisions: Sequence[RouteDecision]) -> str:
    if not decisions:
        return "no routes are configured"
    return "no route matches: " + " | ".join(f"{d.route.name}: {d.reason}" for d in decisions)
