"""`safety-tradeoff report`: leaderboard, trade-off plots and a plain-language summary of a sweep.

Users come with one question: *which method and which strength keeps the most safety for the capability
I need?* This module turns the sweep's results store (`results.py`) into the answer:

- ``leaderboard.md`` / ``.csv`` / ``.html``: one row per run configuration, mean ± std over seeds;
- ``tradeoff.png``: the safety-capability plane with each group's curve and the Pareto frontier;
- ``gs_vs_lambda.png``: the safety gap G_s against λ per proxy safety set (Chen et al., Fig. 1 left);
- ``methods.png``: Case I vs Case II vs EMA in the (G_f, G_s) plane (Chen et al., Fig. 2 right);
- ``summary.md``: one line per group at its best strength, the recommendation, and failed runs.

Conventions (also written into the outputs):
- A *configuration* is a run identity minus its seed: (name, method, group, proxy, strength).
- G_s = alignment NLL − the aligned model's (method ``aligned``), per seed when the reference has that
  seed (seed = world seed in the toy world, so pairing removes world-to-world variance), else against
  the reference's mean. Positive = safety lost.
- G_f (metric) = plain SFT's capability − the run's (method ``sft``): positive = capability given up
  relative to plain fine-tuning. For the papers' loss-based gap, G_f (NLL) = task NLL − plain SFT's.
- Std is the sample standard deviation (ddof = 1); one seed shows the mean only.

Only numbers, matplotlib (Agg) and the standard library: no torch, so reports run anywhere.
"""
from __future__ import annotations

import csv
import html
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .results import LOWER_IS_BETTER, RunRecord, finite

DASH = "–"
METHOD_ORDER = ["aligned", "sft", "case1", "case1_constraint", "case2", "case2_ball", "ema", "combo"]
FAMILIES = {"case1": "Case I", "case1_constraint": "Case I", "case2": "Case II", "case2_ball": "Case II",
            "ema": "EMA", "combo": "combination"}
FAMILY_COLORS = {"Case I": "#1f77b4", "Case II": "#ff7f0e", "EMA": "#2ca02c", "combination": "#9467bd"}
STRENGTH_SYMBOLS = {"align_lambda": "λ", "lambda": "λ", "lam": "λ", "param_lambda": "λ", "ema_beta": "β",
                    "beta": "β", "radius": "r", "r": "r", "epsilon": "ε", "eps": "ε", "lr": "lr",
                    "learning_rate": "lr"}
METRIC_LABELS = {"harmful_rate": "harmful", "harmful_rate_gcg": "harmful (GCG)", "task_accuracy": "task",
                 "task_nll": "task NLL", "alignment_nll": "alignment NLL", "compliance_rate": "compliance",
                 "over_refusal_rate": "over-refusal"}


@dataclass(frozen=True)
class Column:
    """One leaderboard column: metric key, header, value kind, and whether it shows when nobody has it."""
    key: str
    header: str
    kind: str  # "pct" (fraction shown as %), "pp" (signed fraction difference), "num", "signed", "sec"
    always: bool = True


@dataclass(frozen=True)
class Stat:
    """Mean ± sample std of one metric over the seeds of one configuration."""
    mean: float
    std: float  # NaN when n < 2
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan,
                   len(values))


@dataclass
class ConfigRow:
    """One leaderboard row: all ok seeds of one configuration, aggregated."""
    name: str
    method: str
    group: str
    proxy: str | None
    strength_key: str | None
    strength: float | None
    seeds: list[int]
    run_ids: list[str]
    n_failed: int = 0
    metrics: dict[str, Stat] = field(default_factory=dict)
    reference: str | None = None  # "aligned" / "sft" for the rows the gaps are measured against

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def label(self) -> str:
        """The curve label: the group, else the name (aligned/sft rows usually have no group)."""
        return self.group or self.name

    def mean(self, key: str) -> float:
        stat = self.metrics.get(key)
        return stat.mean if stat else math.nan


@dataclass
class Report:
    """What `build_report` wrote and what the CLI prints."""
    rows: list[ConfigRow]
    failed: list[RunRecord]
    paths: dict[str, Path]
    markdown: str  # the leaderboard (with the failed-run section)
    summary: str  # summary.md text
    notes: list[str]  # skipped plots and warnings, also in the summary
    frontier: list[ConfigRow]
    capability_metric: str = "task_accuracy"


# ----------------------------------------------------------------------------------------- aggregation

def _record_values(record: RunRecord) -> dict[str, float]:
    """Numeric metrics of one record, plus train time; None/NaN/non-numbers dropped (rendered as –)."""
    out = {k: v for k, v in ((k, finite(v)) for k, v in (record.metrics or {}).items()) if v is not None}
    train_s = finite((record.timings or {}).get("train_s"))
    if train_s is not None:
        out["train_s"] = train_s
    return out


def config_key(record: RunRecord) -> tuple:
    """A run's identity minus its seed: the rows of the leaderboard."""
    return (record.name, record.method, record.group or "", record.proxy, record.strength_key, record.strength)


def _ref(rows: Sequence[ConfigRow], role: str) -> ConfigRow | None:
    """The row the gaps are measured against: role "aligned" (G_s) or "sft" (G_f)."""
    return next((r for r in rows if r.reference == role), None)


def _sort_key(row: ConfigRow) -> tuple:
    method_rank = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
    strength = row.strength if row.strength is not None else -math.inf
    return (method_rank, row.method, row.group, strength, row.name)


def _pick_reference(groups: dict[tuple, list[RunRecord]], method: str, name: str | None,
                    notes: list[str]) -> tuple | None:
    """The reference configuration (aligned model / plain SFT). Several: the named one, else the one with
    most seeds (a note says which), so gaps never silently mix references."""
    keys = [k for k in groups if k[1] == method and (name is None or k[0] == name)]
    if not keys:
        return None
    keys.sort(key=lambda k: (-len(groups[k]), k[0]))
    if len(keys) > 1:
        notes.append(f"{len(keys)} '{method}' configurations; gaps use '{keys[0][0]}' as the reference "
                     f"(others: {', '.join(k[0] for k in keys[1:])})")
    return keys[0]


def _per_seed(records: list[RunRecord], metric: str) -> dict[int, float]:
    by_seed: dict[int, list[float]] = defaultdict(list)
    for record in records:
        value = _record_values(record).get(metric)
        if value is not None:
            by_seed[record.seed].append(value)
    return {seed: statistics.fmean(values) for seed, values in by_seed.items()}


def _gap(value: float | None, seed: int, ref: dict[int, float], sign: float) -> float | None:
    """sign·(value − reference at this seed, else reference mean); None when either side is missing."""
    if value is None or not ref:
        return None
    reference = ref.get(seed, statistics.fmean(ref.values()))
    return sign * (value - reference)


def aggregate(records: Iterable[RunRecord], *, capability_metric: str = "task_accuracy",
              aligned_name: str | None = None, sft_name: str | None = None,
              notes: list[str] | None = None) -> tuple[list[ConfigRow], list[RunRecord]]:
    """Group ok records by configuration, add the gaps G_s and G_f per record, and average over seeds.

    Returns (rows sorted by method, group, strength; failed records). Failed records are never dropped:
    they come back separately, and each row counts its failed seeds.
    """
    notes = notes if notes is not None else []
    records = list(records)
    failed = [r for r in records if not r.ok]
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.ok:
            groups[config_key(record)].append(record)
    failed_per_key: dict[tuple, int] = defaultdict(int)
    for record in failed:
        failed_per_key[config_key(record)] += 1

    aligned = _pick_reference(groups, "aligned", aligned_name, notes)
    sft = _pick_reference(groups, "sft", sft_name, notes)
    ref_align = _per_seed(groups[aligned], "alignment_nll") if aligned else {}
    cap_sign = 1.0 if capability_metric in LOWER_IS_BETTER else -1.0  # gap > 0 = capability lost
    ref_cap = _per_seed(groups[sft], capability_metric) if sft else {}
    ref_task_nll = _per_seed(groups[sft], "task_nll") if sft else {}

    rows = []
    for key, members in groups.items():
        values: dict[str, list[float]] = defaultdict(list)
        for record in members:
            v = _record_values(record)
            v["safety_gap"] = _gap(v.get("alignment_nll"), record.seed, ref_align, 1.0)
            v["capability_gap"] = _gap(v.get(capability_metric), record.seed, ref_cap, cap_sign)
            v["capability_gap_nll"] = _gap(v.get("task_nll"), record.seed, ref_task_nll, 1.0)
            for metric, value in v.items():
                if value is not None:
                    values[metric].append(value)
        seeds = [r.seed for r in members]
        if len(set(seeds)) < len(seeds):
            notes.append(f"'{key[0]}' has several records for one seed ({sorted(seeds)}): its runs differ in "
                         "something the name does not say; they are averaged together")
        name, method, group, proxy, strength_key, strength = key
        rows.append(ConfigRow(name=name, method=method, group=group, proxy=proxy, strength_key=strength_key,
                              strength=strength, seeds=sorted(seeds), run_ids=[r.run_id for r in members],
                              n_failed=failed_per_key.get(key, 0),
                              metrics={m: Stat.of(vs) for m, vs in values.items()},
                              reference="aligned" if key == aligned else "sft" if key == sft else None))
    rows.sort(key=lambda r: (r.reference is None, _sort_key(r)))  # the references first
    failed.sort(key=lambda r: (config_key(r)[0], r.seed))
    return rows, failed


# ------------------------------------------------------------------------------------ Pareto and choice

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


# ----------------------------------------------------------------------------------------- formatting

def _is_fraction(metric: str) -> bool:
    return metric.endswith("_rate") or "accuracy" in metric or metric.endswith("_acc")


def strength_label(key: str | None, value: float | None) -> str:
    """'λ=0.1', 'β=0.995'...: the swept knob as the papers write it."""
    if value is None:
        return ""
    symbol = STRENGTH_SYMBOLS.get(key or "")
    if symbol is None:
        k = (key or "").lower()
        symbol = next((s for frag, s in (("lambda", "λ"), ("beta", "β"), ("radius", "r"), ("eps", "ε"))
                       if frag in k), key or "s")
    return f"{symbol}={value:g}"


def _fmt(value: float, kind: str) -> str:
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pp":
        return f"{100 * value:+.1f} pp"
    if kind == "signed":
        return f"{value:+.3f}"
    if kind == "sec":
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 1000 or (value != 0 and abs(value) < 0.01) else f"{value:.3f}"


def format_stat(stat: Stat | None, kind: str) -> str:
    """'12.5 ± 3.1%' / '0.490 ± 0.010' / '–'. One seed: the mean only."""
    if stat is None:
        return DASH
    mean = _fmt(stat.mean, kind)
    if stat.n < 2 or math.isnan(stat.std):
        return mean
    if kind == "pct":
        return f"{100 * stat.mean:.1f} ± {100 * stat.std:.1f}%"
    if kind == "pp":
        return f"{100 * stat.mean:+.1f} ± {100 * stat.std:.1f} pp"
    if kind in ("num", "signed"):
        decimals = 3 if abs(stat.mean) < 1000 else 0
        return f"{mean} ± {stat.std:.{decimals}f}" if "e" not in mean else f"{mean} ± {stat.std:.2g}"
    return f"{mean} ± {_fmt(stat.std, kind)}"


def leaderboard_columns(rows: Sequence[ConfigRow], capability_metric: str = "task_accuracy") -> list[Column]:
    """The columns to show: the issue's core set always; optional metrics when any row has them."""
    frac = _is_fraction(capability_metric)
    cap_name = METRIC_LABELS.get(capability_metric, capability_metric)
    lower = capability_metric in LOWER_IS_BETTER
    candidates = [
        Column("harmful_rate", "harmful ↓", "pct"),
        Column("harmful_rate_gcg", "harmful (GCG) ↓", "pct"),
        Column("judge_harmful_rate", "harmful (judge) ↓", "pct", always=False),
        Column("harmful_rate_far", "harmful, far categories ↓", "pct", always=False),
        Column("compliance_rate", "compliance ↓", "pct", always=False),
        Column("over_refusal_rate", "over-refusal ↓", "pct"),
        Column("alignment_nll", "alignment NLL ↓", "num"),
        Column("safety_gap", "G_s ↓", "signed"),
        Column(capability_metric, f"{cap_name} {'↓' if lower else '↑'}", "pct" if frac else "num"),
        Column("capability_gap", f"G_f ({cap_name}) ↓", "pp" if frac else "signed"),
        Column("task_nll", "task NLL ↓", "num", always=False) if capability_metric != "task_nll" else None,
        Column("capability_gap_nll", "G_f (NLL) ↓", "signed", always=False),
        Column("dist_to_theta0", "‖θ−θ₀‖", "num"),
        Column("eval_dist_to_theta0", "‖θ̄−θ₀‖ (EMA eval)", "num", always=False),
        Column("train_s", "train s", "sec"),
    ]
    return [c for c in candidates if c and (c.always or any(c.key in r.metrics for r in rows))]


def _conventions(capability_metric: str, has_sft: bool, has_aligned: bool) -> str:
    cap_name = METRIC_LABELS.get(capability_metric, capability_metric)
    unit = " in percentage points" if _is_fraction(capability_metric) else ""
    lines = [
        "Mean ± sample std (ddof=1) over seeds; n = ok seeds. ↓/↑: lower/higher is better. – : not measured.",
        "G_s = alignment NLL − aligned model's (paired by seed; > 0 = safety lost)."
        + ("" if has_aligned else " No aligned-model run: G_s undefined."),
        f"G_f ({cap_name}) = plain SFT's {cap_name} − the run's{unit} (> 0 = capability given up vs plain SFT);"
        " G_f (NLL) = task NLL − plain SFT's (the papers' loss-based gap)."
        + ("" if has_sft else " No plain-SFT run: G_f undefined."),
    ]
    return "\n".join(f"- {line}" for line in lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(rows: Sequence[ConfigRow], failed: Sequence[RunRecord],
                         capability_metric: str = "task_accuracy") -> str:
    """The leaderboard as a Markdown table, conventions underneath, then the failed runs."""
    cols = leaderboard_columns(rows, capability_metric)
    header = ["run", "method", "n", *[c.header for c in cols]]
    lines = ["# Leaderboard", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in rows:
        n = f"{row.n}" + (f" (+{row.n_failed} failed)" if row.n_failed else "")
        cells = [_md_escape(row.name), row.method, n, *[format_stat(row.metrics.get(c.key), c.kind) for c in cols]]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| (no successful runs) |" + " |" * (len(header) - 1))
    lines += ["", _conventions(capability_metric, _ref(rows, "sft") is not None,
                               _ref(rows, "aligned") is not None)]
    lines += ["", f"## Failed runs ({len(failed)})", ""]
    if failed:
        lines += ["| run | seed | run id | error |", "|---|---:|---|---|"]
        for r in failed:
            error = (r.error or "(no error recorded)").strip().splitlines() or ["(no error recorded)"]
            text = error[-1] if len(error) > 1 else error[0]  # a traceback's last line names the error
            lines.append(f"| {_md_escape(r.name)} | {r.seed} | {r.run_id[:12]} | {_md_escape(text[:300])} |")
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def leaderboard_csv(rows: Sequence[ConfigRow], capability_metric: str = "task_accuracy") -> str:
    """Raw numbers (fractions, not %), mean and std per metric, for spreadsheets and scripts."""
    metrics = [c.key for c in leaderboard_columns(rows, capability_metric)]
    metrics += sorted({m for r in rows for m in r.metrics} - set(metrics))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["name", "method", "group", "proxy", "strength_key", "strength", "n_seeds", "n_failed",
                     "seeds", *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]])
    for r in rows:
        cells: list[object] = [r.name, r.method, r.group, r.proxy or "", r.strength_key or "",
                               "" if r.strength is None else r.strength, r.n, r.n_failed,
                               " ".join(map(str, r.seeds))]
        for m in metrics:
            stat = r.metrics.get(m)
            cells += ["" if stat is None else repr(stat.mean),
                      "" if stat is None or math.isnan(stat.std) else repr(stat.std)]
        writer.writerow(cells)
    return buf.getvalue()


_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.dataset.dir !== 'asc';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.dir); th.dataset.dir = asc ? 'asc' : 'desc';
  const key = td => { const v = td.dataset.v; return v === undefined ? td.textContent : (v === '' ? null : +v); };
  [...body.rows].sort((a, b) => {
    const x = key(a.cells[col]), y = key(b.cells[col]);
    if (x === null || y === null) return (x === null) - (y === null);  // missing values last
    return (typeof x === 'number' ? x - y : String(x).localeCompare(y)) * (asc ? 1 : -1);
  }).forEach(r => body.appendChild(r));
}));
"""


def leaderboard_html(rows: Sequence[ConfigRow], failed: Sequence[RunRecord],
                     capability_metric: str = "task_accuracy") -> str:
    """One static page, no external assets: click a header to sort (missing values stay last)."""
    cols = leaderboard_columns(rows, capability_metric)
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in ["run", "method", "n", *[c.header for c in cols]])
    body = []
    for r in rows:
        cells = [f"<td>{esc(r.name)}</td>", f"<td>{esc(r.method)}</td>", f'<td data-v="{r.n}">{r.n}</td>']
        for c in cols:
            stat = r.metrics.get(c.key)
            cells.append(f'<td data-v="{"" if stat is None else repr(stat.mean)}">'
                         f"{esc(format_stat(stat, c.kind))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    fail = "".join(f"<tr><td>{esc(r.name)}</td><td>{r.seed}</td><td>{esc(r.run_id[:12])}</td>"
                   f"<td><pre>{esc(r.error or '(no error recorded)')}</pre></td></tr>" for r in failed)
    conventions = "".join(f"<li>{esc(line[2:])}</li>" for line in _conventions(
        capability_metric, _ref(rows, "sft") is not None, _ref(rows, "aligned") is not None).splitlines())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>safety-tradeoff leaderboard</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:14px}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child,td:nth-child(2){{text-align:left}}
th{{background:#f0f0f0;cursor:pointer;user-select:none}} th[data-dir=asc]::after{{content:" ▲"}}
th[data-dir=desc]::after{{content:" ▼"}} tr:nth-child(even){{background:#fafafa}} pre{{margin:0;text-align:left}}
</style></head><body>
<h1>Leaderboard</h1><p>Click a column header to sort.</p>
<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<ul>{conventions}</ul>
<h2>Failed runs ({len(failed)})</h2>
{"<table><thead><tr><th>run</th><th>seed</th><th>run id</th><th>error</th></tr></thead><tbody>" + fail
 + "</tbody></table>" if failed else "<p>None.</p>"}
<script>{_SORT_JS}</script>
</body></html>
"""


# ---------------------------------------------------------------------------------------------- plots

_RC = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10}


@contextmanager
def _figure(figsize: tuple[float, float]) -> Iterator[tuple]:
    """A figure on the Agg canvas without pyplot: no global backend switch or figure registry, so
    `build_report` is safe inside notebooks and servers; styling is scoped to the figure."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        yield fig, fig.subplots()


def _long_name(metric: str) -> str:
    return {"harmful_rate": "harmful rate", "harmful_rate_gcg": "harmful rate (GCG scorer)",
            "task_accuracy": "task accuracy", "task_nll": "task NLL",
            "over_refusal_rate": "over-refusal rate"}.get(metric, metric.replace("_", " "))


def _axis_label(metric: str, good: str, axis: str) -> str:
    """'harmful rate (%, ↓ safer)', 'task accuracy (%, more capable →)'."""
    lower = metric in LOWER_IS_BETTER
    unit = "%, " if _is_fraction(metric) else ""
    if axis == "x":
        return f"{_long_name(metric)} ({unit}{'← ' + good if lower else good + ' →'})"
    return f"{_long_name(metric)} ({unit}{'↓' if lower else '↑'} {good})"


def _percent_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.0f}"))


def _curves(rows: Sequence[ConfigRow]) -> dict[str, list[ConfigRow]]:
    """Method groups (one curve each), rows sorted by strength; the aligned/sft references excluded."""
    curves: dict[str, list[ConfigRow]] = {}
    for r in rows:
        if r.reference:
            continue
        curves.setdefault(r.label, []).append(r)
    for members in curves.values():
        members.sort(key=lambda r: (r.strength if r.strength is not None else -math.inf))
    return curves


def _merge_labels(points: list[tuple[float, float, ConfigRow]], xspan: float, yspan: float) -> list[tuple]:
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


def _place_labels(fig, ax, labels: Sequence[tuple[float, float, str, str]], fontsize: float = 9,
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


def _plot_references(ax, rows: Sequence[ConfigRow], xkey: str, ykey: str,
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
        x, xerr = xs.mean, _err(xs)
        if xlim and not xlim[0] <= x <= xlim[1]:
            edge = xlim[1] if x > xlim[1] else xlim[0]
            labels.append((edge, ys.mean, f"{label} at x = {x:+.3g} (off scale)", style[r.reference]["color"]))
            x, xerr = edge, None
        ax.errorbar([x], [ys.mean], xerr=xerr, yerr=_err(ys), linestyle="none", zorder=5, mec="white", mew=1,
                    capsize=3, label=label, clip_on=False, **style[r.reference])
        positions.append((x, ys.mean))
    return positions, labels


def _err(stat: Stat | None):
    return None if stat is None or math.isnan(stat.std) else [stat.std]


def _errs(stats: Sequence[Stat | None]):
    vals = [0.0 if s is None or math.isnan(s.std) else s.std for s in stats]
    return vals if any(vals) else None


def plot_tradeoff(rows: Sequence[ConfigRow], path: Path, safety_metric: str = "harmful_rate",
                  capability_metric: str = "task_accuracy") -> str | None:
    """The safety-capability plane: x = capability, y = harm; one curve per group over its strengths,
    references, and the Pareto frontier over every configuration. Returns a note when skipped."""
    usable = [r for r in rows if not math.isnan(r.mean(safety_metric)) and not math.isnan(r.mean(capability_metric))]
    if not usable:
        return f"tradeoff.png skipped: no run has both {safety_metric} and {capability_metric}"
    with _figure((11, 7)) as (fig, ax):
        _draw_tradeoff(fig, ax, usable, path, safety_metric, capability_metric)
    return None


def _draw_tradeoff(fig, ax, usable: Sequence[ConfigRow], path: Path, safety_metric: str,
                   capability_metric: str) -> None:
    curves = _curves(usable)
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
        ax.errorbar(xs, ys, xerr=_errs([r.metrics.get(capability_metric) for r in members]),
                    yerr=_errs([r.metrics.get(safety_metric) for r in members]), color=color,
                    marker=style["marker"], ls=style["ls"], ms=8, lw=1.6, alpha=0.9, capsize=3, label=label,
                    zorder=3)
        for x, y, text in _merge_labels(list(zip(xs, ys, members)), xspan, yspan):
            labels.append((x, y, text, color))
    obstacles, ref_labels = _plot_references(ax, usable, capability_metric, safety_metric)
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
    if _is_fraction(capability_metric):
        _percent_axis(ax.xaxis)
    if _is_fraction(safety_metric):
        _percent_axis(ax.yaxis)
    ax.margins(0.08)
    ax.set_xlabel(_axis_label(capability_metric, "more capable", "x"))
    ax.set_ylabel(_axis_label(safety_metric, "safer", "y"))
    n_max = max(r.n for r in usable)
    ax.set_title("Safety vs capability: each method over its strength grid"
                 + (f"\n(mean over seeds; bars = ±1 std)" if n_max > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="group")
    _place_labels(fig, ax, labels + ref_labels, obstacles=obstacles)
    _ideal_corner(ax, right=capability_metric not in LOWER_IS_BETTER, top=safety_metric not in LOWER_IS_BETTER)
    fig.savefig(path, dpi=130, bbox_inches="tight")


def _ideal_corner(ax, right: bool, top: bool) -> None:
    ax.annotate("ideal", xy=(0.99 if right else 0.01, 0.99 if top else 0.01), xycoords="axes fraction",
                ha="right" if right else "left", va="top" if top else "bottom", fontsize=9, color="0.4",
                style="italic")


def plot_gs_vs_lambda(rows: Sequence[ConfigRow], path: Path) -> str | None:
    """G_s against λ for Case I, one line per proxy safety set (Chen et al., Fig. 1 left)."""
    case1 = [r for r in rows if r.method == "case1" and r.strength is not None and "safety_gap" in r.metrics]
    if not case1:
        why = ("no Case I (method 'case1') runs with a strength" if not any(r.method == "case1" for r in rows)
               else "no G_s for Case I runs (an aligned-model run with alignment_nll is needed)")
        return f"gs_vs_lambda.png skipped: {why}"
    with _figure((9, 6)) as (fig, ax):
        _draw_gs_vs_lambda(fig, ax, rows, case1, path)
    return None


def _draw_gs_vs_lambda(fig, ax, rows: Sequence[ConfigRow], case1: Sequence[ConfigRow], path: Path) -> None:
    curves = _curves(case1)
    styles = group_styles(_curves(rows))  # the same colours as in the other plots
    for label, members in curves.items():
        stats = [r.metrics["safety_gap"] for r in members]
        proxy = members[0].proxy
        style = styles[label]
        ax.errorbar([r.strength for r in members], [s.mean for s in stats], yerr=_errs(stats),
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
                  ("capability_gap", f"G_f = plain SFT's {_long_name(capability_metric)} − run's"
                   + (" (pp, ← more capable)" if _is_fraction(capability_metric) else " (← more capable)"),
                   _is_fraction(capability_metric)),
                  (capability_metric, _axis_label(capability_metric, "more capable", "x"),
                   _is_fraction(capability_metric))]
    methods = [r for r in with_gs if not r.reference]
    xkey, xlabel, pct = next(c for c in candidates if all(c[0] in r.metrics for r in methods)
                             or c[0] == capability_metric)
    usable = [r for r in with_gs if xkey in r.metrics]
    if not any(not r.reference for r in usable):
        return f"methods.png skipped: no method run has {xkey}"
    with _figure((11, 7)) as (fig, ax):
        _draw_methods(fig, ax, rows, usable, path, xkey, xlabel, pct, capability_metric)
    return None


def _draw_methods(fig, ax, rows: Sequence[ConfigRow], usable: Sequence[ConfigRow], path: Path, xkey: str,
                  xlabel: str, pct: bool, capability_metric: str) -> None:
    curves = _curves(usable)
    styles = group_styles(_curves(rows))
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
        ax.errorbar(xs, ys, xerr=_errs([r.metrics.get(xkey) for r in members]),
                    yerr=_errs([r.metrics.get("safety_gap") for r in members]), color=color, ls=style["ls"],
                    marker=style["marker"], ms=8, lw=1.8, capsize=3, alpha=0.9,
                    label=f"{family}: {label}" if not label.startswith(family) else label)
        labels += [(x, y, t, color) for x, y, t in _merge_labels(list(zip(xs, ys, members)), xspan, yspan)]
    xlim = (min(xs_all) - 0.08 * xspan, max(xs_all) + 0.08 * xspan)
    obstacles, ref_labels = _plot_references(ax, usable, xkey, "safety_gap", xlim=xlim)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    if pct:
        _percent_axis(ax.xaxis)
    ax.set_xlim(*xlim)
    ax.set_ylim(min(ys_all) - 0.08 * yspan, max(ys_all) + 0.08 * yspan)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("G_s = alignment NLL − aligned model's (↓ safer)")
    ax.set_title("Trade-off curves by method family: safety gap vs capability gap")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method family: group")
    _place_labels(fig, ax, ref_labels + labels, obstacles=obstacles)
    if xkey != capability_metric:
        _ideal_corner(ax, right=False, top=False)
    fig.savefig(path, dpi=130, bbox_inches="tight")


# -------------------------------------------------------------------------------------------- summary

def _value(row: ConfigRow, metric: str) -> str:
    stat = row.metrics.get(metric)
    if stat is None:
        return DASH
    return _fmt(stat.mean, "pct" if _is_fraction(metric) else "num")


def summary_markdown(rows: Sequence[ConfigRow], failed: Sequence[RunRecord], n_records: int,
                     safety_metric: str = "harmful_rate", capability_metric: str = "task_accuracy",
                     tolerance: float = 0.05, notes: Sequence[str] = ()) -> tuple[str, list[ConfigRow]]:
    """One plain-language line per group at its chosen strength, the overall recommendation, the runs,
    the failures and the notes. Returns (text, Pareto frontier rows)."""
    safe = METRIC_LABELS.get(safety_metric, safety_metric)
    cap = METRIC_LABELS.get(capability_metric, capability_metric)
    tol_text = f"{100 * tolerance:g} pp" if _is_fraction(capability_metric) else f"{tolerance:g}"
    threshold, base = capability_threshold(rows, capability_metric, tolerance)
    sft, aligned = _ref(rows, "sft"), _ref(rows, "aligned")
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
               f"({len(_curves(rows))} method groups).")
    out += ["", "## References", ""]
    for r in (aligned, sft):
        if r is not None:
            out.append(f"- {line(r, with_ref=False)}")
    if aligned is None:
        out.append("- no aligned-model run (method 'aligned'): G_s is undefined")
    if sft is None:
        out.append("- no plain-SFT run (method 'sft'): G_f is undefined; the capability bar below uses the best run")
    out += ["", "## Per method group", "",
            f"Rule: per group, the strength with the lowest mean {_long_name(safety_metric)} among those whose "
            f"mean {_long_name(capability_metric)} is within {tol_text} of {base}'s (ties: higher "
            f"{_long_name(capability_metric)}, then the weaker strength). Marked ⚠ when no strength keeps it that "
            "high; the most capable strength is shown instead. Differences smaller than the std over seeds "
            "(leaderboard) are noise.", ""]
    curves = _curves(rows)
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


# ----------------------------------------------------------------------------------------------- main

def build_report(records: Iterable[RunRecord], out_dir: str | Path, *, safety_metric: str = "harmful_rate",
                 capability_metric: str = "task_accuracy", tolerance: float = 0.05, html_table: bool = True,
                 aligned_name: str | None = None, sft_name: str | None = None) -> Report:
    """Write the leaderboard (md, csv, html), the three plots and summary.md into `out_dir`.

    `tolerance`: how much capability (absolute, in the metric's units: 0.05 = 5 pp of accuracy) a
    recommended run may give up relative to plain SFT. `aligned_name` / `sft_name` pick the reference
    runs when a store holds several. Plots without data are skipped with a note, never an error.
    """
    records = list(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    diagnostics = [r for r in records if r.method == "diagnostics"]  # the theory section's, not leaderboard rows
    records = [r for r in records if r.method != "diagnostics"]
    rows, failed = aggregate(records, capability_metric=capability_metric, aligned_name=aligned_name,
                             sft_name=sft_name, notes=notes)
    paths: dict[str, Path] = {}
    markdown = leaderboard_markdown(rows, failed, capability_metric)
    for name, text in (("leaderboard.md", markdown), ("leaderboard.csv", leaderboard_csv(rows, capability_metric)),
                       *((("leaderboard.html", leaderboard_html(rows, failed, capability_metric)),)
                         if html_table else ())):
        paths[name] = out / name
        paths[name].write_text(text, encoding="utf-8")
    for name, plot in (("tradeoff.png", lambda p: plot_tradeoff(rows, p, safety_metric, capability_metric)),
                       ("gs_vs_lambda.png", lambda p: plot_gs_vs_lambda(rows, p)),
                       ("methods.png", lambda p: plot_methods(rows, p, capability_metric))):
        target = out / name
        target.unlink(missing_ok=True)  # a stale plot from an earlier report must not pass for this one
        note = plot(target)
        if note:
            notes.append(note)
        else:
            paths[name] = target
    summary, frontier = summary_markdown(rows, failed, len(records), safety_metric, capability_metric, tolerance,
                                         notes)
    summary += _theory_section(records + diagnostics, out, paths)
    from .judges.agreement import judge_section  # standard library only

    summary += judge_section(rows, records)  # keyword vs judge 2×2 per run; "" without judge metrics
    paths["summary.md"] = out / "summary.md"
    paths["summary.md"].write_text(summary, encoding="utf-8")
    return Report(rows=rows, failed=failed, paths=paths, markdown=markdown, summary=summary, notes=notes,
                  frontier=frontier, capability_metric=capability_metric)


def _theory_section(records: list[RunRecord], out: Path, paths: dict[str, Path]) -> str:
    """The "predicted vs measured" section (theory diagnostics), when the sweep ran diagnostics."""
    from .diagnostics.check import check, markdown, plot_bound

    result = check(records)
    target = out / "case2_bound.png"
    target.unlink(missing_ok=True)  # stale files of an earlier report must not pass for this one
    (out / "theory_check.md").unlink(missing_ok=True)
    if result is None:
        return ""
    text = markdown(result)
    paths["theory_check.md"] = out / "theory_check.md"
    paths["theory_check.md"].write_text(text, encoding="utf-8")
    note = plot_bound(result, target)
    if note is None:
        paths["case2_bound.png"] = target
        text += "\nPlot: case2_bound.png (measured G_s against r, with each seed's bound).\n"
    else:
        text += f"\n{note}\n"
    return "\n" + text


def rich_table(report: Report, compact: bool = True):
    """The leaderboard as a `rich` table for the terminal. Compact (default) keeps the columns that answer
    "how much safety for how much capability" so it fits a normal terminal; the files hold the rest."""
    from rich.table import Table

    cols = leaderboard_columns(report.rows, report.capability_metric)
    if compact:
        keep = {"harmful_rate", "harmful_rate_gcg", "judge_harmful_rate", "over_refusal_rate", "safety_gap",
                report.capability_metric, "capability_gap", "train_s"}
        cols = [c for c in cols if c.key in keep]
    table = Table(title="Leaderboard (mean ± std over seeds; full table in leaderboard.md)")
    table.add_column("run", overflow="fold")
    table.add_column("n", justify="right")
    for c in cols:
        table.add_column(c.header, justify="right", no_wrap=True)
    for r in report.rows:
        table.add_row(r.name, str(r.n), *[format_stat(r.metrics.get(c.key), c.kind) for c in cols])
    return table
