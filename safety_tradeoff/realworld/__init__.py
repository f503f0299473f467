"""The real-model world: the project's own English safety data and a real chat model aligned on it.

>>> from safety_tradeoff.realworld import RealWorldConfig, load_or_build
>>> world = load_or_build(RealWorldConfig(seed=0))      # SmolLM2-135M-Instruct, aligned; cached
>>> world.aligned_dir, world.train_file("task_high_overlap"), world.eval_file("harmful")

Names elsewhere: `smollm2:aligned`, `smollm2@1:proxy_mid`, `smollm2:eval/alignment` (see
:mod:`safety_tradeoff.data`); lm-eval group `safety_tradeoff_smollm2`.
"""
from .build import RealWorld, load_or_build, world_data
from .config import RealWorldConfig
from .data import RealDataSizes

__all__ = ["RealDataSizes", "RealWorld", "RealWorldConfig", "load_or_build", "world_data"]
