"""The report's plots: the safety-capability plane with its Pareto frontier, G_s against λ per proxy set,
and the method families in the (G_f, G_s) plane (Chen et al., Fig. 1 left and Fig. 2 right)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..results import LOWER_IS_BETTER
from .aggregate import ConfigRow
from .choice import pareto_front
from .style import (
    axis_label, group_curves, err_bars, figure, group_styles, ideal_corner, long_name, merge_labels, percent_axis,
    place_labels, plot_references,
)
from .tables import is_fraction, strength_label


def plot_tradeoff(rows: Sequence[ConfigRow], path: Path, safety_metric: str = "harmful_rate",
                  capability_metric: str = "task_accuracy",
                  title: str = "Safety vs capability: each method over its strength grid") -> str | None:
    """The safety-capability plane: x = capability, y = harm; one curve per group over its strengths,
    references, and the Pareto frontier over every configuration. Returns a note when skipped."""
    usable = [r for r in rows if not math.isnan(r.mean(safety_metric)) and not math.isnan(r.mean(capability_metric))]
    if not usable:
        return f"tradeoff.png skipped: no run has both {safety_metric} and {capability_metric}"
    with figure((11, 7)) as (fig, ax):
        _draw_tradeoff(fig, ax, usable, path, safety_metric, capability_metric, title)
    return None


def _draw_tradeoff(fig, ax, usable: Sequence[ConfigRow], path: Path, safety_metric: str,
                   capability_metric: str, title: str) -> None:
    curves = group_curves(usable)
    xs_all = [r.mean(capability_metric) for r in usable]
    ys_all = [r.mean(safety_metric) for r in usable]
    xspan = max(max(xs_all) - min(xs_all), 1e-9)
    yspan = max(max(ys_all) - min(ys_all), 1e-9)
    styles = group_styles(curves)
    labels = []
    for label, members in curves.items():
        style = styles[label]
        color = style["color"]
        xs = [r.mean(capability_metric) for r in members]
        ys = [r.mean(safety_metric) for r in members]
        ax.errorbar(xs, ys, xerr=err_bars([r.metrics.get(capability_metric) for r in members]),
                    yerr=err_bars([r.metrics.get(safety_metric) for r in members]), color=color,
                    marker=style["marker"], ls=style["ls"], ms=8, lw=1.6, alpha=0.9, capsize=3, label=label,
                    zorder=3)
        for x, y, text in merge_labels(list(zip(xs, ys, members)), xspan, yspan):
            labels.append((x, y, text, color))
    obstacles, ref_labels = plot_references(ax, usable, capability_metric, safety_metric)
    front = [usable[i] for i in pareto_front(list(zip(xs_all, ys_all)),
                                              (capability_metric not in LOWER_IS_BETTER,
                                               safety_metric not in LOWER_IS_BETTER))]
    front.sort(key=lambda r: r.mean(capability_metric))
    fx = [r.mean(capability_metric) for r in front]
    fy = [r.mean(safety_metric) for r in front]
    ax.plot(fx, fy, drawstyle="steps-pre", color="0.35", ls="--", lw=1.3, zorder=2,
            label="Pareto frontier (max capability, min harm)")
    ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="gold", linewidths=2.5, zorder=4,
               label="Pareto-optimal runs")
    if is_fraction(capability_metric):
        percent_axis(ax.xaxis)
    if is_fraction(safety_metric):
        percent_axis(ax.yaxis)
    ax.margins(0.08)
    ax.set_xlabel(axis_label(capability_metric, "more capable", "x"))
    ax.set_ylabel(axis_label(safety_metric, "safer", "y"))
    n_max = max(r.n for r in usable)
    stderr = any(not math.isnan(st.stderr) for r in usable for st in r.metrics.values())
    ax.set_title(title
                 + ("\n(mean over seeds; bars = ±1 std)" if n_max > 1 else "")
                 + ("\n(one evaluation: bars = ±1 lm-eval standard error)" if stderr else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="group")
    place_labels(fig, ax, labels + ref_labels, obstacles=obstacles)
    ideal_corner(ax, right=capability_metric not in LOWER_IS_BETTER, top=safety_metric not in LOWER_IS_BETTER)
    fig.savefig(path, dpi=130, bbox_inches="tight")


def plot_gs_vs_lambda(rows: Sequence[ConfigRow], path: Path) -> str | None:
    """G_s against λ for Case I, one line per proxy safety set (Chen et al., Fig. 1 left)."""
    case1 = [r for r in rows if r.method == "case1" and r.strength is not None and "safety_gap" in r.metrics]
    if not case1:
        why = ("no Case I (method 'case1') runs with a strength" if not any(r.method == "case1" for r in rows)
               else "no G_s for Case I runs (an aligned-model run with alignment_nll is needed)")
        return f"gs_vs_lambda.png skipped: {why}"
    with figure((9, 6)) as (fig, ax):
        _draw_gs_vs_lambda(fig, ax, rows, case1, path)
    return None


def _draw_gs_vs_lambda(fig, ax, rows: Sequence[ConfigRow], case1: Sequence[ConfigRow], path: Path) -> None:
    curves = group_curves(case1)
    styles = group_styles(group_curves(rows))  # the same colours as in the other plots
    for label, members in curves.items():
        stats = [r.metrics["safety_gap"] for r in members]
        proxy = members[0].proxy
        style = styles[label]
        ax.errorbar([r.strength for r in members], [s.mean for s in stats], yerr=err_bars(stats),
                    marker=style["marker"], ls=style["ls"], color=style["color"], ms=8, capsize=3, lw=1.8,
                    label=f"{label}" + (f" (proxy: {proxy})" if proxy and proxy not in label else ""))
    ax.axhline(0, color="black", lw=1, label="aligned model θ₀ (G_s = 0)")
    sft = [r for r in rows if r.reference == "sft" and "safety_gap" in r.metrics]
    if sft:
        ax.axhline(sft[0].metrics["safety_gap"].mean, color="#d62728", ls="--", lw=1.2,
                   label=f"plain SFT (G_s = {sft[0].metrics['safety_gap'].mean:+.2f})")
    strengths = [r.strength for r in case1]
    if min(strengths) > 0:
        ax.set_xscale("log")
        xlabel = "log scale"
    else:
        positive = [s for s in strengths if s > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        xlabel = "symmetric log scale"
    key = case1[0].strength_key
    symbol = strength_label(key, 1.0).split("=")[0]
    ax.set_xlabel(f"{symbol} (weight of the proxy alignment loss, {xlabel}; → stronger constraint)")
    ax.set_ylabel("G_s = alignment NLL − aligned model's (↓ safer)")
    ax.set_title("Safety gap G_s vs λ per proxy safety set (Case I)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.savefig(path, dpi=130, bbox_inches="tight")


def plot_methods(rows: Sequence[ConfigRow], path: Path, capability_metric: str = "task_accuracy") -> str | None:
    """Case I vs Case II vs EMA: y = G_s, x = G_f (loss-based when task NLL is measured, as in the papers;
    else the capability-metric gap; else the capability itself). One colour per method family."""
    with_gs = [r for r in rows if "safety_gap" in r.metrics]
    if not any(not r.reference for r in with_gs):
        return ("methods.png skipped: no method runs with G_s (needs an aligned-model run and alignment_nll)"
                if rows else "methods.png skipped: no runs")
    candidates = [("capability_gap_nll", "G_f = task NLL − plain SFT's (← more capable)", False),
                  ("capability_gap", f"G_f = plain SFT's {long_name(capability_metric)} − run's"
                   + (" (pp, ← more capable)" if is_fraction(capability_metric) else " (← more capable)"),
                   is_fraction(capability_metric)),
                  (capability_metric, axis_label(capability_metric, "more capable", "x"),
                   is_fraction(capability_metric))]
    methods = [r for r in with_gs if not r.reference]
    xkey, xlabel, pct = next(c for c in candidates if all(c[0] in r.metrics for r in methods)
                             or c[0] == capability_metric)
    usable = [r for r in with_gs if xkey in r.metrics]
    if not any(not r.reference for r in usable):
        return f"methods.png skipped: no method run has {xkey}"
    with figure((11, 7)) as (fig, ax):
        _draw_methods(fig, ax, rows, usable, path, xkey, xlabel, pct, capability_metric)
    return None


def _draw_methods(fig, ax, rows: Sequence[ConfigRow], usable: Sequence[ConfigRow], path: Path, xkey: str,
                  xlabel: str, pct: bool, capability_metric: str) -> None:
    curves = group_curves(usable)
    styles = group_styles(group_curves(rows))
    labels = []
    # the view is fitted to the methods and plain SFT: the aligned model often sits far out on the
    # capability axis (it never learned the task) and would squash every curve against one edge
    fitted = [r for r in usable if r.reference != "aligned"]
    xs_all = [r.mean(xkey) for r in fitted]
    ys_all = [r.mean("safety_gap") for r in fitted] + [0.0]
    xspan, yspan = max(max(xs_all) - min(xs_all), 1e-9), max(max(ys_all) - min(ys_all), 1e-9)
    for label, members in curves.items():
        style = styles[label]
        family, color = style["family"], style["color"]
        xs = [r.mean(xkey) for r in members]
        ys = [r.mean("safety_gap") for r in members]
        ax.errorbar(xs, ys, xerr=err_bars([r.metrics.get(xkey) for r in members]),
                    yerr=err_bars([r.metrics.get("safety_gap") for r in members]), color=color, ls=style["ls"],
                    marker=style["marker"], ms=8, lw=1.8, capsize=3, alpha=0.9,
                    label=f"{family}: {label}" if not label.startswith(family) else label)
        labels += [(x, y, t, color) for x, y, t in merge_labels(list(zip(xs, ys, members)), xspan, yspan)]
    xlim = (min(xs_all) - 0.08 * xspan, max(xs_all) + 0.08 * xspan)
    obstacles, ref_labels = plot_references(ax, usable, xkey, "safety_gap", xlim=xlim)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    if pct:
        percent_axis(ax.xaxis)
    ax.set_xlim(*xlim)
    ax.set_ylim(min(ys_all) - 0.08 * yspan, max(ys_all) + 0.08 * yspan)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("G_s = alignment NLL − aligned model's (↓ safer)")
    ax.set_title("Trade-off curves by method family: safety gap vs capability gap")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method family: group")
    place_labels(fig, ax, ref_labels + labels, obstacles=obstacles)
    if xkey != capability_metric:
        ideal_corner(ax, right=False, top=False)
    fig.savefig(path, dpi=130, bbox_inches="tight")


# -------------------------------------------------------------------------------------------- summary
