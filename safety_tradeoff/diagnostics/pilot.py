r"""The pilot read-out: G_s on D_s measured part-way through a fine-tuning run.

The Case II bound says what G_s can be at most; it is loose by two to three orders of magnitude on the runs
this project has measured. What a user deciding on λ wants is where G_s will land, early.
:class:`SafetyGapCallback` measures G_s(t) = L_s(θ_t) − L_s(θ₀) on the original safety data D_s at a chosen
step of any run, with the same estimator as `safety-tradeoff diagnose` (token-weighted response NLL through
the chat template, which is what lm-eval's ``alignment_nll`` scores). A sweep with a ``diagnostics:`` block
reads it after ``pilot_fraction`` of every run's steps (``pilot_gap``), and the report sets that against the
run's final G_s (`diagnostics/check.py`): if the early value is within a factor of 2, a sweep can be pruned
after a fraction of its cost. Where it is not (penalties still pulling θ back late in the schedule), the
report says so. EMA runs are read at θ̄, the weights they are evaluated at.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from transformers import TrainerCallback

from .config import DiagnosticsConfig
from .examples import Forward, encode_pairs, forward_stats, load_pairs, make_batches, pad_id_of
from .similarity import paired_loss_gap


class SafetyGapCallback(TrainerCallback):
    """Records ``gaps[step] = L_s(θ_step) − L_s(θ₀)`` on D_s after ``fraction`` of the run's steps
    (:func:`pilot_step`; θ₀: the weights at train begin, so a resumed run is not re-anchored), and
    ``intervals[step]``, its bootstrap interval from resampling D_s's examples paired (`n_boot`, `level`,
    `seed`): the report ranks runs by their pilots and calls two runs tied where these intervals overlap.

    ``weights``: a context manager that swaps in the weights the run will be evaluated at, e.g. an EMA
    trainer's ``ema_weights`` (θ̄); by default the live weights. Single process (the sweep's runs); the model
    is scored in eval mode without gradients and put back in the mode it was in, so training is not
    disturbed (no random numbers are drawn)."""

    def __init__(self, batches: list[dict], fraction: float,
                 weights: Callable[[], AbstractContextManager] | None = None, *, n_boot: int = 200,
                 level: float = 0.95, seed: int = 0):
        if not batches:
            raise ValueError("SafetyGapCallback: no D_s batches to score")
        self.batches = batches
        self.fraction = fraction
        self.weights = weights
        self.n_boot, self.level, self.seed = n_boot, level, seed
        self.step: int | None = None
        self.theta0: Forward | None = None
        self.gaps: dict[int, float] = {}
        self.intervals: dict[int, tuple[float, float]] = {}

    def _forward(self, model: Any) -> Forward:
        device = next(model.parameters()).device
        if self.batches[0]["input_ids"].device != device:
            self.batches = [{k: v.to(device) if hasattr(v, "to") else v for k, v in b.items()} for b in self.batches]
        was_training = model.training
        model.eval()
        try:
            with self.weights() if self.weights else contextlib.nullcontext():
                return forward_stats(model, self.batches)
        finally:
            model.train(was_training)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.step = pilot_step(state.max_steps, self.fraction)
        if self.step is not None and state.global_step == 0:
            self.theta0 = self._forward(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step and self.theta0 is not None:
            now = self._forward(model)
            gap = paired_loss_gap(now.nll_sum, self.theta0.nll_sum, now.n_tokens, n_boot=self.n_boot,
                                  level=self.level, seed=self.seed)
            self.gaps[state.global_step] = gap.value
            self.intervals[state.global_step] = (gap.low, gap.high)


def pilot_step(max_steps: int | None, fraction: float) -> int | None:
    """The step at which the pilot reads G_s: ``round(fraction · max_steps)``, within [1, max_steps − 1];
    None when the read-out is off (fraction 0) or the run has a single step."""
    if fraction <= 0 or not max_steps or max_steps <= 1:
        return None
    return max(1, min(max_steps - 1, round(fraction * max_steps)))


def pilot_callback(config: DiagnosticsConfig, tokenizer: Any) -> SafetyGapCallback | None:
    """The callback a sweep attaches to each fine-tuning run (None when ``pilot_fraction`` is 0)."""
    if config.pilot_fraction <= 0:
        return None
    pairs = load_pairs(config.safety_dataset, prompt_column=config.prompt_column,
                       response_column=config.response_column, max_examples=config.max_examples, seed=config.seed)
    batches = make_batches(encode_pairs(tokenizer, pairs, config.max_length), config.batch_size, pad_id_of(tokenizer),
                           "cpu")
    return SafetyGapCallback(batches, config.pilot_fraction, n_boot=config.bootstrap, level=config.confidence,
                             seed=config.seed)
