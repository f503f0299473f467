"""summary.md: one plain-language line per method group at its chosen strength, the recommendation on the
Pareto frontier, the failed runs and the notes."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..results import LOWER_IS_BETTER, RunRecord
from .aggregate import ConfigRow, reference_row
from .choice import capability_threshold, choose, pareto_front
from .style import group_curves, long_name
from .tables import DASH, METRIC_LABELS, Layout, format_value, is_fraction, strength_label


def _value(row: ConfigRow, metric: str) -> str:
    stat = row.metrics.get(metric)
    if stat is None:
        return DASH
    return format_value(stat.mean, "pct" if is_fraction(metric) else "num")


def summary_markdown(rows: Sequence[ConfigRow], failed: Sequence[RunRecord], n_records: int,
                     safety_metric: str = "harmful_rate", layout: Layout = Layout(),
                     tolerance: float = 0.05, notes: Sequence[str] = ()) -> tuple[str, list[ConfigRow]]:
    """One plain-language line per group at its chosen strength, the overall recommendation, the runs,
    the failures and the notes. Returns (text, Pareto frontier rows)."""
    capability_metric = layout.capability_metric
    safe = METRIC_LABELS.get(safety_metric, safety_metric)
    cap = METRIC_LABELS.get(capability_metric, capability_metric)
    tol_text = f"{100 * tolerance:g} pp" if is_fraction(capability_metric) else f"{tolerance:g}"
    threshold, base = capability_threshold(rows, capability_metric, tolerance)
    sft, aligned = reference_row(rows, "sft"), reference_row(rows, "aligned")
    ref = (f" (plain SFT {_value(sft, safety_metric)})" if sft else "", f" (plain SFT {_value(sft, capability_metric)})"
           if sft else "")

    def line(r: ConfigRow, with_ref: bool = True) -> str:
        head = r.label + (f", {strength_label(r.strength_key, r.strength)}" if r.strength is not None else "")
        gs = r.metrics.get("safety_gap")
        return (f"{head}: {safe} {_value(r, safety_metric)}{ref[0] if with_ref else ''}, "
                f"{cap} {_value(r, capability_metric)}{ref[1] if with_ref else ''}"
                + (f", G_s {gs.mean:+.2f}" if gs else "") + f" [{r.n} seed{'s' if r.n != 1 else ''}]")

    out = ["# Summary", ""]
    n_ok = sum(r.n for r in rows)
    out.append(f"Runs: {n_records} records: {n_ok} ok, {len(failed)} failed; {len(rows)} configurations "
               f"({len(group_curves(rows))} method groups).")
    out += ["", "## References", ""]
    for r in (aligned, sft):
        if r is not None:
            out.append(f"- {line(r, with_ref=False)}")
    if layout.reference is not None:
        out.append(f"- G_s and G_f are measured against {layout.reference}; the capability bar below uses the "
                   "best run")
    elif aligned is None and all(r.strength is None for r in rows) and rows:
        out.append("- no reference model (`--reference NAME`): G_s and G_f are undefined; the capability bar "
                   "below uses the best run")
    else:
        if aligned is None:
            out.append("- no aligned-model run (method 'aligned'): G_s is undefined")
        if sft is None:
            out.append("- no plain-SFT run (method 'sft'): G_f is undefined; the capability bar below uses the "
                       "best run")
    out += ["", "## Per method group", "",
            f"Rule: per group, the strength with the lowest mean {long_name(safety_metric)} among those whose "
            f"mean {long_name(capability_metric)} is within {tol_text} of {base}'s (ties: higher "
            f"{long_name(capability_metric)}, then the weaker strength). Marked ⚠ when no strength keeps it that "
            "high; the most capable strength is shown instead. Differences smaller than the std over seeds "
            "(leaderboard) are noise.", ""]
    curves = group_curves(rows)
    if not curves:
        out.append("No method runs besides the references.")
    for members in curves.values():
        best, within = choose(members, safety_metric, capability_metric, threshold)
        if best is None:
            out.append(f"- {members[0].label}: no {safe} measured")
        else:
            out.append(f"- {'' if within else '⚠ '}{line(best)}")
    usable = [r for r in rows if not math.isnan(r.mean(safety_metric)) and not math.isnan(r.mean(capability_metric))]
    front_idx = pareto_front([(r.mean(capability_metric), r.mean(safety_metric)) for r in usable],
                             (capability_metric not in LOWER_IS_BETTER, safety_metric not in LOWER_IS_BETTER))
    frontier = sorted((usable[i] for i in front_idx), key=lambda r: r.mean(capability_metric))
    out += ["", "## Recommendation", ""]
    best, within = choose(usable, safety_metric, capability_metric, threshold)
    if best is None:
        out.append(f"No run has both {safe} and {cap}: nothing to recommend.")
    else:
        out.append(f"**{line(best)}**" + ("" if within else
                                          f" (⚠ no run keeps {cap} within {tol_text} of {base}; most capable shown)"))
        out.append("")
        out.append(f"The same rule over all configurations; it is on the Pareto frontier (max {cap}, min {safe}), "
                   "which holds: " + "; ".join(f"{r.name} ({safe} {_value(r, safety_metric)}, "
                                               f"{cap} {_value(r, capability_metric)})" for r in frontier) + ".")
    out += ["", f"## Failed runs ({len(failed)})", ""]
    out += [f"- {r.name} (seed {r.seed}, run {r.run_id[:12]}): {_first_error_line(r.error)}" for r in failed] or ["None."]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n", frontier


def _first_error_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return (lines[-1] if lines else "(no error recorded)")[:300]
