"""Evaluate a checkpoint with lm-eval (this project's tasks plus any lm-eval benchmark), in-process.

The model is loaded fresh from its folder for every evaluation and lm-eval's request cache is off:
lm-eval keys that cache on the request, not the weights, so a cached answer could belong to another
checkpoint. With a judge (`eval.judge`), samples are logged, the evaluated model is freed, and the
judge scores the harmful tasks' responses in the same call (`judges.run.judge_metrics`).
"""
from __future__ import annotations

import contextlib
import copy
import gc
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from .sweep_config import EvalSpec
from .toyworld.marker import world_dir_of

# Canonical metric name -> (lm-eval task, metric key in its results) candidates, first present wins.
# The leaderboard, plots and tests speak in canonical names, whatever benchmark produced them.
CANONICAL: dict[str, list[tuple[str, str]]] = {
    "harmful_rate": [("safety_tradeoff_toy_harmful", "harmful_rate,none"),
                     ("safety_tradeoff_advbench", "harmful_rate,none")],
    "harmful_rate_gcg": [("safety_tradeoff_toy_harmful", "harmful_rate_gcg,none"),
                         ("safety_tradeoff_advbench", "harmful_rate_gcg,none")],
    "compliance_rate": [("safety_tradeoff_toy_harmful", "compliance_rate,none")],
    "empty_rate": [("safety_tradeoff_toy_harmful", "empty_rate,none"), ("safety_tradeoff_advbench", "empty_rate,none")],
    "harmful_rate_far": [("safety_tradeoff_toy_harmful_far", "harmful_rate,none")],
    "over_refusal_rate": [("safety_tradeoff_toy_over_refusal", "over_refusal_rate,none"),
                          ("safety_tradeoff_xstest", "over_refusal_rate,none")],
    "alignment_nll": [("safety_tradeoff_toy_alignment_nll", "alignment_nll,none"),
                      ("safety_tradeoff_donotanswer_nll", "alignment_nll,none")],
    "task_accuracy": [("safety_tradeoff_toy_task", "exact_match,none")],
    "task_nll": [("safety_tradeoff_toy_task_nll", "task_nll,none")],
    "benign_accuracy": [("safety_tradeoff_toy_benign", "exact_match,none")],
}


def _with_metadata(manager, metadata: dict[str, Any]):
    """A TaskManager sharing `manager`'s (expensive) task index, with other task metadata.

    Task data and token counts depend on the checkpoint (toy world folder, tokenizer); building a new
    index costs 6-12 s with lm-eval's own tasks included, so only the factory is replaced.
    """
    from lm_eval.tasks._factory import TaskFactory

    clone = copy.copy(manager)
    clone.metadata = metadata
    clone._factory = TaskFactory(meta=metadata)
    return clone


def flatten(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """lm-eval's per-task results as `task/metric,filter` -> float (stderr and aliases dropped)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            if "_stderr" in key or key == "alias" or not isinstance(value, (int, float)):
                continue
            out[f"{task}/{key}"] = float(value)
    return out


def canonical(flat: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, candidates in CANONICAL.items():
        for task, key in candidates:
            value = flat.get(f"{task}/{key}")
            if value is not None and not math.isnan(value):
                out[name] = value
                break
    return out


class LmEvalEvaluator:
    """Callable: model folder -> metrics (canonical names + every `task/metric` lm-eval reported)."""

    def __init__(self, spec: EvalSpec):
        from lm_eval.tasks import TaskManager

        from . import tasks_path

        self.spec = spec
        custom_only = all(t.startswith("safety_tradeoff") for t in spec.tasks)
        self.manager = TaskManager(include_path=tasks_path(), include_defaults=not custom_only,
                                   metadata=dict(spec.metadata))
        known = set(self.manager.all_tasks)
        unknown = [t for t in spec.tasks if t not in known]
        if unknown:
            raise ValueError(f"unknown lm-eval task(s) in eval.tasks: {', '.join(unknown)}")

    def __call__(self, model_dir: str) -> dict[str, float]:
        import lm_eval
        import torch
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32 if not torch.cuda.is_available()
                                                     else "auto")
        metadata = {**self.spec.metadata, "tokenizer": tokenizer, "pretrained": model_dir}
        world = world_dir_of(model_dir)
        if world is not None and "toy_world" not in metadata:
            metadata["toy_world"] = str(world)
        judge = getattr(self.spec, "judge", None)
        with quiet_stderr():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.spec.batch_size,
                      max_length=self.spec.max_length)
            out = lm_eval.simple_evaluate(model=lm, tasks=list(self.spec.tasks), task_manager=_with_metadata(
                self.manager, metadata), apply_chat_template=self.spec.apply_chat_template, bootstrap_iters=0,
                log_samples=bool(judge))
        flat = flatten(out["results"])
        metrics = {**canonical(flat), **flat}
        if judge:
            del lm, model  # the evaluated model leaves the device before the judge loads
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            metrics.update(judge_saved_samples(out.pop("samples", {}), judge))
        return metrics


def judge_saved_samples(samples: dict[str, list[dict]], judge: dict[str, Any]) -> dict[str, float]:
    """Score the harmful tasks' samples with the sweep's `eval.judge` (loaded here, freed after):
    `judge_harmful_rate`, `judge_unparsed_rate`, `judge_agreement` and `judge/<task>/...` (see judges.run)."""
    from .judges import judge_metrics, load_judge

    scorer = load_judge(**judge)
    try:
        return judge_metrics(samples, scorer)
    finally:
        del scorer
        gc.collect()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold back lm-eval's per-call progress bars, warnings and `git` messages (thousands of lines
    over a sweep); they are printed after all if the evaluation fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace")[-20000:])
