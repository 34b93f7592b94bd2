""" "Test the rules on a study in the queue": which route and algorithm a study would get,
and why not, without changing anything.

The same checks as the pipeline, in the same order: the routing rules on one header per
series (:mod:`aifi_app.pipeline.routing`), then whether the route's algorithm is installed
and enabled, then the package's input rules and series selection
(:mod:`aifi_app.pipeline.input_selection`). Reads the spooled headers (no pixel data);
blocking, so callers run it off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from aifi_app.algorithms.input_rules import HEADER_TAGS
from aifi_app.algorithms.package import AlgorithmPackage
from aifi_app.config.settings import Route
from aifi_app.pipeline import routing
from aifi_app.pipeline.input_selection import (
    Image,
    InputNotConforming,
    group_series,
    select_images,
)
from aifi_app.store.database import Database

_TAGS = [*HEADER_TAGS, "InstanceNumber", "ImagePositionPatient"]


@dataclass(frozen=True)
class RouteCheck:
    route: str
    algorithm: str
    chosen: bool
    """The study would get a job for this algorithm."""
    words: str
    """Why (or why not), for people."""


def check_rules(
    db: Database,
    data_dir: Path,
    study_id: int,
    routes: Sequence[Route],
    enabled: Mapping[str, AlgorithmPackage],
    known: set[str],
) -> list[RouteCheck]:
    """Every route's verdict for the study (raises KeyError for an unknown study, and
    FileNotFoundError when its images were already removed by retention)."""
    if not db.query("SELECT id FROM studies WHERE id = ?", (study_id,)):
        raise KeyError(f"no study {study_id}")
    paths = [
        data_dir / r["path"]
        for r in db.query("SELECT path FROM instances WHERE study_id = ? ORDER BY id", (study_id,))
    ]
    if not paths:
        raise FileNotFoundError(f"study {study_id} has no images left on this appliance")
    images = [Image(p, dcmread(p, stop_before_pixels=True, specific_tags=_TAGS)) for p in paths]
    series = group_series(images)
    checks = []
    for decision in routing.evaluate(routes, [s.first for s in series]):
        route = decision.route
        algorithm = route.algorithm
        if not decision.matched:
            checks.append(RouteCheck(route.name, algorithm, False, decision.reason))
        elif algorithm not in known:
            checks.append(
                RouteCheck(route.name, algorithm, False, f"algorithm {algorithm} is not installed")
            )
        elif algorithm not in enabled:
            checks.append(
                RouteCheck(route.name, algorithm, False, f"algorithm {algorithm} is disabled")
            )
        else:
            try:
                chosen = select_images(enabled[algorithm].input, series)
            except InputNotConforming as exc:
                words = f"the route matches, but the study does not conform: {exc}"
                checks.append(RouteCheck(route.name, algorithm, False, words))
            else:
                words = f"route matches; {len(chosen)} image(s) would go to {algorithm}"
                checks.append(RouteCheck(route.name, algorithm, True, words))
    return checks
