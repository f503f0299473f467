"""Evaluate a checkpoint with lm-eval (this project's tasks plus any lm-eval benchmark), in-process.

The model is loaded fresh from its folder for every evaluation and lm-eval's request cache is off:
lm-eval keys that cache on the request, not the weights, so a cached answer could belong to another
checkpoint. With a judge (`eval.judge`), samples are logged, the evaluated model is freed, and the
judge scores the harmful tasks' responses in the same call (`judges.run.judge_metrics`); the judge is
loaded once per evaluator (:class:`SweepJudge`), and a judge problem never fails the run.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .lm_eval_results import canonical, flatten
from .toyworld.marker import world_dir_of

if TYPE_CHECKING:  # a type only: importing sweep_config here closes the circle sweep_config → trainer → evaluation
    from .sweep_config import EvalSpec


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


class LmEvalEvaluator:
    """Callable: model folder -> metrics (canonical names + every `task/metric` lm-eval reported)."""

    def __init__(self, spec: EvalSpec):
        from .task_manager import task_manager

        self.spec = spec
        judge = getattr(spec, "judge", None)
        self.judge = SweepJudge(judge) if judge else None  # loaded on first use, after the evaluated model left
        self.manager = task_manager(spec.tasks, spec.metadata, what="eval.tasks")  # unknown names: ValueError

    def __call__(self, model_dir: str) -> dict[str, float]:
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
        judge = self.judge
        with quiet_stderr():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.spec.batch_size,
                      max_length=self.spec.max_length)
            out = run_tasks(lm, _with_metadata(self.manager, metadata), list(self.spec.tasks),
                            apply_chat_template=self.spec.apply_chat_template, log_samples=judge is not None)
        flat = flatten(out["results"])
        metrics = {**canonical(flat), **flat}
        if judge is not None:
            del lm, model  # the evaluated model leaves the device before the judge loads
            _free_memory()
            metrics.update(judge(out.pop("samples", {}), where=model_dir))
        return metrics


def run_tasks(lm: Any, manager: Any, tasks: list[str], *, apply_chat_template: bool, log_samples: bool) -> dict:
    """`lm_eval.simple_evaluate` for a ready model (`HFLM`), without stderr bootstraps: the same seeds, task loading
    and zero-shot default, then lm-eval's `evaluate`, whose `results` and `samples` it returns.

    Not `simple_evaluate` itself: it ends by describing the environment (`results["pretty_env_info"]`, through
    torch's `collect_env`, which runs `pip list` in a subprocess), half a second of CPU per evaluated model that a
    sweep of small models pays on every run and whose output it does not keep. Checked against `simple_evaluate` in
    tests/test_sweep.py."""
    import random

    import numpy as np
    import torch
    from lm_eval.defaults import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED
    from lm_eval.evaluator import evaluate

    random.seed(DEFAULT_RANDOM_SEED)
    np.random.seed(DEFAULT_OTHER_SEED)
    torch.manual_seed(DEFAULT_OTHER_SEED)
    loaded = manager.load(tasks)
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
    return evaluate(lm=lm, task_dict=loaded, bootstrap_iters=0, log_samples=log_samples,
                    apply_chat_template=apply_chat_template, fewshot_as_multiturn=True, verbosity=None)


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class SweepJudge:
    """The sweep's `eval.judge` (keys: `judges.config.JUDGE_KEYS`): samples -> `judge_harmful_rate`,
    `judge_unparsed_rate`, `judge_agreement` and `judge/<task>/...` (see `judges.run.judge_metrics`).

    Loaded on first use (after the evaluated model has left the device) and kept for the evaluator's later
    runs. Between runs a judge on a GPU waits in CPU memory, so training and the next evaluation get the
    GPU back; it returns to its GPU when that has room (checked, like the size check at loading). A judge
    problem (a judge that cannot load or does not fit, a sample it refuses, an error while judging) never
    fails the run: the keyword metrics stay, `judge_failed: 1.0` is added, one line on stderr says why, and
    the judge is dropped (the next run loads it again)."""

    def __init__(self, config: dict[str, Any]):
        self.config = dict(config)
        self.scorer: Any = None
        self.device: str | None = None  # where the judge judges (it waits on the CPU between runs)

    def __call__(self, samples: dict[str, list[dict]], where: str = "") -> dict[str, float]:
        from .judges import judge_metrics

        reason = None
        try:
            metrics = judge_metrics(samples, self._ready())
        except Exception as err:  # noqa: BLE001 - the keyword metrics of the run are kept
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:1000]
        if reason is not None:  # out of the except block: the traceback no longer holds the judge's tensors
            self.release()
            print(f"warning: judge {self.config.get('model')} failed{f' on {where}' if where else ''}; the run keeps "
                  f"its keyword metrics, with judge_failed=1.0: {reason}", file=sys.stderr, flush=True)
            return {"judge_failed": 1.0}
        try:
            self._park()
        except Exception:  # noqa: BLE001 - a judge that cannot move is loaded again next time
            self.release()
        return metrics

    def _ready(self) -> Any:
        from .judges import load_judge

        if self.scorer is None:
            self.scorer = load_judge(**self.config)
            self.device = str(self.scorer.model.device)
        elif str(self.scorer.model.device) != self.device:  # parked on the CPU: back to its GPU, if it fits
            from .judges.adapters import GiB, JudgeError, free_bytes

            model = self.scorer.model
            need = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
            have = free_bytes(self.device)
            if need * 1.2 > have:
                raise JudgeError(f"judge {self.config.get('model')} needs ~{need * 1.2 / GiB:.1f} GiB on "
                                 f"{self.device}, which has {have / GiB:.1f} GiB free after this run's evaluation")
            model.to(self.device)
        return self.scorer

    def _park(self) -> None:
        if self.scorer is not None and str(self.device).startswith("cuda"):
            self.scorer.model.to("cpu")
            _free_memory()

    def release(self) -> None:
        """Drop the judge (its memory is freed); the next call loads it again."""
        self.scorer = self.device = None
        _free_memory()


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
