"""Shared plot machinery: a pyplot-free Agg figure, one style per method group, reference markers and
greedy label placement, so every plot of a report draws a group the same way."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..results import LOWER_IS_BETTER
from .aggregate import ConfigRow, Stat
from .tables import is_fraction, strength_label

FAMILIES = {"case1": "Case I", "case1_constraint": "Case I", "case2": "Case II", "case2_ball": "Case II",
            "ema": "EMA", "combo": "combination"}
FAMILY_COLORS = {"Case I": "#1f77b4", "Case II": "#ff7f0e", "EMA": "#2ca02c", "combination": "#9467bd"}


_RC = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10}


@contextmanager
def figure(figsize: tuple[float, float]) -> Iterator[tuple]:
    """A figure on the Agg canvas without pyplot: no global backend switch or figure registry, so
    `build_report` is safe inside notebooks and servers; styling is scoped to the figure."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        yield fig, fig.subplots()


def long_name(metric: str) -> str:
    return {"harmful_rate": "harmful rate", "harmful_rate_gcg": "harmful rate (GCG scorer)",
            "task_accuracy": "task accuracy", "task_nll": "task NLL",
            "over_refusal_rate": "over-refusal rate"}.get(metric, metric.replace("_", " "))


def axis_label(metric: str, good: str, axis: str) -> str:
    """'harmful rate (%, ↓ safer)', 'task accuracy (%, more capable →)'."""
    lower = metric in LOWER_IS_BETTER
    unit = "%, " if is_fraction(metric) else ""
    if axis == "x":
        return f"{long_name(metric)} ({unit}{'← ' + good if lower else good + ' →'})"
    return f"{long_name(metric)} ({unit}{'↓' if lower else '↑'} {good})"


def percent_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.0f}"))


def group_curves(rows: Sequence[ConfigRow]) -> dict[str, list[ConfigRow]]:
    """Method groups (one curve each), rows sorted by strength; the aligned/sft references excluded."""
    curves: dict[str, list[ConfigRow]] = {}
    for r in rows:
        if r.reference:
            continue
        curves.setdefault(r.label, []).append(r)
    for members in curves.values():
        members.sort(key=lambda r: (r.strength if r.strength is not None else -math.inf))
    return curves


def merge_labels(points: list[tuple[float, float, ConfigRow]], xspan: float, yspan: float) -> list[tuple]:
    """Points of one curve that (nearly) coincide get one label 'λ=0.1, 1, 2' instead of a pile-up."""
    clusters: list[list[tuple[float, float, ConfigRow]]] = []
    for p in points:
        for cluster in clusters:
            if abs(cluster[0][0] - p[0]) <= 0.02 * xspan and abs(cluster[0][1] - p[1]) <= 0.02 * yspan:
                cluster.append(p)
                break
        else:
            clusters.append([p])
    out = []
    for cluster in clusters:
        first = cluster[0][2]
        text = strength_label(first.strength_key, first.strength)
        if len(cluster) > 1:
            text += ", " + ", ".join(f"{p[2].strength:g}" for p in cluster[1:] if p[2].strength is not None)
        out.append((cluster[0][0], cluster[0][1], text))
    return out


def place_labels(fig, ax, labels: Sequence[tuple[float, float, str, str]], fontsize: float = 9,
                  obstacles: Sequence[tuple[float, float]] = ()) -> None:
    """Greedy label placement: for each label, try offsets around its point and keep the one that
    overlaps least with labels already placed, the data points (and `obstacles`) and the axes border."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax_box = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0
    pts = [ax.transData.transform((x, y)) for x, y, _, _ in labels]
    pts += [ax.transData.transform(p) for p in obstacles]
    point_boxes = [Bbox.from_extents(px - 6 * scale, py - 6 * scale, px + 6 * scale, py + 6 * scale)
                   for px, py in pts]
    placed: list = []
    offsets = [(6, 5, "left", "bottom"), (6, -5, "left", "top"), (-6, 5, "right", "bottom"),
               (-6, -5, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
               (9, 0, "left", "center"), (-9, 0, "right", "center")]
    offsets += [(dx * 3, dy * 3, ha, va) for dx, dy, ha, va in offsets]

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    for (x, y, text, color), own in zip(labels, point_boxes):
        best = None
        for i, (dx, dy, ha, va) in enumerate(offsets):
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, color=color, annotation_clip=False,
                              arrowprops=dict(arrowstyle="-", color=color, lw=0.6, alpha=0.7) if i >= 8 else None)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            outside = box.width * box.height - overlap(box, ax_box)
            score = (sum(overlap(box, b) for b in placed) + sum(overlap(box, b) for b in point_boxes if b is not own)
                     + 3 * outside + 0.5 * i)  # prefer near offsets when all else is equal
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, ann, box)
            else:
                ann.remove()
            if score < 1:
                break
        placed.append(best[2])


def _markers():
    return ["o", "s", "^", "D", "v", "P", "<", ">", "h", "*"]


def _shade(color: str, k: int) -> tuple[float, float, float]:
    """The k-th shade of a family colour: base, darker, lighter, ... so groups of a family stay related."""
    from matplotlib.colors import to_rgb

    rgb = to_rgb(color)
    if k == 0:
        return rgb
    t = min(0.4 * ((k + 1) // 2), 0.7)
    target = (0.0, 0.0, 0.0) if k % 2 else (1.0, 1.0, 1.0)
    return tuple(c + (g - c) * t for c, g in zip(rgb, target))


def group_styles(curves: dict[str, list[ConfigRow]]) -> dict[str, dict]:
    """One style per curve, the same in every plot: colour by method family (Case I blue, Case II orange,
    EMA green, ...), shade, marker and line style by the group within its family."""
    spare = iter(["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"] * 3)
    family_color: dict[str, str] = dict(FAMILY_COLORS)
    per_family: dict[str, int] = defaultdict(int)
    styles = {}
    for label, members in curves.items():
        family = FAMILIES.get(members[0].method, members[0].method)
        if family not in family_color:
            family_color[family] = next(spare)
        k = per_family[family]
        per_family[family] += 1
        styles[label] = dict(color=_shade(family_color[family], k), marker=_markers()[k % 10],
                             ls=["-", "--", ":", "-."][k % 4], family=family)
    return styles


def plot_references(ax, rows: Sequence[ConfigRow], xkey: str, ykey: str,
                     xlim: tuple[float, float] | None = None) -> tuple[list[tuple], list[tuple]]:
    """Aligned model (black star) and plain SFT (red cross), with error bars when several seeds. A
    reference beyond `xlim` is drawn at the edge, with a label giving its true x.
    Returns (their positions, labels to place) so other labels keep clear of them."""
    positions, labels = [], []
    style = {"aligned": dict(marker="*", color="black", ms=17), "sft": dict(marker="X", color="#d62728", ms=13)}
    roles = {"aligned": ("aligned", "aligned model θ₀"), "sft": ("sft", "plain SFT")}
    for r in rows:
        if not r.reference:
            continue
        xs, ys = r.metrics.get(xkey), r.metrics.get(ykey)
        if xs is None or ys is None:
            continue
        word, default = roles[r.reference]
        label = r.name if word in r.name.lower() else f"{default}: {r.name}"
        x, xerr = xs.mean, err_bar(xs)
        if xlim and not xlim[0] <= x <= xlim[1]:
            edge = xlim[1] if x > xlim[1] else xlim[0]
            labels.append((edge, ys.mean, f"{label} at x = {x:+.3g} (off scale)", style[r.reference]["color"]))
            x, xerr = edge, None
        ax.errorbar([x], [ys.mean], xerr=xerr, yerr=err_bar(ys), linestyle="none", zorder=5, mec="white", mew=1,
                    capsize=3, label=label, clip_on=False, **style[r.reference])
        positions.append((x, ys.mean))
    return positions, labels


def err_bar(stat: Stat | None):
    """±1 std over seeds, else ±1 lm-eval standard error, else no bar."""
    return None if stat is None or math.isnan(stat.spread) else [stat.spread]


def err_bars(stats: Sequence[Stat | None]):
    vals = [0.0 if s is None or math.isnan(s.spread) else s.spread for s in stats]
    return vals if any(vals) else None


def ideal_corner(ax, right: bool, top: bool) -> None:
    ax.annotate("ideal", xy=(0.99 if right else 0.01, 0.99 if top else 0.01), xycoords="axes fraction",
                ha="right" if right else "left", va="top" if top else "bottom", fontsize=9, color="0.4",
                style="italic")
