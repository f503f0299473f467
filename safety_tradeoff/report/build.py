"""`build_report`: every file of a report (leaderboard tables, plots, summary, theory and judge sections)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..results import RunRecord
from .aggregate import ConfigRow, aggregate
from .claims import Claim, check_claims, claims_markdown
from .plots import plot_gs_vs_lambda, plot_methods, plot_tradeoff
from .summary import summary_markdown
from .tables import Layout, leaderboard_csv, leaderboard_html, leaderboard_markdown


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
    layout: Layout = field(default_factory=Layout)
    claims: list[Claim] = field(default_factory=list)  # the papers' claims on these results (summary.md)

    @property
    def capability_metric(self) -> str:
        return self.layout.capability_metric


def build_report(records: Iterable[RunRecord], out_dir: str | Path, *, safety_metric: str = "harmful_rate",
                 capability_metric: str = "task_accuracy", tolerance: float = 0.05, html_table: bool = True,
                 aligned_name: str | None = None, sft_name: str | None = None, reference: str | None = None,
                 all_columns: bool = True, notes: Iterable[str] = ()) -> Report:
    """Write the leaderboard (md, csv, html), the three plots and summary.md into `out_dir`.

    `tolerance`: how much capability (absolute, in the metric's units: 0.05 = 5 pp of accuracy) a
    recommended run may give up relative to plain SFT. `aligned_name` / `sft_name` pick the reference
    runs when a store holds several; `reference` (a row name) measures both gaps against that row instead
    (``ValueError`` if no row has it). `all_columns`: show the core columns even when no row has them.
    `notes` join the summary's. Plots without data are skipped with a note, never an error.
    """
    records = list(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    layout = Layout(capability_metric, reference, all_columns)
    diagnostics = [r for r in records if r.method == "diagnostics"]  # the theory section's, not leaderboard rows
    records = [r for r in records if r.method != "diagnostics"]
    rows, failed = aggregate(records, capability_metric=capability_metric, aligned_name=aligned_name,
                             sft_name=sft_name, reference=reference, notes=notes)
    paths: dict[str, Path] = {}
    markdown = leaderboard_markdown(rows, failed, layout)
    for name, text in (("leaderboard.md", markdown), ("leaderboard.csv", leaderboard_csv(rows, layout)),
                       *((("leaderboard.html", leaderboard_html(rows, failed, layout)),) if html_table else ())):
        paths[name] = out / name
        paths[name].write_text(text, encoding="utf-8")
    title = ("Safety vs capability: each method over its strength grid" if all_columns
             else "Safety vs capability of the evaluated models")
    for name, plot in (("tradeoff.png", lambda p: plot_tradeoff(rows, p, safety_metric, capability_metric, title)),
                       ("gs_vs_lambda.png", lambda p: plot_gs_vs_lambda(rows, p)),
                       ("methods.png", lambda p: plot_methods(rows, p, capability_metric))):
        target = out / name
        target.unlink(missing_ok=True)  # a stale plot from an earlier report must not pass for this one
        note = plot(target)
        if note:
            notes.append(note)
        else:
            paths[name] = target
    summary, frontier = summary_markdown(rows, failed, len(records), safety_metric, layout, tolerance, notes)
    claims = check_claims(records + diagnostics)
    summary += claims_markdown(claims)
    summary += _theory_section(records + diagnostics, out, paths)
    from ..judges.agreement import judge_section  # standard library only

    summary += judge_section(rows, records)  # keyword vs judge 2×2 per run; "" without judge metrics
    paths["summary.md"] = out / "summary.md"
    paths["summary.md"].write_text(summary, encoding="utf-8")
    return Report(rows=rows, failed=failed, paths=paths, markdown=markdown, summary=summary, notes=notes,
                  frontier=frontier, layout=layout, claims=claims)


def _theory_section(records: list[RunRecord], out: Path, paths: dict[str, Path]) -> str:
    """The "predicted vs measured" section (theory diagnostics), when the sweep ran diagnostics."""
    from ..diagnostics.check import check
    from ..diagnostics.check_report import markdown, plot_bound, plot_predictions

    result = check(records)
    target, predictions = out / "case2_bound.png", out / "case2_prediction.png"
    for stale in (target, predictions):  # stale files of an earlier report must not pass for this one
        stale.unlink(missing_ok=True)
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
    if plot_predictions(result, predictions) is None:
        paths["case2_prediction.png"] = predictions
        text += "Plot: case2_prediction.png (Case II: predicted against measured G_s, log-log, factor-2 band).\n"
    return "\n" + text
