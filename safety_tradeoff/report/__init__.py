"""`safety-tradeoff report` and `safety-tradeoff leaderboard`: leaderboard, trade-off plots and a summary.

Users come with one question: *which method and which strength (or which checkpoint) keeps the most
safety for the capability I need?* Both commands turn records (`results.RunRecord`: a sweep's store, or
lm-eval results converted by :mod:`.inputs`) into the answer, through the same code:

- ``leaderboard.md`` / ``.csv`` / ``.html``: one row per run configuration or evaluated model;
- ``tradeoff.png``: the safety-capability plane with each group's curve and the Pareto frontier;
- ``gs_vs_lambda.png``: the safety gap G_s against λ per proxy safety set (Chen et al., Fig. 1 left);
- ``methods.png``: Case I vs Case II vs EMA in the (G_f, G_s) plane (Chen et al., Fig. 2 right);
- ``summary.md``: one line per group at its best strength, the recommendation, failed runs, and which of the
  papers' claims the results show (:mod:`.claims`).

Modules by concern: :mod:`.aggregate` (rows, gaps, mean ± std), :mod:`.choice` (Pareto frontier,
recommendation), :mod:`.tables` (Markdown, CSV, HTML, terminal), :mod:`.style` and :mod:`.plots`,
:mod:`.summary`, :mod:`.claims`, :mod:`.build` (writes everything). Only numbers, matplotlib (Agg) and the standard
library: no torch, so reports run anywhere.
"""
from .aggregate import ConfigRow, Stat, aggregate, config_key
from .build import Report, build_report
from .claims import Claim, check_claims
from .choice import capability_threshold, choose, pareto_front
from .tables import format_stat, leaderboard_columns, rich_table, strength_label

__all__ = ["Claim", "ConfigRow", "Report", "Stat", "aggregate", "build_report", "capability_threshold", "check_claims",
           "choose",
           "config_key", "format_stat", "leaderboard_columns", "pareto_front", "rich_table", "strength_label"]
