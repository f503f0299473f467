"""Which run to recommend: the Pareto frontier (max capability, min harm) and the capability-bar rule."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..results import LOWER_IS_BETTER
from .aggregate import ConfigRow


def pareto_front(points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, False)) -> list[int]:
    """Indices of the non-dominated points (default: maximise x = capability, minimise y = harm).

    A point is dominated when another is at least as good on both axes and strictly better on one;
    identical points are all kept. Points with a NaN coordinate are never on the front.
    """
    signed = [((x if maximize[0] else -x), (y if maximize[1] else -y)) for x, y in points]
    front = []
    for i, (xi, yi) in enumerate(signed):
        if math.isnan(xi) or math.isnan(yi):
            continue
        dominated = any(xj >= xi and yj >= yi and (xj > xi or yj > yi)
                        for j, (xj, yj) in enumerate(signed) if j != i and not (math.isnan(xj) or math.isnan(yj)))
        if not dominated:
            front.append(i)
    return front


def _capability_ok(row: ConfigRow, metric: str, threshold: float) -> bool:
    value = row.mean(metric)
    if math.isnan(value):
        return False
    return value <= threshold if metric in LOWER_IS_BETTER else value >= threshold


def capability_threshold(rows: Sequence[ConfigRow], metric: str, tolerance: float) -> tuple[float, str]:
    """The capability a recommended run must keep: plain SFT's ± tolerance, else the best run's."""
    lower = metric in LOWER_IS_BETTER
    sft = [r for r in rows if r.reference == "sft" and not math.isnan(r.mean(metric))]
    if sft:
        base, what = sft[0].mean(metric), "plain SFT"
    else:
        values = [r.mean(metric) for r in rows if not math.isnan(r.mean(metric))]
        if not values:
            return math.nan, "nothing"
        base, what = (min(values) if lower else max(values)), "the best run"
    return (base + tolerance if lower else base - tolerance), what


def choose(rows: Sequence[ConfigRow], safety_metric: str, capability_metric: str,
           threshold: float) -> tuple[ConfigRow | None, bool]:
    """The row with the least harm among those keeping capability past `threshold` (ties: more capability,
    then the weaker strength: least intervention). None of them qualifies: the most capable row, False."""
    usable = [r for r in rows if not math.isnan(r.mean(safety_metric))]
    if not usable:
        return None, False
    cap_sign = -1.0 if capability_metric in LOWER_IS_BETTER else 1.0
    safe_sign = 1.0 if safety_metric in LOWER_IS_BETTER else -1.0

    def cap(r: ConfigRow) -> float:
        value = r.mean(capability_metric)
        return -math.inf if math.isnan(value) else cap_sign * value

    ok = [r for r in usable if _capability_ok(r, capability_metric, threshold)]
    if ok:
        best = min(ok, key=lambda r: (safe_sign * r.mean(safety_metric), -cap(r),
                                      r.strength if r.strength is not None else 0.0))
        return best, True
    return max(usable, key=lambda r: (cap(r), -safe_sign * r.mean(safety_metric))), False
