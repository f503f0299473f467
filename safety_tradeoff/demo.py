"""`safety-tradeoff demo`: the toy world's default sweep, then the report.

The sweep is the packaged recipe `trainers/recipes/sweep_toy_demo.yaml`: plain SFT (on the high- and
the low-overlap task mix), Case I with the near and far proxy over λ, Case II over λ and EMA over β,
plus the theory diagnostics at θ₀, each seed in its own toy world.
"""
from __future__ import annotations

from pathlib import Path

from . import trainers_path
from .sweep_config import SweepConfig

DEMO_SWEEP = Path(trainers_path()) / "recipes" / "sweep_toy_demo.yaml"


def demo_config(seeds: int = 1, steps: int | None = None) -> SweepConfig:
    """The demo sweep for seeds 0..seeds-1 (and optionally another number of fine-tuning steps)."""
    config = SweepConfig.from_yaml(DEMO_SWEEP)
    config.seeds = list(range(seeds))
    if steps is not None:
        config.training["max_steps"] = steps
    return config
