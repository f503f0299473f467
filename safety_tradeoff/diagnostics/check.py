r"""The report's "predicted vs measured" section: the diagnostics' predictions against a sweep's gaps.

Measured G_s of a run = its ``alignment_nll`` − the aligned model's, same seed. Three checks:

* Case II bound: for every Case II run, G_s ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r² at its measured
  r = ‖θ − θ₀‖ (``dist_to_theta0``), with that seed's gradient norm and β_s. The same bound is also
  checked on every other fine-tuned run (any θ lies in the ball of its own radius).
* Proxy ordering: runs that differ only in the proxy set (same seed, method, strength, task data)
  are ordered by measured G_s and compared with the predicted order.
* Overlap ordering: runs that differ only in the task data (plain SFT on the high- and low-overlap
  mixes, ...) are ordered by measured G_s and compared with the predicted order (more overlap, more G_s).

No torch (reports run anywhere).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..results import RunRecord, finite
from ..sweep_config import task_label
from .bound import case2_bound
from .orders import order_interval

CASE2 = ("case2", "case2_ball")


@dataclass
class BoundRow:
    name: str
    method: str
    seed: int
    radius: float
    bound: float
    gap: float

    @property
    def holds(self) -> bool:
        return self.gap <= self.bound


@dataclass
class PilotRow:
    """A run's G_s read after part of its schedule (the pilot read-out) and its final, measured G_s."""
    name: str
    method: str
    seed: int
    step: int
    pilot: float
    gap: float

    @property
    def ratio(self) -> float:
        return self.pilot / self.gap if self.gap > 0 else math.nan

    @property
    def within_2x(self) -> bool | None:
        """Within a factor of 2 of the final G_s; None when the final G_s is not positive (no factor to speak of)."""
        if self.gap <= 0:
            return None
        return 0.5 <= self.ratio <= 2.0


@dataclass
class OrderCheck:
    """One comparison: runs differing in one factor, predicted vs measured order (lowest G_s first).

    ``tied`` holds the pairs the diagnostics cannot order (their confidence intervals overlap): either
    measured order agrees with the prediction for them, so an unresolved prediction never counts as wrong."""

    seed: int
    context: str
    predicted: list[str]
    measured: list[str]
    gaps: dict[str, float]
    tied: frozenset[frozenset[str]] = frozenset()

    @property
    def matches(self) -> bool:
        position = {name: i for i, name in enumerate(self.measured)}
        return all(position[a] < position[b] for i, a in enumerate(self.predicted) for b in self.predicted[i + 1:]
                   if frozenset((a, b)) not in self.tied)

    def predicted_text(self) -> str:
        """"near ≈ mid < far": ≈ between neighbours the diagnostics cannot order."""
        out = self.predicted[:1]
        for a, b in zip(self.predicted, self.predicted[1:]):
            out += [" ≈ " if frozenset((a, b)) in self.tied else " < ", b]
        return "".join(out)


@dataclass
class TheoryCheck:
    diagnostics: dict[int, dict]  # seed -> diagnostics (of that seed's base model)
    bounds: list[BoundRow] = field(default_factory=list)
    proxies: list[OrderCheck] = field(default_factory=list)
    tasks: list[OrderCheck] = field(default_factory=list)
    pilots: list[PilotRow] = field(default_factory=list)
    loss_mismatch: dict[int, tuple[float, float]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # failed diagnostics runs: "seed s: error"
    unchecked: list[str] = field(default_factory=list)  # why runs were left out of the checks

    def case2(self) -> list[BoundRow]:
        return [b for b in self.bounds if b.method in CASE2]

    def summary(self) -> dict[str, float | int | None]:
        c2 = self.case2()
        return {"case2_bound_holds": sum(b.holds for b in c2), "case2_runs": len(c2),
                "all_bound_holds": sum(b.holds for b in self.bounds), "all_runs": len(self.bounds),
                "proxy_order_matches": sum(c.matches for c in self.proxies), "proxy_comparisons": len(self.proxies),
                "task_order_matches": sum(c.matches for c in self.tasks), "task_comparisons": len(self.tasks),
                "case2_pilot_within_2x": sum(bool(p.within_2x) for p in self.pilots if p.method in CASE2),
                "case2_pilots": sum(p.within_2x is not None for p in self.pilots if p.method in CASE2)}


def _bound(diag: dict, r: float) -> float:
    return case2_bound(diag["landscape"]["grad_norm"], diag["landscape"]["beta"], r)


def _base(record: RunRecord) -> tuple[int, str]:
    """Whose θ₀ a record belongs to: its seed and base model (stores may mix sweeps)."""
    return record.seed, str(record.config.get("base_model") or "")


def check(records: Iterable[RunRecord]) -> TheoryCheck | None:
    """None when the records hold no diagnostics (a sweep without a `diagnostics:` block)."""
    records = list(records)
    failed = [f"seed {r.seed}: {r.error}" for r in records if r.method == "diagnostics" and not r.ok]
    records = [r for r in records if r.ok]
    diags = {_base(r): r.config["diagnostics"] for r in records if r.method == "diagnostics"
             and isinstance(r.config.get("diagnostics"), dict)}
    if not diags and not failed:
        return None
    aligned = {_base(r): finite(r.metrics.get("alignment_nll")) for r in records if r.method == "aligned"}
    result = TheoryCheck(diagnostics={seed: d for (seed, _), d in sorted(diags.items())}, failed=failed)
    if len({seed for seed, _ in diags}) < len(diags):
        result.unchecked.append("several base models share a seed; the per-seed table shows one of them")
    runs, missing = [], defaultdict(int)
    for r in records:
        if r.method in ("aligned", "diagnostics"):
            continue
        if _base(r) not in diags or aligned.get(_base(r)) is None:
            missing["no diagnostics" if _base(r) not in diags else "no aligned-model alignment NLL"] += 1
            continue
        value = finite(r.metrics.get("alignment_nll"))
        if value is not None:
            runs.append((r, value - aligned[_base(r)]))
    result.unchecked += [f"{n} run(s) not checked: {why} for their seed and base model" for why, n in missing.items()]
    for base, diag in diags.items():
        if aligned.get(base) is not None:
            result.loss_mismatch[base[0]] = (diag["safety"]["loss"]["value"], aligned[base])
    for r, gap in runs:
        pilot, step = finite(r.metrics.get("pilot_gap")), finite(r.metrics.get("pilot_step"))
        if pilot is not None and step is not None:
            result.pilots.append(PilotRow(r.name, r.method, r.seed, int(step), pilot, gap))
    lora = 0
    for r, gap in runs:
        radius = finite(r.metrics.get("dist_to_theta0"))
        if radius is None:
            continue
        if diags[_base(r)]["landscape"].get("params") == "lora":
            lora += 1
            continue
        result.bounds.append(BoundRow(r.name, r.method, r.seed, radius, _bound(diags[_base(r)], radius), gap))
    if lora:
        result.unchecked.append(f"{lora} run(s) not checked against the bound: their diagnostics took the gradient "
                                "and β_s along LoRA parameters (hessian_params: lora), which bound LoRA-norm moves, "
                                "not full-weight ‖θ − θ₀‖")
    result.proxies = _orders(runs, diags, factor="proxy", notes=result.unchecked)
    result.tasks = _orders(runs, diags, factor="task", notes=result.unchecked)
    return result


def _orders(runs: Sequence[tuple[RunRecord, float]], diags: dict[tuple[int, str], dict], factor: str,
            notes: list[str]) -> list[OrderCheck]:
    """Group runs equal in everything but `factor`; every group with ≥ 2 levels is one comparison."""
    groups: dict[tuple, dict[str, tuple[RunRecord, float]]] = defaultdict(dict)
    ambiguous: set[tuple] = set()
    for r, gap in runs:
        task = r.config.get("task_dataset") or ""
        same = json.dumps([r.config.get("settings") or {}, r.config.get("training") or {}, r.config.get("eval") or {}],
                          sort_keys=True, default=str)
        if factor == "proxy":
            if not r.proxy:
                continue
            key, level = (*_base(r), r.method, same, task), r.proxy
        else:
            key, level = (*_base(r), r.method, same, r.proxy), task
        if level in groups[key]:
            ambiguous.add(key)
        groups[key][level] = (r, gap)
    if ambiguous:
        notes.append(f"{len(ambiguous)} {factor} comparison(s) skipped: several runs with identical settings "
                     "(merged result files?)")
    out = []
    for key, members in groups.items():
        if len(members) < 2 or key in ambiguous:
            continue
        diag = diags[(key[0], key[1])]
        if factor == "proxy":
            predicted = [p for p in diag["predicted"]["proxy_order"] if p in members]
            names = {p: p for p in members}
        else:
            spec_to_name = {entry["spec"]: name for name, entry in diag["tasks"].items()}
            names = {spec: spec_to_name.get(spec, task_label(spec)) for spec in members}
            predicted = [names_inv for names_inv in diag["predicted"]["task_order"] if names_inv in names.values()]
        if len(predicted) < len(members):  # a level the diagnostics did not measure: no prediction
            continue
        measured = [names[level] for level, _ in sorted(members.items(), key=lambda kv: kv[1][1])]
        some = next(iter(members.values()))[0]
        context = _context(some, factor)
        tied = frozenset(frozenset((a, b)) for i, a in enumerate(predicted) for b in predicted[i + 1:]
                         if _overlap(order_interval(diag, factor, a), order_interval(diag, factor, b)))
        out.append(OrderCheck(key[0], context, predicted, measured, {names[lv]: g for lv, (_, g) in members.items()},
                              tied))
    out.sort(key=lambda c: (c.seed, c.context))
    return out


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _context(record: RunRecord, factor: str) -> str:
    settings = record.config.get("settings") or {}
    strength = f" {record.strength_key}={record.strength:g}" if record.strength is not None else ""
    extra = {k: v for k, v in settings.items() if k not in (record.strength_key, "align_mode", "anchor_mode")}
    text = record.method + strength + (f" {extra}" if extra else "")
    if factor == "proxy" and record.config.get("task_dataset"):
        text += f" on {task_label(record.config['task_dataset'])}"
    if factor == "task" and record.proxy:
        text += f" proxy {record.proxy}"
    return text


# ------------------------------------------------------------------------------------------ markdown

def fmt_interval(entry: dict, spec: str = ".3f") -> str:
    """An interval stored as {"value", "low", "high"}: `value [low, high]`."""
    return f"{entry['value']:{spec}} [{entry['low']:{spec}}, {entry['high']:{spec}}]"


def _sample(land: dict) -> str:
    if "n_examples" not in land:
        return "–"
    return f"{land['n_examples']} examples, {land['n_tokens']} tokens, {land['n_params']:,} {land['params']} params"


def markdown(result: TheoryCheck) -> str:
    s = result.summary()
    out = ["## Predicted vs measured (theory diagnostics)", "",
           "Diagnostics at θ₀ (`safety-tradeoff diagnose`, README \"Theory diagnostics\"): G_s = alignment NLL − "
           "the aligned model's, per seed; r = ‖θ − θ₀‖ of the evaluated weights; Case II bound "
           "G_s ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r².", ""]
    out += ["| seed | L_s(θ₀) diagnose | L_s(θ₀) lm-eval | ‖∇L_s(θ₀)‖ | β_s (method, iterations) | Hessian sample | "
            "proxies: cross-loss gap [CI] | tasks: prompt similarity to D_s [CI] |", "|---|---|---|---|---|---|---|---|"]
    for seed, diag in sorted(result.diagnostics.items()):
        land = diag["landscape"]
        lm = result.loss_mismatch.get(seed, (None, None))[1]
        prox = "; ".join(f"{n}: {fmt_interval(e['cross_loss_gap'])}" if "cross_loss_gap" in e
                         else f"{n}: sim {fmt_interval(e['similarity'])}" for n, e in diag["proxies"].items())
        tasks = "; ".join(f"{n}: {fmt_interval(e['similarity'])}" for n, e in diag["tasks"].items())
        out.append(f"| {seed} | {diag['safety']['loss']['value']:.3f} | {'–' if lm is None else f'{lm:.3f}'} | "
                   f"{land['grad_norm']:.3g} | {land['beta']:.3g} ({land.get('method', 'power')}, {land['iterations']}"
                   f"{'' if land['converged'] else ', NOT converged'}) | {_sample(land)} | {prox or '–'} | "
                   f"{tasks or '–'} |")
    for line in result.failed:
        out.append(f"\n⚠ diagnostics failed, {line} (its runs are not checked; the traceback is in the sweep's "
                   "checkpoints folder)")
    for seed, (diag_loss, lm) in sorted(result.loss_mismatch.items()):
        if abs(diag_loss - lm) > 0.05 * max(abs(lm), 1e-6):
            out.append(f"\n⚠ seed {seed}: the diagnostics' L_s(θ₀) ({diag_loss:.3f}) differs from lm-eval's aligned "
                       f"alignment NLL ({lm:.3f}) by more than 5%: the bound is on another loss (other data, sample, "
                       "or chat template) than the measured G_s.")
    for note in result.unchecked:
        out.append(f"\nNote: {note}.")
    c2 = result.case2()
    out += ["", f"### Case II bound: holds on {s['case2_bound_holds']}/{s['case2_runs']} Case II runs "
            f"({s['all_bound_holds']}/{s['all_runs']} over all fine-tuned runs)", ""]
    if not result.bounds:
        out.append("No run with a measured ‖θ − θ₀‖ to check (LoRA checkpoints are not measured; see notes above).")
    else:
        out += ["| run | seed | r = ‖θ−θ₀‖ | bound | measured G_s | G_s / bound | holds |", "|---|---|---|---|---|---|---|"]
        for b in sorted(result.bounds, key=lambda b: (b.method not in CASE2, b.name, b.seed)):
            ratio = b.gap / b.bound if b.bound > 0 else math.nan
            out.append(f"| {b.name} | {b.seed} | {b.radius:.3g} | {b.bound:.3g} | {b.gap:+.3f} | {ratio:.3g} | "
                       f"{'yes' if b.holds else '**no**'} |")
        broken = [b for b in result.bounds if not b.holds]
        if broken:
            out += ["", "Where it fails: β_s is the curvature *at* θ₀, but the bound needs L_s to be β_s-smooth on the "
                    "whole ball of radius r; along these runs' paths the curvature was larger (or the gradient "
                    "estimate too small for the sample). Failing runs: "
                    + "; ".join(f"{b.name} seed {b.seed} (G_s {b.gap:.3f} > {b.bound:.3f})" for b in broken) + "."]
        elif c2:
            tight = max(b.gap / b.bound for b in c2 if b.bound > 0) if any(b.bound > 0 for b in c2) else math.nan
            out += ["", f"It holds everywhere, but loosely: the largest G_s / bound over Case II runs is {tight:.3g} "
                    "(the curvature term assumes the worst direction, β_s, for the whole move)."]
    out += _pilot_markdown(result)
    for title, checks, what in (("Proxy ordering (Case I)", result.proxies, "proxy sets"),
                                ("Context-overlap ordering", result.tasks, "task datasets")):
        matches = sum(c.matches for c in checks)
        out += ["", f"### {title}: predicted order matches the measured one in {matches}/{len(checks)} comparisons", ""]
        if not checks:
            out.append(f"No runs differing only in their {what}: nothing to compare (the sweep needs ≥ 2 {what} "
                       "under the same method and strength).")
            continue
        out += ["| seed | runs | predicted (lowest G_s first) | measured | measured G_s | match |",
                "|---|---|---|---|---|---|"]
        for c in checks:
            gaps = ", ".join(f"{k} {v:+.3f}" for k, v in c.gaps.items())
            out.append(f"| {c.seed} | {c.context} | {c.predicted_text()} | {' < '.join(c.measured)} | {gaps} | "
                       f"{'yes' if c.matches else '**no**'} |")
        if any(c.tied for c in checks):
            out += ["", "≈: the diagnostics' confidence intervals overlap, so they do not predict an order for that pair; "
                    "either measured order agrees with the prediction."]
    return "\n".join(out) + "\n"


def _pilot_markdown(result: TheoryCheck) -> list[str]:
    """The pilot read-out against each run's final G_s (Case II runs first)."""
    if not result.pilots:
        return []
    s = result.summary()
    rows = sorted(result.pilots, key=lambda p: (p.method not in CASE2, p.name, p.seed))
    positive = [p for p in rows if p.within_2x is not None]
    out = ["", f"### Pilot read-out: G_s after part of the schedule is within 2x of the final G_s on "
           f"{s['case2_pilot_within_2x']}/{s['case2_pilots']} Case II runs "
           f"({sum(bool(p.within_2x) for p in positive)}/{len(positive)} over all runs with a positive G_s)", "",
           "G_s on D_s measured during each run after `pilot_fraction` of its steps (diagnostics settings; "
           "`diagnostics/pilot.py`), against the final G_s from the evaluation. Where they are within 2x, the "
           "pilot would have told the sweep's outcome at that fraction of its cost.", "",
           "| run | seed | pilot step | pilot G_s | final G_s | pilot / final | within 2x |", "|---|---|---|---|---|---|---|"]
    for p in rows:
        verdict = "–" if p.within_2x is None else "yes" if p.within_2x else "**no**"
        out.append(f"| {p.name} | {p.seed} | {p.step} | {p.pilot:+.4f} | {p.gap:+.4f} | {p.ratio:.3g} | {verdict} |")
    return out


def plot_bound(result: TheoryCheck, path: Path) -> str | None:
    """Measured G_s against r with each seed's bound curve; None when written, else why not."""
    if not result.bounds:
        return "case2_bound.png skipped: no run with a measured ‖θ − θ₀‖"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        rmax = max(b.radius for b in result.bounds) * 1.05
        for seed, diag in sorted(result.diagnostics.items()):
            xs = [rmax * i / 100 for i in range(101)]
            ax.plot(xs, [_bound(diag, x) for x in xs], lw=1, ls="--", color="0.4",
                    label="bound ‖∇L_s‖r + β_s r²/2" if seed == min(result.diagnostics) else None)
        for family, methods, color in (("Case II", CASE2, "#ff7f0e"), ("other runs", None, "#1f77b4")):
            pts = [b for b in result.bounds if (b.method in CASE2) == (methods is not None)]
            if pts:
                ax.scatter([b.radius for b in pts], [b.gap for b in pts], s=22, color=color, label=family, zorder=3)
        top = max(max(b.gap for b in result.bounds), 0.0)
        ax.set_ylim(min(min(b.gap for b in result.bounds), 0.0) - 0.1, max(top * 1.5, 0.5))
        ax.set_xlabel("r = ‖θ − θ₀‖ of the evaluated weights")
        ax.set_ylabel("G_s = alignment NLL − aligned's")
        ax.set_title("Case II bound vs measured safety gap")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return None
