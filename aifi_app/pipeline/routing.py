"""Routing rules: which algorithms a complete study goes to, and why not when none.

Rules are evaluated on the original (not yet pseudonymised) headers, one per series, on
the worker thread. A route matches when one series satisfies all its criteria.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset

from aifi_app.algorithms.input_rules import Range, SeriesRules, patient_age_years, series_mismatch
from aifi_app.config.settings import Route

__all__ = ["RouteDecision", "evaluate", "no_match_reason", "patient_age_years", "route_rules"]


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    matched: bool
    reason: str
    """Why it did not match, in words ("" when it matched)."""
    series_uids: tuple[str, ...] = ()


def route_rules(route: Route) -> SeriesRules:
    """The route's criteria as series rules (shared with package input conformance)."""
    return SeriesRules(
        modalities=route.modalities,
        body_parts=route.body_parts,
        study_description=route.study_description,
        series_description=route.series_description,
        patient_age_years=Range(route.min_patient_age_years, route.max_patient_age_years),
        slice_thickness_mm=Range(route.min_slice_thickness_mm, route.max_slice_thickness_mm),
        convolution_kernels=route.convolution_kernels,
    )


def _series_mismatch(route: Route, ds: Dataset) -> str:
    """Why one series does not satisfy the route ("" when it does)."""
    return series_mismatch(route_rules(route), ds, needs="route needs")


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
