"""One line of the benchmark table."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    ours: float
    peer_name: str
    peer: float | None
    unit: str = "s"
    megabytes: float = 0.0

    def line(self) -> str:
        def fmt(v: float) -> str:
            rate = f" ({self.megabytes / v:5.0f} MB/s)" if self.megabytes and v else ""
            return f"{v:7.2f} {self.unit}{rate}"

        if self.peer is None:
            return f"{self.name:<38} {fmt(self.ours):<22} {self.peer_name}"
        ratio = self.peer / self.ours if self.ours else float("inf")
        return (
            f"{self.name:<38} {fmt(self.ours):<22} {self.peer_name:<24} "
            f"{fmt(self.peer):<22} {ratio:5.2f}x"
        )


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))
