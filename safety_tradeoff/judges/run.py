"""Judge saved samples: per-sample verdicts and judged metrics next to lm-eval's keyword ones.

For each folder of sample files (one evaluated model), :func:`judge_samples` writes

* ``judged_<task>.jsonl``: one line per judged sample (judge id, prompt/response hashes, score, verdict,
  raw answer, categories, keyword verdict). Append-only: a re-run with the same judge skips every sample
  whose (judge id, prompt hash, response hash) is already there, and re-applies the current threshold to
  the stored scores, so changing ``--threshold`` needs no judging. The judge id (``judge.identity``) covers
  every other setting that changes a score (model, format, prompt template, clipping, dtype...): changing
  one of them judges the samples again.
* ``results_judged.json`` in lm-eval's results shape: ``results[task]`` with ``judge_harmful_rate,none``
  (+ ``_stderr``), ``judge_unparsed_rate,none``, ``keyword_harmful_rate,none``, ``agreement,none``,
  ``cohen_kappa,none``; ``agreement[task]`` with the 2×2 counts and ``unparsed``; ``config`` (judge,
  format, threshold...); ``n-samples``. Results of other tasks by the same judge are kept.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .agreement import COUNT_KEYS, flat_metrics, task_metrics
from .samples import MAIN_TASKS, Sample, load_samples, samples_from_rows

RESULTS_FILE = "results_judged.json"


def verdict_file(out_dir: Path, task: str) -> Path:
    return out_dir / f"judged_{task}.jsonl"


@dataclass
class TaskOutcome:
    """What happened to one task's samples: counts, metrics, where they were written."""

    task: str
    n: int
    judged_now: int
    metrics: dict[str, Any]
    counts: dict[str, int]
    verdicts: Path | None = None


@dataclass
class FolderOutcome:
    source: Path
    out_dir: Path
    tasks: list[TaskOutcome] = field(default_factory=list)
    results: Path | None = None


def _load_verdicts(path: Path, identity: str) -> dict[tuple[str, str], dict]:
    """Stored verdicts of one judge, keyed by (prompt hash, response hash); a line cut by a crash is skipped."""
    out: dict[tuple[str, str], dict] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("judge") == identity:
            out[(row["prompt_hash"], row["response_hash"])] = row
    return out


def unsafe_at(row: Mapping[str, Any], threshold: float) -> bool | None:
    """A stored verdict at `threshold`: None if unparsed, else score >= threshold (or the stored verdict)."""
    if not row.get("parsed"):
        return None
    score = row.get("score")
    return bool(score >= threshold) if isinstance(score, (int, float)) else bool(row.get("unsafe"))


def _judge_rows(judge: Any, samples: Sequence[Sample]) -> list[dict]:
    verdicts = judge.judge([s.prompt for s in samples], [s.response for s in samples]) if samples else []
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return [{"judge": judge.identity, "task": s.task, "doc_id": s.doc_id, "prompt_hash": s.prompt_hash,
             "response_hash": s.response_hash, "parsed": v.parsed, "unsafe": v.unsafe, "score": v.score,
             "threshold": judge.threshold, "raw": v.raw, "categories": v.categories,
             "keyword_harmful": s.keyword_harmful, "category": s.category, "source": Path(s.source).name,
             "judged_at": when} for s, v in zip(samples, verdicts, strict=True)]


def judge_task(judge: Any, samples: Sequence[Sample], store: Path | None = None) -> TaskOutcome:
    """Judge one task's samples (skipping those already in `store`), append the new verdicts to `store`,
    and compute the task's metrics at the judge's threshold."""
    task = samples[0].task if samples else ""
    cached = _load_verdicts(store, judge.identity) if store else {}
    todo = [s for s in {(s.prompt_hash, s.response_hash): s for s in samples}.values()
            if (s.prompt_hash, s.response_hash) not in cached]
    rows = _judge_rows(judge, todo)
    if store is not None and rows:
        store.parent.mkdir(parents=True, exist_ok=True)
        with store.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
    for row in rows:
        cached[(row["prompt_hash"], row["response_hash"])] = row
    judged = [unsafe_at(cached[(s.prompt_hash, s.response_hash)], judge.threshold) for s in samples]
    metrics, counts = task_metrics([s.keyword_harmful for s in samples], judged)
    return TaskOutcome(task, len(samples), len(rows), metrics, counts, store)


def _write_results(path: Path, judge: Any, outcomes: Sequence[TaskOutcome], notes: Sequence[str]) -> None:
    """Merge this run's tasks into ``results_judged.json`` (other tasks of the same judge are kept)."""
    config = {**judge.config(), "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
        if (data.get("config") or {}).get("identity") != judge.identity:
            data = {}  # another judge's results: replaced (its per-sample verdicts stay in judged_*.jsonl)
    data.setdefault("results", {})
    data.setdefault("agreement", {})
    data.setdefault("n-samples", {})
    for o in outcomes:
        data["results"][o.task] = {"alias": o.task, **o.metrics}
        data["agreement"][o.task] = dict(o.counts)
        data["n-samples"][o.task] = {"original": o.n, "effective": o.n - o.counts["unparsed"]}
    data["config"] = {**config, "identity": judge.identity}
    data["notes"] = list(notes)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _out_dirs(folders: Sequence[Path], out_dir: str | Path | None) -> dict[Path, Path]:
    """Outputs go next to the samples, or under `out_dir` (one sub-folder per model folder when several)."""
    if out_dir is None:
        return {f: f for f in folders}
    out = Path(out_dir)
    if len(folders) == 1:
        return {folders[0]: out}
    root = Path(os.path.commonpath([str(f) for f in folders]))
    return {f: out / (f.relative_to(root) if f != root else Path(".")) for f in folders}


def judge_samples(paths: Iterable[str | Path], judge: Any, out_dir: str | Path | None = None, *,
                  max_samples: int | None = None, log: Callable[[str], None] = print) -> list[FolderOutcome]:
    """Judge every harmful-prompt task's samples under `paths` (lm-eval output folders or sample files).

    Returns one :class:`FolderOutcome` per folder of sample files. Raises
    :class:`~safety_tradeoff.judges.samples.SamplesError` for input that cannot be judged."""
    by_folder, notes = load_samples(paths, max_samples=max_samples)
    for note in notes:
        log(note)
    targets = _out_dirs(sorted(by_folder), out_dir)
    outcomes = []
    for folder, tasks in sorted(by_folder.items()):
        target = targets[folder]
        result = FolderOutcome(folder, target)
        for task, samples in sorted(tasks.items()):
            result.tasks.append(judge_task(judge, samples, verdict_file(target, task)))
        new = sum(t.judged_now for t in result.tasks)
        total = sum(t.n for t in result.tasks)
        log(f"{folder}: judged {new} new sample(s) with {judge.name}" if new else
            f"{folder}: nothing to judge: all {total} sample(s) already judged by {judge.name}")
        target.mkdir(parents=True, exist_ok=True)
        result.results = target / RESULTS_FILE
        _write_results(result.results, judge, result.tasks, notes)
        outcomes.append(result)
    return outcomes


def judge_metrics(samples: Mapping[str, Sequence[Mapping[str, Any]]], judge: Any) -> dict[str, float]:
    """In-process judging of ``simple_evaluate(log_samples=True)["samples"]`` (the sweep): metrics named
    ``judge_harmful_rate``, ``judge_unparsed_rate``, ``judge_agreement`` (main task) and
    ``judge/<task>/<metric or 2×2 cell>``. Tasks that are not harmful-prompt tasks are ignored."""
    from .samples import SamplesError

    per_task = {}
    for task, rows in samples.items():
        try:
            task_samples = samples_from_rows(task, rows)
        except SamplesError:
            continue
        if task_samples:
            outcome = judge_task(judge, task_samples)
            per_task[task] = (outcome.metrics, outcome.counts)
    return flat_metrics(per_task, MAIN_TASKS)


__all__ = ["COUNT_KEYS", "FolderOutcome", "RESULTS_FILE", "TaskOutcome", "judge_metrics", "judge_samples",
           "judge_task", "unsafe_at", "verdict_file"]
