"""The sweep's append-only results store (JSONL): one record per attempt of one run.

A record is a JSON object::

    {"run_id": "3f2a...",            # hash of everything that defines the run (method, params, seed, data, model)
     "name": "Case I near λ=0.1",    # human label
     "method": "case1",              # aligned | sft | case1 | case1_constraint | case2 | case2_ball | ema | combo
     "group": "Case I near",         # one curve in the plots: same method + proxy, varying strength
     "strength_key": "align_lambda", "strength": 0.1,   # the swept knob of the curve (None for sft/aligned)
     "proxy": "near",                # proxy safety set name (Case I), else null
     "seed": 0,
     "config": {...},                # the run's full resolved settings
     "status": "ok" | "failed",
     "error": null | "message",      # failed runs: the error, the sweep goes on
     "metrics": {"harmful_rate": ..., "harmful_rate_gcg": ..., "compliance_rate": ..., "empty_rate": ...,
                 "over_refusal_rate": ..., "alignment_nll": ..., "task_accuracy": ..., "task_nll": ...,
                 "dist_to_theta0": ..., ...},
     "timings": {"train_s": ..., "eval_s": ...},
     "versions": {"safety_tradeoff": ..., "torch": ..., "transformers": ..., "trl": ..., "lm_eval": ...},
     "git_commit": "abc123" | null,
     "finished_at": "2026-11-22T17:00:00+00:00"}

Records are only appended, never rewritten: a re-run skips run ids whose latest record is ``ok``,
and repeats failed ones. The latest record of each run id is the one that counts.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Metrics where lower is safer/better (used by reports to orient axes and pick the Pareto frontier).
LOWER_IS_BETTER = {"harmful_rate", "harmful_rate_gcg", "compliance_rate", "empty_rate", "over_refusal_rate",
                   "alignment_nll", "task_nll", "safety_gap", "capability_gap", "judge_harmful_rate"}


@dataclass
class RunRecord:
    run_id: str
    name: str
    method: str
    seed: int
    group: str = ""
    strength_key: str | None = None
    strength: float | None = None
    proxy: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    finished_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ResultsStore:
    """Append-only JSONL file of `RunRecord`s."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: RunRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(record), ensure_ascii=False, default=_jsonable)
        with self.path.open("a", encoding="utf-8") as f:  # one write per record: a crash loses at most it
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __iter__(self) -> Iterator[RunRecord]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield RunRecord(**json.loads(line))
                except (json.JSONDecodeError, TypeError) as err:
                    # a line cut by a crash mid-write is skipped, never fatal: the run is simply redone
                    if line.endswith("\n"):
                        raise ValueError(f"{self.path}:{number}: not a results record ({err})") from None

    def latest(self) -> dict[str, RunRecord]:
        """The latest record of each run id."""
        out: dict[str, RunRecord] = {}
        for record in self:
            out[record.run_id] = record
        return out

    def finished(self) -> set[str]:
        return {run_id for run_id, record in self.latest().items() if record.ok}


def load_records(paths: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Latest record per run id over one or more stores (later files win)."""
    merged: dict[str, RunRecord] = {}
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"results file not found: {path}")
        merged.update(ResultsStore(path).latest())
    return list(merged.values())


def finite(value: object) -> float | None:
    """A metric value as a float, None for anything else (missing, NaN, inf, bool, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def gap_interval(record: RunRecord, gap: float) -> tuple[float, float] | None:
    """The interval of a run's measured G_s: the pilot's bootstrap interval at the end of training (over D_s's
    examples), placed around `gap`, the evaluation's G_s (the same estimator on the same D_s; placed, so a
    subsample cannot shift the centre). None where the run recorded no interval (no `diagnostics:` block)."""
    value, low, high = (finite((record.metrics or {}).get(k)) for k in ("final_gap", "final_gap_low", "final_gap_high"))
    if value is None or low is None or high is None:
        return None
    return gap - (value - low), gap + (high - value)


def intervals_overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Two measured G_s that cannot be told apart (both intervals known, and they overlap)."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
