# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""EMAs of the weights at several decays on one run's trajectory, beside whatever the run trains.

What `EMASFTTrainer` keeps for one `ema_beta`, kept here for several, for a run that is not itself an EMA run: the
sweep trains plain SFT once for it and all its EMA runs (`sweep_shared.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from .ema_shadow import EMAShadow
from .placement import trainable_named_parameters


class EMACompanions(TrainerCallback):
    """θ̄ at each of `betas` on the run's own trajectory: from θ₀ when training starts, θ̄ ← β·θ̄ + (1 − β)·θ after
    every optimizer step (`on_optimizer_step`, where `EMASFTTrainer` updates its own), fp32 shadows placed like the
    parameters. For the sweep's single-process, fresh runs (a resumed run is refused: its θ̄ are not in the
    checkpoint)."""

    def __init__(self, betas: Sequence[float]):
        self.betas = list(betas)
        self.shadows: dict[float, Any] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step != 0:
            raise ValueError("EMACompanions: a resumed run has no companion EMAs to continue; start it afresh")
        named = trainable_named_parameters(model)
        self.shadows = {beta: EMAShadow(named, torch.float32) for beta in self.betas}

    def on_optimizer_step(self, args, state, control, **kwargs):
        for beta, shadow in self.shadows.items():
            shadow.update(1.0 - beta)

    @contextlib.contextmanager
    def weights(self, beta: float) -> Iterator[None]:
        """θ̄ at `beta` in the model for the block; the live weights are restored bit for bit afterwards."""
        shadow = self.shadows[beta]
        backup = shadow.swap_in()
        try:
            yield
        finally:
            shadow.restore(backup)
