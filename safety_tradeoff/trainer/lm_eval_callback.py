# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Evaluation during training: lm-eval tasks on the live model (and on θ̄ when the trainer keeps an EMA)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

import torch.distributed as dist
from transformers import Trainer, TrainerCallback

logger = logging.getLogger(__name__)


class LmEvalCallback(TrainerCallback):
    """Runs lm-eval tasks on the model being trained, every `every_n_steps` optimizer steps and at the end of
    training, and logs the results through the trainer (console, `trainer_state.json`, TensorBoard/W&B) as
    `lm_eval/<task>/<metric>` (`lm_eval_ema/...` for θ̄ when the trainer has an EMA).

    Runs on the main process only, through `HFLM` on the in-memory model, so it suits one device and DDP (where
    every rank holds the full model). Every rank reaches the evaluation point (the end of an optimizer step); the
    other ranks then wait for the main process in a barrier of their own (a gloo group with `barrier_timeout_s`),
    not in the next training collective, whose timeout (`ddp_timeout`) a long evaluation would exceed. Under FSDP or
    DeepSpeed ZeRO-3 the parameters are sharded and `HFLM` cannot
    generate from one rank: the callback then warns once and does nothing; evaluate saved checkpoints with
    `lm_eval` in a separate process instead. lm-eval's request cache is never used (it is keyed on requests, not
    weights).

    Example:

    ```python
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=task, align_dataset=proxy, processing_class=tok)
    trainer.add_callback(LmEvalCallback(trainer, tasks=["safety_tradeoff_toy_harmful"], every_n_steps=50))
    ```

    Args:
        trainer: The trainer whose model is evaluated and through which results are logged.
        tasks: lm-eval task or group names (this project's tasks are always on the include path).
        every_n_steps: Evaluate every this many optimizer steps; `None`: only at the end of training.
        batch_size: `HFLM` batch size.
        limit: Documents per task (lm-eval's `limit`), to keep evaluation cheap during training.
        metadata: Task metadata (e.g. `{"toy_world": ...}` or Hub-set paths); the tokenizer is added.
        apply_chat_template: Evaluate through the chat template (what the safety tasks are meant for).
        barrier_timeout_s: How long the other ranks wait for the main process's evaluation (multi-process runs).
    """

    def __init__(self, trainer, tasks: Sequence[str], every_n_steps: int | None = None, batch_size: int = 32,
                 limit: int | float | None = None, metadata: dict[str, Any] | None = None,
                 apply_chat_template: bool = True, barrier_timeout_s: float = 6 * 3600):
        from ..task_manager import task_manager

        if every_n_steps is not None and every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be positive or None, got {every_n_steps}")
        self.trainer = trainer
        self.tasks = list(tasks)
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.limit = limit
        self.apply_chat_template = apply_chat_template
        meta = {**(metadata or {}), "tokenizer": trainer.processing_class}
        self.manager = task_manager(self.tasks, meta, what="LmEvalCallback tasks")  # unknown names: ValueError
        self._warned = False
        self.barrier_timeout_s = barrier_timeout_s
        self._group = None  # the gloo group the other ranks wait in (created on first use, by every rank)

    def _sharded(self) -> bool:
        t = self.trainer
        zero3 = t.is_deepspeed_enabled and t.accelerator.state.deepspeed_plugin.zero_stage == 3
        return bool(t.is_fsdp_enabled or zero3)

    def _evaluate(self) -> dict[str, float]:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        from ..evaluation import flatten, quiet_stderr

        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        try:
            with quiet_stderr():
                lm = HFLM(pretrained=model, tokenizer=self.trainer.processing_class, batch_size=self.batch_size)
                out = lm_eval.simple_evaluate(model=lm, tasks=self.tasks, task_manager=self.manager,
                                              apply_chat_template=self.apply_chat_template, limit=self.limit,
                                              bootstrap_iters=0, log_samples=False)
        finally:
            model.train(was_training)
        return flatten(out["results"])

    def _run(self, state) -> None:
        if self._sharded():
            if not self._warned:
                logger.warning("LmEvalCallback: parameters are sharded (FSDP/ZeRO-3); evaluate saved checkpoints "
                               "with lm_eval in a separate process instead")
                self._warned = True
            return
        try:
            if state.is_world_process_zero:
                self._log(self._evaluate_live_and_ema())
        finally:
            self._wait_for_main_process()

    def _evaluate_live_and_ema(self) -> dict[str, float]:
        logs = {f"lm_eval/{k}": v for k, v in self._evaluate().items()}
        ema = getattr(self.trainer, "ema_weights", None)
        if ema is not None and getattr(self.trainer, "_ema_shadow", None) is not None:
            with ema():
                logs.update({f"lm_eval_ema/{k}": v for k, v in self._evaluate().items()})
        return logs

    def _log(self, logs: dict[str, float]) -> None:
        # `Trainer.log` itself, not the trainer's: SFTTrainer's `log` would add the train metrics it has pending for
        # the next training log (entropy, token accuracy, ...) to this record and clear them. And logging resets
        # `control.should_log`, which would cancel the training log of this step (on the main process only: the
        # other ranks would then enter that log's reduction alone); it is kept as it was.
        control = self.trainer.control
        should_log = control.should_log
        try:
            Trainer.log(self.trainer, logs)
        finally:
            control.should_log = should_log

    def _wait_for_main_process(self) -> None:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        if self._group is None:
            self._group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=self.barrier_timeout_s))
        dist.barrier(group=self._group)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0 and state.global_step < state.max_steps:
            self._run(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._run(state)
