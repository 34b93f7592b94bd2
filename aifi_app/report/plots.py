"""The report's plots, drawn with matplotlib's object API (no pyplot, no GUI backend).

Each ``draw_*`` function draws one plot on an Axes, so that the report (PNG files, Agg)
and the desktop dashboard (a Qt canvas) show the same pictures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aifi_app.evaluation.stats import Proportion
from aifi_app.report.figures import Figures

Draw = Callable[[Axes, Figures], None]


def _no_data(ax: Axes, text: str = "no data in this period") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_turnaround(ax: Axes, f: Figures) -> None:
    """Turnaround (last image to results in PACS) per algorithm: box plot with the jobs."""
    ax.set_title("Turnaround per algorithm")
    names = sorted(f.turnarounds)
    if not names:
        _no_data(ax)
        return
    data = [f.turnarounds[n] for n in names]
    ax.boxplot(data, orientation="horizontal", widths=0.5, showfliers=False)
    for i, values in enumerate(data, start=1):
        ax.plot(values, [i] * len(values), "o", alpha=0.5, markersize=4, color="tab:blue")
    ax.set_yticks(range(1, len(names) + 1), [f"{n} (n={len(f.turnarounds[n])})" for n in names])
    ax.set_xlabel("seconds from the last image to the results in PACS")
    ax.set_xlim(left=0)


def draw_volume(ax: Axes, f: Figures) -> None:
    """Jobs per day, stacked per algorithm."""
    ax.set_title("Jobs per day")
    days = sorted({v.day for v in f.volume})
    algorithms = sorted({v.algorithm_id for v in f.volume})
    if not algorithms:
        _no_data(ax)
        return
    bottom = [0] * len(days)
    x = list(range(len(days)))
    for algorithm in algorithms:
        counts = {v.day: v.total for v in f.volume if v.algorithm_id == algorithm}
        heights = [counts.get(d, 0) for d in days]
        ax.bar(x, heights, bottom=bottom, label=algorithm)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    step = max(1, len(days) // 10)
    ax.set_xticks(x[::step], [d.strftime("%d-%m") for d in days][::step])
    ax.set_ylabel("jobs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")


def draw_availability(ax: Axes, f: Figures) -> None:
    """Availability of the service and of each remote node, in percent."""
    ax.set_title("Availability")
    labels = ["service"] + [n.node for n in f.nodes]
    values = [f.service.fraction] + [n.fraction for n in f.nodes]
    shown = [(label, v) for label, v in zip(labels, values, strict=True) if v is not None]
    if not shown:
        _no_data(ax)
        return
    y = list(range(len(shown)))
    percent = [100 * v for _, v in shown]
    colours = ["tab:green" if p >= 99 else "tab:orange" if p >= 95 else "tab:red" for p in percent]
    ax.barh(y, percent, color=colours)
    for i, p in enumerate(percent):
        if p >= 20:
            ax.text(p - 1, i, f"{p:.1f} %", va="center", ha="right", color="white")
        else:
            ax.text(p + 1, i, f"{p:.1f} %", va="center", ha="left", color="black")
    ax.set_yticks(y, [label for label, _ in shown])
    ax.set_xlim(0, 100)
    ax.set_xlabel("percent of the observed time")
    ax.invert_yaxis()


def draw_agreement(ax: Axes, f: Figures) -> None:
    """Agreement, PPV and sensitivity (reported misses) per algorithm, Wilson 95 % bars."""
    ax.set_title("Agreement with people's verdicts")
    if not f.accuracy:
        _no_data(ax, "no verdicts in this period")
        return
    series: list[tuple[str, Callable[[int], Proportion | None]]] = [
        ("agreement", lambda i: f.accuracy[i].agreement),
        ("PPV", lambda i: f.accuracy[i].ppv),
        ("sensitivity*", lambda i: f.accuracy[i].sensitivity),
    ]
    width = 0.25
    for k, (label, get) in enumerate(series):
        xs, ys, low, high, ns = [], [], [], [], []
        for i in range(len(f.accuracy)):
            p = get(i)
            if p is None or p.value is None or p.interval is None:
                continue
            xs.append(i + (k - 1) * width)
            ys.append(100 * p.value)
            low.append(100 * (p.value - p.interval[0]))
            high.append(100 * (p.interval[1] - p.value))
            ns.append(p.n)
        ax.bar(xs, ys, width, yerr=[low, high], capsize=3, label=label)
        for x, n in zip(xs, ns, strict=True):
            ax.text(x, 2, f"n={n}", ha="center", fontsize="x-small", color="white")
    ax.set_xticks(range(len(f.accuracy)), [a.algorithm_id for a in f.accuracy])
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("percent")
    ax.legend(fontsize="small", loc="upper center", ncols=3)


PLOTS: dict[str, Draw] = {
    "turnaround": draw_turnaround,
    "volume": draw_volume,
    "availability": draw_availability,
    "agreement": draw_agreement,
}


def save_png(draw: Draw, f: Figures, path: Path, size: tuple[float, float] = (7, 3.6)) -> Path:
    """Draw one plot into a PNG file (Agg)."""
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure.add_subplot(), f)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
