# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""The safety trainers' own metrics (`task_loss`, `align_loss`, `penalty`, distances, ...): summed locally over the
logging window, reduced across ranks in one collective per log, handed to SFTTrainer's metric store so that they reach
`log_history`, `trainer_state.json` and every `report_to` integration with SFTTrainer's own."""

from __future__ import annotations

import torch
from transformers.trainer_utils import IntervalStrategy


class StepMetricsMixin:
    """Mixed into `SafetyTrainerBase` before `SFTTrainer` (its `log` runs first)."""

    _window: dict
    _log_values: dict
    _window_steps: int

    def _add_step_metric(self, name: str, value) -> None:
        """Add a contribution to the current step's value of a metric (the window mean is logged)."""
        value = torch.as_tensor(value, dtype=torch.float32, device=self.args.device).detach().reshape(())
        current = self._window.get(name)
        self._window[name] = value if current is None else current + value

    def _set_log_metric(self, name: str, value) -> None:
        """Record a value measured at the logging step itself (logged as is, not averaged over the window)."""
        value = torch.as_tensor(value, dtype=torch.float32, device=self.args.device)
        self._log_values[name] = value.detach().reshape(())

    def _is_logging_step(self) -> bool:
        """Whether the optimizer step in progress ends with a training log (`DefaultFlowCallback`'s rule), so that
        values only logged can be computed on those steps alone."""
        step, args = self.state.global_step + 1, self.args
        if args.logging_strategy != IntervalStrategy.STEPS:
            return True
        return (args.logging_first_step and step == 1) or step % self.state.logging_steps == 0

    def _flush_window_metrics(self) -> None:
        window = {n: v / self._window_steps for n, v in self._window.items()} if self._window_steps > 0 else {}
        window.update(self._log_values)
        if window:
            names = sorted(window)
            values = torch.stack([window[n].to(self.args.device) for n in names])
            if self.accelerator.num_processes > 1:  # one collective for all of them
                values = self.accelerator.reduce(values, reduction="mean")
            for name, value in zip(names, values.tolist(), strict=True):
                self._metrics["train"][name].append(value)
        self._window.clear()
        self._log_values.clear()
        self._window_steps = 0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and "loss" in logs:  # a training log (every rank gets here: reductions are safe)
            self._flush_window_metrics()
            for name, value in self._distance_metrics().items():
                self._metrics["train"][name].append(value)
        super().log(logs, start_time)

    def _distance_metrics(self) -> dict[str, float]:
        """Values measured at each training log (cooperative)."""
        return {}
