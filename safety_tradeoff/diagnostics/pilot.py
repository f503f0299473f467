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

Case II penalty runs also get a prediction of where they settle (``pilot_eq_gap``, `equilibrium.py`): the
minimiser of their own objective along the pilot's direction from θ₀ (the ray), or over per-row shares of the
pilot's displacement (the rows), or the geometric mean of the two, by how far the rest of the schedule will still
relax θ (κ); and G_s there.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from transformers import TrainerCallback

from .config import DiagnosticsConfig
from .equilibrium import (RELAXED_EFOLDS, SETTLED_EFOLDS, RayEquilibrium, RowEquilibrium, forecast, ray_equilibrium,
                          relaxation_efolds, row_equilibrium)
from .examples import (DiagnosticsDataError, Forward, encode_pairs, forward_stats, load_pairs, make_batches,
                       pad_id_of)
from .similarity import paired_loss_gap


class SafetyGapCallback(TrainerCallback):
    """Records ``gaps[step] = L_s(θ_step) − L_s(θ₀)`` on D_s after ``fraction`` of the run's steps
    (:func:`pilot_step`; θ₀: the weights at train begin, so a resumed run is not re-anchored), and
    ``intervals[step]``, its bootstrap interval from resampling D_s's examples paired (`n_boot`, `level`,
    `seed`): the report ranks runs by their pilots and calls two runs tied where these intervals overlap.
    ``final`` holds the same measurement at the end of training, (G_s, low, high): the interval of the measured
    G_s, with which the report tells measured differences from noise.

    ``weights``: a context manager that swaps in the weights the run will be evaluated at, e.g. an EMA
    trainer's ``ema_weights`` (θ̄); by default the live weights. Single process (the sweep's runs); the model
    is scored in eval mode without gradients and put back in the mode it was in, so training is not
    disturbed (no random numbers are drawn).

    After :meth:`predict_equilibrium` (Case II penalty runs), the pilot step also records ``efolds[step]``, the
    relaxation κ still ahead of the run (None where the optimizer's state cannot be read), where κ < 4 (or unknown)
    ``equilibria[step]``, the :class:`RayEquilibrium` of the run's objective along θ₀ → θ_step, and where κ ≥ 1
    ``rows[step]``, the :class:`RowEquilibrium`; :meth:`prediction` picks between them. It keeps a copy of θ₀'s
    trainable weights from train begin for that."""

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
        self.anchor_lambda: float | None = None
        self.task_batches: list[dict] = []
        self.params0: list[Any] = []
        self.equilibria: dict[int, RayEquilibrium] = {}
        self.rows: dict[int, RowEquilibrium] = {}
        self.efolds: dict[int, float | None] = {}
        self.anchor_mode = "grad"
        self.final: tuple[float, float, float] | None = None  # (G_s, low, high) at the end of training

    def predict_equilibrium(self, anchor_lambda: float, task_batches: list[dict], anchor_mode: str = "grad") -> None:
        """Also predict the Case II equilibrium at the pilot step (penalty `anchor_lambda` applied as `anchor_mode`,
        the run's task data)."""
        if not task_batches:
            raise ValueError("predict_equilibrium: no task batches to score")
        self.anchor_lambda, self.task_batches = float(anchor_lambda), task_batches
        self.anchor_mode = anchor_mode

    def prediction(self, step: int) -> tuple[float, float] | None:
        """(G_s, ‖θ − θ₀‖) where the run is predicted to settle (:func:`equilibrium.forecast`)."""
        return forecast(self.equilibria.get(step), self.rows.get(step), self.efolds.get(step))

    def _forward(self, model: Any) -> Forward:
        self.batches = _on(self.batches, next(model.parameters()).device)
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
            if self.anchor_lambda is not None and getattr(model, "peft_config", None):
                # the penalty may act on the merged LoRA update (lora_delta), which the ray does not model
                print("pilot: no Case II equilibrium prediction for a PEFT model (full-weight runs only)")
            elif self.anchor_lambda is not None:
                self.params0 = [p.detach().clone() for p in self._trainable(model)]

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if state.global_step == self.step and self.theta0 is not None:
            gap = self._gap(model)
            self.gaps[state.global_step] = gap.value
            self.intervals[state.global_step] = (gap.low, gap.high)
            if self.params0:
                self._equilibria(model, state, optimizer, lr_scheduler)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.step is not None and self.theta0 is not None:
            gap = self._gap(model)
            self.final = (gap.value, gap.low, gap.high)

    def _gap(self, model: Any) -> Any:
        now = self._forward(model)
        return paired_loss_gap(now.nll_sum, self.theta0.nll_sum, now.n_tokens, n_boot=self.n_boot, level=self.level,
                               seed=self.seed)

    @staticmethod
    def _trainable(model: Any) -> list[Any]:
        return [p for p in model.parameters() if p.requires_grad]

    def _equilibria(self, model: Any, state: Any, optimizer: Any, lr_scheduler: Any) -> None:
        step, params = state.global_step, self._trainable(model)
        self.task_batches = _on(self.task_batches, self.params0[0].device)
        kappa = None if optimizer is None else relaxation_efolds(
            optimizer, lr_scheduler, params, self.anchor_lambda, step, state.max_steps, self.anchor_mode)
        self.efolds[step] = kappa
        was_training = model.training
        model.eval()
        try:
            if kappa is None or kappa < SETTLED_EFOLDS:  # beyond, the forecast is the rows' alone
                self.equilibria[step] = ray_equilibrium(model, self.params0, params, self.anchor_lambda,
                                                        self.task_batches, self.batches, self.theta0.loss)
            if kappa is not None and kappa >= RELAXED_EFOLDS:
                self.rows[step] = row_equilibrium(model, self.params0, params, self.anchor_lambda,
                                                  self.task_batches, self.batches, self.theta0.loss)
        finally:
            model.train(was_training)


def _on(batches: list[dict], device: Any) -> list[dict]:
    """`batches` on `device` (moved once, on first use: they are built on the CPU before the model is placed)."""
    if batches[0]["input_ids"].device == device:
        return batches
    return [{k: v.to(device) if hasattr(v, "to") else v for k, v in b.items()} for b in batches]


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
    return SafetyGapCallback(_batches(config, tokenizer, pairs), config.pilot_fraction, n_boot=config.bootstrap,
                             level=config.confidence, seed=config.seed)


def task_batches_for(config: DiagnosticsConfig, tokenizer: Any, task_spec: str) -> list[dict] | None:
    """A seeded sample of a run's task data, encoded like D_s, for :meth:`SafetyGapCallback.predict_equilibrium`;
    None (with the reason printed) when the task data are not (prompt, response) pairs the diagnostics can read:
    the prediction is then skipped, never the run."""
    try:
        pairs = load_pairs(task_spec, max_examples=config.max_examples, seed=config.seed)
    except DiagnosticsDataError as err:
        print(f"pilot: no Case II equilibrium prediction for {task_spec}: {err}")
        return None
    return _batches(config, tokenizer, pairs)


def _batches(config: DiagnosticsConfig, tokenizer: Any, pairs: list[tuple[str, str]]) -> list[dict]:
    """(prompt, response) pairs encoded and batched the way `safety-tradeoff diagnose` scores them."""
    return make_batches(encode_pairs(tokenizer, pairs, config.max_length), config.batch_size, pad_id_of(tokenizer),
                        "cpu")
