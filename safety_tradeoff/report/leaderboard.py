"""`safety-tradeoff leaderboard`: the report of checkpoints trained anywhere, from their lm-eval results.

A base model, its plain fine-tune, three safe fine-tunes, a colleague's model: evaluated with ``lm_eval
... --output_path`` (any tasks, several calls per model allowed), optionally judged with
``safety-tradeoff judge``, they become one leaderboard through :mod:`.inputs` and the same
:func:`~.build.build_report` a sweep uses. With ``--reference`` (the aligned model), every row gets
G_s (alignment NLL − the reference's) and the capability gap (the reference's capability − the row's).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..lm_eval_results import CAPABILITY_METRICS
from ..results import RunRecord
from .build import Report, build_report
from .inputs import LeaderboardInputError, model_record, read_inputs


def pick_capability_metric(records: Sequence[RunRecord]) -> str | None:
    """The capability metric most rows have (ties: the more comprehensive, in ``CAPABILITY_METRICS`` order)."""
    counts = Counter(m for r in records for m in CAPABILITY_METRICS if m in (r.metrics or {}))
    if not counts:
        return None
    return max(CAPABILITY_METRICS, key=lambda m: (counts.get(m, 0), -CAPABILITY_METRICS.index(m)))


def build_leaderboard(paths: Sequence[str | os.PathLike], out_dir: str | Path, *,
                      names: Mapping[str, str] | None = None, reference: str | None = None,
                      capability_metric: str | None = None, safety_metric: str = "harmful_rate",
                      tolerance: float = 0.05) -> Report:
    """Read `paths` (lm-eval output folders or results files, judged results, sweep stores) and write the
    report into `out_dir`. :class:`LeaderboardInputError` for input it cannot use."""
    inputs = read_inputs(paths, names)
    records = list(inputs.records) + [model_record(m) for m in inputs.models.values()]
    notes = list(inputs.notes)
    row_names = sorted({r.name for r in records if r.ok})
    if reference is not None and reference not in row_names:
        raise LeaderboardInputError(f"--reference {reference!r} is not among the rows: {', '.join(row_names)}")
    if capability_metric is None:
        capability_metric = pick_capability_metric(records)
        if capability_metric is None:
            capability_metric = "task_accuracy"
            notes.append("no capability metric measured (no toy task, Open LLM Leaderboard or ARC/HellaSwag "
                         "results): the capability columns and the trade-off plot are empty")
        else:
            notes.append(f"capability metric: {capability_metric} (the one most rows have; --capability-metric "
                         "to choose another)")
    return build_report(records, out_dir, safety_metric=safety_metric, capability_metric=capability_metric,
                        tolerance=tolerance, reference=reference, all_columns=False, notes=notes)
