r"""The report's "predicted vs measured" section: the diagnostics' predictions against a sweep's gaps.

Measured G_s of a run = its ``alignment_nll`` − the aligned model's, same seed. The checks:

* Case II bound: for every Case II run, G_s ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r² at its measured
  r = ‖θ − θ₀‖ (``dist_to_theta0``), with that seed's gradient norm and β_s. The same bound is also
  checked on every other fine-tuned run (any θ lies in the ball of its own radius).
* Pilot read-out: each run's G_s after ``pilot_fraction`` of its steps (``pilot_gap``) against its final
  G_s; within a factor of 2 or not. Case II penalty runs also carry the predicted equilibrium
  (``pilot_eq_gap``, `equilibrium.py`: per-row shares, the ray, or their geometric mean, by κ), checked the same
  way.
* Proxy ordering: runs that differ only in the proxy set (same seed, method, strength, task data)
  are ordered by measured G_s and compared with the predicted order: the diagnostics' (cross-loss gap
  at θ₀), and the pilot read-outs'.
* Overlap ordering: runs that differ only in the task data (plain SFT on the high- and low-overlap
  mixes, ...) likewise: the diagnostics predict more prompt overlap with D_s, more G_s; the pilots
  predict their own order.

A predictor may leave a pair unordered (tied) where its confidence intervals overlap; either measured
order then agrees with it. No torch (reports run anywhere).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..results import RunRecord, finite, gap_interval, intervals_overlap
from ..sweep_config import task_label
from .bound import case2_bound
from .equilibrium import part_relaxed
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
    equilibrium: float | None = None  # Case II penalty runs: G_s at the predicted equilibrium
    eq_from: str | None = None  # which forecast: "rows" (κ ≥ 4), "ray" (κ < 1) or "rows·ray" (their geometric mean)
    efolds: float | None = None  # κ: e-folds of relaxation left at the pilot step (None: not read)

    @property
    def ratio(self) -> float:
        return self.pilot / self.gap if self.gap > 0 else math.nan

    @property
    def eq_ratio(self) -> float:
        return self.equilibrium / self.gap if self.equilibrium is not None and self.gap > 0 else math.nan

    @property
    def within_2x(self) -> bool | None:
        """Within a factor of 2 of the final G_s; None when the final G_s is not positive (no factor to speak of)."""
        return _within_2x(self.ratio, self.gap)

    @property
    def part_relaxed(self) -> bool:
        """κ in [1, 4): the run is part-way relaxed when its schedule ends, where forecasts are least reliable."""
        return part_relaxed(self.efolds)

    @property
    def eq_within_2x(self) -> bool | None:
        """The equilibrium prediction within a factor of 2 of the final G_s; None without one or a positive G_s."""
        return None if self.equilibrium is None else _within_2x(self.eq_ratio, self.gap)


def _within_2x(ratio: float, gap: float) -> bool | None:
    return None if gap <= 0 else 0.5 <= ratio <= 2.0


@dataclass
class OrderCheck:
    """One comparison: runs differing in one factor, predicted vs measured order (lowest G_s first).

    ``tied`` holds the pairs the diagnostics cannot order (their confidence intervals overlap): either
    measured order agrees with the prediction for them, so an unresolved prediction never counts as wrong.
    ``measured_tied`` holds the pairs whose measured G_s cannot be told apart (the intervals of the final G_s,
    recorded by the sweep's pilot at the end of each run, overlap): any predicted order agrees with those."""

    seed: int
    context: str
    predicted: list[str]
    measured: list[str]
    gaps: dict[str, float]
    tied: frozenset[frozenset[str]] = frozenset()
    measured_tied: frozenset[frozenset[str]] = frozenset()

    @property
    def matches(self) -> bool:
        """The predicted order holds for every pair that both sides resolve."""
        return self._agrees(self.tied | self.measured_tied)

    @property
    def matches_strict(self) -> bool:
        """The same, taking every measured difference at face value, however small."""
        return self._agrees(self.tied)

    def _agrees(self, unresolved: frozenset[frozenset[str]]) -> bool:
        position = {name: i for i, name in enumerate(self.measured)}
        return all(position[a] < position[b] for i, a in enumerate(self.predicted) for b in self.predicted[i + 1:]
                   if frozenset((a, b)) not in unresolved)

    def measured_text(self) -> str:
        """"near < mid ≈ far": ≈ between neighbours whose measured G_s cannot be told apart."""
        out = self.measured[:1]
        for a, b in zip(self.measured, self.measured[1:]):
            out += [" ≈ " if frozenset((a, b)) in self.measured_tied else " < ", b]
        return "".join(out)

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
    pilot_proxies: list[OrderCheck] = field(default_factory=list)  # the same comparisons, ordered by pilot G_s
    pilot_tasks: list[OrderCheck] = field(default_factory=list)
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
                "case2_pilots": sum(p.within_2x is not None for p in self.pilots if p.method in CASE2),
                "case2_equilibrium_within_2x": sum(bool(p.eq_within_2x) for p in self.pilots if p.method in CASE2),
                "case2_equilibria": sum(p.eq_within_2x is not None for p in self.pilots if p.method in CASE2),
                "pilot_proxy_order_matches_strict": sum(c.matches_strict for c in self.pilot_proxies),
                "pilot_task_order_matches_strict": sum(c.matches_strict for c in self.pilot_tasks),
                "pilot_proxy_order_matches": sum(c.matches for c in self.pilot_proxies),
                "pilot_proxy_comparisons": len(self.pilot_proxies),
                "pilot_task_order_matches": sum(c.matches for c in self.pilot_tasks),
                "pilot_task_comparisons": len(self.pilot_tasks)}


def case2_bound_of(diag: dict, r: float) -> float:
    """The Case II bound at radius r with a seed's diagnostics."""
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
            eq = finite(r.metrics.get("pilot_eq_gap"))
            rows_gap = finite(r.metrics.get("pilot_rows_gap"))
            eq_from = None if eq is None else "ray" if rows_gap is None else "rows" if eq == rows_gap else "rows·ray"
            result.pilots.append(PilotRow(r.name, r.method, r.seed, int(step), pilot, gap, eq, eq_from,
                                          finite(r.metrics.get("pilot_relax_efolds"))))
    lora = 0
    for r, gap in runs:
        radius = finite(r.metrics.get("dist_to_theta0"))
        if radius is None:
            continue
        if diags[_base(r)]["landscape"].get("params") == "lora":
            lora += 1
            continue
        result.bounds.append(BoundRow(r.name, r.method, r.seed, radius, case2_bound_of(diags[_base(r)], radius), gap))
    if lora:
        result.unchecked.append(f"{lora} run(s) not checked against the bound: their diagnostics took the gradient "
                                "and β_s along LoRA parameters (hessian_params: lora), which bound LoRA-norm moves, "
                                "not full-weight ‖θ − θ₀‖")
    proxy_groups = _groups(runs, diags, "proxy", result.unchecked)
    task_groups = _groups(runs, diags, "task", result.unchecked)
    result.proxies = _orders(proxy_groups, "proxy", _diagnostics_predictor("proxy"))
    result.tasks = _orders(task_groups, "task", _diagnostics_predictor("task"))
    result.pilot_proxies = _orders(proxy_groups, "proxy", _pilot_predictor)
    result.pilot_tasks = _orders(task_groups, "task", _pilot_predictor)
    return result


Predictor = Callable[[dict, dict[str, tuple[RunRecord, float]], dict[str, str]],
                     tuple[list[str], frozenset[frozenset[str]]] | None]


Group = tuple[int, dict, dict[str, tuple[RunRecord, float]], dict[str, str]]  # seed, diagnostics, members, names


def _groups(runs: Sequence[tuple[RunRecord, float]], diags: dict[tuple[int, str], dict], factor: str,
            notes: list[str]) -> list[Group]:
    """Runs equal in everything but `factor`, one group per setting with ≥ 2 levels of it: each is one
    comparison, whatever predicts its order."""
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
            names = {p: p for p in members}
        else:
            spec_to_name = {entry["spec"]: name for name, entry in diag["tasks"].items()}
            names = {spec: spec_to_name.get(spec, task_label(spec)) for spec in members}
        out.append((key[0], diag, members, names))
    return out


def _orders(groups: list[Group], factor: str, predict: Predictor) -> list[OrderCheck]:
    """Each group's predicted order (and the pairs it leaves tied) from `predict(diagnostics, members,
    level → name)` against the order of measured G_s; groups `predict` has no order for are left out."""
    out = []
    for seed, diag, members, names in groups:
        prediction = predict(diag, members, names)
        if prediction is None:
            continue
        predicted, tied = prediction
        measured = [names[level] for level, _ in sorted(members.items(), key=lambda kv: kv[1][1])]
        context = _context(next(iter(members.values()))[0], factor)
        intervals = {names[level]: gap_interval(r, gap) for level, (r, gap) in members.items()}
        out.append(OrderCheck(seed, context, predicted, measured, {names[lv]: g for lv, (_, g) in members.items()},
                              tied, _ties(measured, intervals)))
    out.sort(key=lambda c: (c.seed, c.context))
    return out


def _diagnostics_predictor(factor: str) -> Predictor:
    """The order the diagnostics at θ₀ predict (cross-loss gap of proxies, prompt similarity of task sets);
    pairs whose confidence intervals overlap are tied. None where a level was not measured."""
    def predict(diag, members, names):
        wanted = set(names.values())
        predicted = [n for n in diag["predicted"]["proxy_order" if factor == "proxy" else "task_order"] if n in wanted]
        if len(predicted) < len(members):
            return None
        return predicted, _ties(predicted, {n: order_interval(diag, factor, n) for n in predicted})
    return predict


def _pilot_predictor(diag, members, names):
    """The order of the runs' pilot read-outs (lowest pilot G_s first); pairs whose pilot intervals overlap
    are tied. None unless every run has a pilot."""
    pilots = {names[level]: (r.metrics.get("pilot_gap"), r.metrics.get("pilot_gap_low"),
                             r.metrics.get("pilot_gap_high")) for level, (r, _) in members.items()}
    if any(finite(v[0]) is None for v in pilots.values()):
        return None
    predicted = sorted(pilots, key=lambda n: pilots[n][0])
    intervals = {n: (lo, hi) if finite(lo) is not None and finite(hi) is not None else None
                 for n, (_, lo, hi) in pilots.items()}
    return predicted, _ties(predicted, intervals)


def _ties(order: list[str], intervals: dict[str, tuple[float, float] | None]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset((a, b)) for i, a in enumerate(order) for b in order[i + 1:]
                     if intervals_overlap(intervals[a], intervals[b]))


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
