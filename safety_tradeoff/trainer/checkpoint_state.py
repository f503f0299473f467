# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""The extra state a safety trainer writes into every checkpoint, and what a resume does when the config changed.

Files (beside the Trainer's own): `safety_anchor.safetensors` (θ₀ by parameter name), `ema_state.pt` (θ̄ by parameter
name) and `safety_trainer_state.json` (scalars: format version, world size, dual λ, proxy-loader position, EMA phase,
and the settings they depend on). On resume each mechanism compares the saved settings with the current config and
either follows the new config, where that is well defined (saying so in the log), or refuses naming the field.
"""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger(__name__)

ANCHOR_NAME = "safety_anchor.safetensors"
"""θ₀ (the trainable parameters at the start of training, by parameter name), written in every checkpoint."""
EMA_NAME = "ema_state.pt"
"""EMA shadow θ̄ (parameter name → tensor), written in every checkpoint; loaded with `weights_only=True`."""
STATE_NAME = "safety_trainer_state.json"
"""Scalar state: dual λ, proxy-loader position, EMA phase, which tensors the checkpoint holds."""

STATE_FORMAT_VERSION = 2
"""1: first release (no settings recorded). 2: adds the world size, the Case I mode and proxy batch size, the EMA
settings and phase, and the Case II distance kind."""


def read_state(checkpoint: str) -> dict:
    """The JSON state of `checkpoint` (`{}` if it has none); refuses a format newer than this version reads."""
    path = os.path.join(checkpoint, STATE_NAME)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        state = json.load(f)
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > STATE_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version!r}, written by a newer safety-tradeoff; this version reads formats up "
            f"to {STATE_FORMAT_VERSION}. Upgrade safety-tradeoff to resume from it."
        )
    return state


def write_state(checkpoint: str, state: dict) -> None:
    with open(os.path.join(checkpoint, STATE_NAME), "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)


def note_followed(checkpoint: str, field: str, saved, current, consequence: str) -> None:
    """Log that a setting changed since `checkpoint` and the resumed run follows the new value."""
    logger.warning("Resuming from %s with `%s` changed from %r to %r: %s", checkpoint, field, saved, current,
                   consequence)


def changed_setting_error(checkpoint: str, field: str, saved, current, why: str, fix: str) -> ValueError:
    """The error refusing a resume because `field` changed since `checkpoint` in a way the state cannot follow."""
    return ValueError(f"Resuming from {checkpoint} with `{field}` changed from {saved!r} to {current!r}: {why} {fix}")
