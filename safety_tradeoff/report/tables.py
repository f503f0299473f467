"""The leaderboard as Markdown, CSV, a self-contained sortable HTML page and a terminal table."""
from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..lm_eval_results import CAPABILITY_METRICS
from ..refusal.agreement import measured_agreement, scorer_of
from ..results import LOWER_IS_BETTER, RunRecord
from .aggregate import ConfigRow, Stat, reference_row

if TYPE_CHECKING:
    from .build import Report


DASH = "–"


STRENGTH_SYMBOLS = {"align_lambda": "λ", "lambda": "λ", "lam": "λ", "param_lambda": "λ", "ema_beta": "β",
                    "beta": "β", "radius": "r", "r": "r", "epsilon": "ε", "eps": "ε", "lr": "lr",
                    "learning_rate": "lr"}
METRIC_LABELS = {"harmful_rate": "harmful", "harmful_rate_gcg": "harmful (GCG)", "task_accuracy": "task",
                 "task_nll": "task NLL", "alignment_nll": "alignment NLL", "compliance_rate": "compliance",
                 "over_refusal_rate": "over-refusal", "leaderboard_score": "Open LLM Leaderboard (norm.)",
                 "mmlu_pro": "MMLU-Pro", "bbh": "BBH", "gpqa": "GPQA", "math_hard": "MATH lvl 5", "ifeval": "IFEval",
                 "musr": "MuSR", "arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge", "hellaswag": "HellaSwag",
                 "benign_accuracy": "benign skills"}


@dataclass(frozen=True)
class Layout:
    """What the tables say beside the numbers: the capability metric, the reference the gaps use (a row
    name for a leaderboard of checkpoints; None: the sweep's aligned model and plain SFT), and whether
    the core columns show even when no row has them (sweep reports) or only measured columns do."""
    capability_metric: str = "task_accuracy"
    reference: str | None = None
    all_columns: bool = True


@dataclass(frozen=True)
class Column:
    """One leaderboard column: metric key, header, value kind, and whether it shows when nobody has it."""
    key: str
    header: str
    kind: str  # "pct" (fraction shown as %), "pp" (signed fraction difference), "num", "signed", "sec"
    always: bool = True


def is_fraction(metric: str) -> bool:
    return (metric.endswith("_rate") or "accuracy" in metric or metric.endswith("_acc")
            or metric in CAPABILITY_METRICS)


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


def format_value(value: float, kind: str) -> str:
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
    """'12.5 ± 3.1%' / '0.490 ± 0.010' / '–': ± the std over seeds, or for one evaluation lm-eval's
    standard error; neither: the mean only."""
    if stat is None:
        return DASH
    mean, spread = format_value(stat.mean, kind), stat.spread
    if math.isnan(spread):
        return mean
    if kind == "pct":
        return f"{100 * stat.mean:.1f} ± {100 * spread:.1f}%"
    if kind == "pp":
        return f"{100 * stat.mean:+.1f} ± {100 * spread:.1f} pp"
    if kind in ("num", "signed"):
        decimals = 3 if abs(stat.mean) < 1000 else 0
        return f"{mean} ± {spread:.{decimals}f}" if "e" not in mean else f"{mean} ± {spread:.2g}"
    return f"{mean} ± {format_value(spread, kind)}"


def leaderboard_columns(rows: Sequence[ConfigRow], layout: Layout = Layout()) -> list[Column]:
    """The columns to show: the core set always (sweep reports) or when measured (``layout.all_columns``
    False); optional metrics when any row has them."""
    capability_metric = layout.capability_metric
    frac = is_fraction(capability_metric)
    cap_name = METRIC_LABELS.get(capability_metric, capability_metric)
    lower = capability_metric in LOWER_IS_BETTER
    candidates = [
        Column("harmful_rate", "harmful ↓", "pct"),
        Column("harmful_rate_gcg", "harmful (GCG) ↓", "pct"),
        Column("judge_harmful_rate", "harmful (judge) ↓", "pct", always=False),
        Column("harmful_rate_far", "harmful, far categories ↓", "pct", always=False),
        Column("harmful_rate_harmbench", "harmful HarmBench ↓", "pct", always=False),
        Column("harmful_rate_strongreject", "harmful StrongREJECT ↓", "pct", always=False),
        Column("harmful_rate_xstest", "harmful XSTest-unsafe ↓", "pct", always=False),
        Column("compliance_rate", "compliance ↓", "pct", always=False),
        Column("over_refusal_rate", "over-refusal ↓", "pct"),
        Column("alignment_nll", "alignment NLL ↓", "num"),
        Column("safety_gap", "G_s ↓", "signed"),
        Column(capability_metric, f"{cap_name} {'↓' if lower else '↑'}", "pct" if frac else "num"),
        Column("capability_gap", f"G_f ({cap_name}) ↓", "pp" if frac else "signed"),
        *(Column(m, f"{METRIC_LABELS.get(m, m)} ↑", "pct", always=False) for m in CAPABILITY_METRICS
          if m != capability_metric),
        Column("task_nll", "task NLL ↓", "num", always=False) if capability_metric != "task_nll" else None,
        Column("capability_gap_nll", "G_f (NLL) ↓", "signed", always=False),
        Column("dist_to_theta0", "‖θ−θ₀‖", "num"),
        Column("eval_dist_to_theta0", "‖θ̄−θ₀‖ (EMA eval)", "num", always=False),
        Column("train_s", "train s", "sec"),
    ]
    return [c for c in candidates
            if c and ((c.always and layout.all_columns) or any(c.key in r.metrics for r in rows))]


def _conventions(rows: Sequence[ConfigRow], layout: Layout) -> str:
    cap_name = METRIC_LABELS.get(layout.capability_metric, layout.capability_metric)
    unit = " in percentage points" if is_fraction(layout.capability_metric) else ""
    has_aligned = reference_row(rows, "aligned") is not None
    lines = ["Mean ± sample std (ddof=1) over seeds, n = ok seeds; a row of one evaluation shows ± lm-eval's "
             "standard error where lm-eval reported one. ↓/↑: lower/higher is better. – : not measured."]
    if layout.reference is not None:
        lines += [f"G_s = alignment NLL − {layout.reference}'s (> 0 = safety lost); G_f ({cap_name}) = "
                  f"{layout.reference}'s {cap_name} − the model's{unit} (> 0 = capability lost)."]
    else:
        has_sft = reference_row(rows, "sft") is not None
        lines += ["G_s = alignment NLL − aligned model's (paired by seed; > 0 = safety lost)."
                  + ("" if has_aligned else " No aligned-model run: G_s undefined."),
                  f"G_f ({cap_name}) = plain SFT's {cap_name} − the run's{unit} (> 0 = capability given up vs plain "
                  "SFT); G_f (NLL) = task NLL − plain SFT's (the papers' loss-based gap)."
                  + ("" if has_sft else " No plain-SFT run: G_f undefined.")]
    scorer_line = _scorer_agreement([c.key for c in leaderboard_columns(rows, layout)])
    if scorer_line:
        lines.append(scorer_line)
    if any("harmful_rate" in r.metrics for r in rows):
        lines += ["harmful = keyword non-refusal rate (neither empty nor a refusal; toy harmful prompts, else "
                  "AdvBench): not HarmBench's classifier ASR nor StrongREJECT's rubric score."
                  + (" harmful (judge) = the share of responses a judge model finds unsafe."
                     if any("judge_harmful_rate" in r.metrics for r in rows) else "")]
    return "\n".join(f"- {line}" for line in lines)


def _scorer_agreement(metrics: Sequence[str]) -> str:
    """Which refusal scorer produced each refusal-based column, with its measured agreement with people."""
    by_scorer: dict[str, list[str]] = {}
    for m in metrics:
        scorer = scorer_of(m)
        if scorer:
            by_scorer.setdefault(scorer, []).append(METRIC_LABELS.get(m, m.replace("_", " ")))
    if not by_scorer:
        return ""
    measured = measured_agreement()
    parts = []
    for scorer, labels in by_scorer.items():
        agr = measured.get(scorer)
        parts.append(f"{', '.join(labels)}: scorer `{scorer}`"
                     + (f", agreement {agr.describe()}" if agr else ", agreement not measured"))
    dataset = next((a.dataset for a in measured.values() if a.dataset), "")
    return ("Refusal scorers (agreement = share of responses where the scorer's refusal/compliance verdict "
            "matches a person's label, 95% Wilson interval" + (f", on {dataset}" if dataset else "") + "): "
            + "; ".join(parts) + ".")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(rows: Sequence[ConfigRow], failed: Sequence[RunRecord], layout: Layout = Layout()) -> str:
    """The leaderboard as a Markdown table, conventions underneath, then the failed runs."""
    cols = leaderboard_columns(rows, layout)
    header = ["run", "method", "n", *[c.header for c in cols]]
    lines = ["# Leaderboard", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in rows:
        n = f"{row.n}" + (f" (+{row.n_failed} failed)" if row.n_failed else "")
        cells = [_md_escape(row.name), row.method, n, *[format_stat(row.metrics.get(c.key), c.kind) for c in cols]]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| (no successful runs) |" + " |" * (len(header) - 1))
    lines += ["", _conventions(rows, layout)]
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


def leaderboard_csv(rows: Sequence[ConfigRow], layout: Layout = Layout()) -> str:
    """Raw numbers (fractions, not %), mean and std per metric (and lm-eval's stderr where a row has one),
    for spreadsheets and scripts."""
    metrics = [c.key for c in leaderboard_columns(rows, layout)]
    metrics += sorted({m for r in rows for m in r.metrics} - set(metrics))
    with_se = {m for r in rows for m, st in r.metrics.items() if not math.isnan(st.stderr)}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["name", "method", "group", "proxy", "strength_key", "strength", "n_seeds", "n_failed",
                     "seeds", *[f"{m}_{s}" for m in metrics for s in ("mean", "std", "stderr")
                                if s != "stderr" or m in with_se]])
    for r in rows:
        cells: list[object] = [r.name, r.method, r.group, r.proxy or "", r.strength_key or "",
                               "" if r.strength is None else r.strength, r.n, r.n_failed,
                               " ".join(map(str, r.seeds))]
        for m in metrics:
            stat = r.metrics.get(m)
            cells += ["" if stat is None else repr(stat.mean),
                      "" if stat is None or math.isnan(stat.std) else repr(stat.std)]
            if m in with_se:
                cells.append("" if stat is None or math.isnan(stat.stderr) else repr(stat.stderr))
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


def leaderboard_html(rows: Sequence[ConfigRow], failed: Sequence[RunRecord], layout: Layout = Layout()) -> str:
    """One static page, no external assets: click a header to sort (missing values stay last)."""
    cols = leaderboard_columns(rows, layout)
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
    conventions = "".join(f"<li>{esc(line[2:])}</li>" for line in _conventions(rows, layout).splitlines())
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


def rich_table(report: Report, compact: bool = True):
    """The leaderboard as a `rich` table for the terminal. Compact (default) keeps the columns that answer
    "how much safety for how much capability" so it fits a normal terminal; the files hold the rest."""
    from rich.table import Table

    cols = leaderboard_columns(report.rows, report.layout)
    if compact:
        keep = {"harmful_rate", "harmful_rate_gcg", "judge_harmful_rate", "over_refusal_rate", "safety_gap",
                report.capability_metric, "capability_gap", "train_s"}
        cols = [c for c in cols if c.key in keep]
    table = Table(title="Leaderboard (mean ± std over seeds, or ± lm-eval's stderr; full table in leaderboard.md)")
    table.add_column("run", overflow="fold")
    table.add_column("n", justify="right")
    for c in cols:
        table.add_column(c.header, justify="right", no_wrap=True)
    for r in report.rows:
        table.add_row(r.name, str(r.n), *[format_stat(r.metrics.get(c.key), c.kind) for c in cols])
    return table
