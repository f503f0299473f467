"""`safety-tradeoff demo`: a world's default sweep, then the report.

The sweeps are packaged recipes: `trainers/recipes/sweep_toy_demo.yaml` (the toy world) and
`trainers/recipes/sweep_smollm2_demo.yaml` (the real-model world): plain SFT on the high- and the
low-overlap task mix, Case I over λ with proxy sets at graded distances, Case II over λ and EMA over β,
each seed in its own world.
"""
from __future__ import annotations

from pathlib import Path

from . import trainers_path
from .sweep_config import SweepConfig

RECIPES = Path(trainers_path()) / "recipes"
DEMO_SWEEPS = {"toy": RECIPES / "sweep_toy_demo.yaml", "smollm2": RECIPES / "sweep_smollm2_demo.yaml"}


def demo_config(world: str = "toy", seeds: int = 1, steps: int | None = None) -> tuple[SweepConfig, Path]:
    """The demo sweep of `world` for seeds 0..seeds-1 (optionally another number of fine-tuning steps)."""
    if world not in DEMO_SWEEPS:
        raise ValueError(f"unknown demo world {world!r}; known: {', '.join(DEMO_SWEEPS)}")
    config = SweepConfig.from_yaml(DEMO_SWEEPS[world])
    config.seeds = list(range(seeds))
    if steps is not None:
        config.training["max_steps"] = steps
    return config, DEMO_SWEEPS[world]
