"""What defines a toy world, and the cache key derived from it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .data import DATA_VERSION, DataSizes


# The modules whose source decides a world's bytes (evaluation and CLI code are deliberately absent).
_WORLD_CODE = ("data.py", "tokenizer.py", "config.py", "build.py", "training.py")


@dataclass
class ToyWorldConfig:
    """Everything that determines a toy world's data, tokenizer and aligned model.

    Defaults are the settings measured to show the phenomenon on every seed tried (docs/worlds.md): hidden
    64 × 2 layers is the smallest model that learns the skills. Alignment depth is the sensitive knob: with 150
    alignment steps plain fine-tuning erased the refusals completely (97.5% harmful on 3 seeds, a saturated world
    that cannot show optimisation choices or proxy data deciding how much is lost); the prototype, an earlier
    version of this world, found that 400 steps hid the trade-off; in this world 400 steps leave it partial
    (0% → 9–63% harmful over seeds 0–2, issue #15).

    Parameters:
        seed: Seeds data generation, model initialisation and training.
        sizes: Split sizes and mixing fractions of the generated data (`DataSizes`).
        hidden_size, num_layers, num_heads, intermediate_size: The tiny Llama's shape.
        max_length: Longest tokenised conversation (examples are far shorter).
        batch_size: Per-step batch for pretraining and alignment.
        pretrain_steps, pretrain_lr: The "base model" stage (skills + compliance with harmful requests).
        align_steps, align_lr: The safety-alignment stage on D_s (refusals + kept benign skills).
    """

    seed: int = 0
    sizes: DataSizes = field(default_factory=DataSizes)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_length: int = 128
    batch_size: int = 32
    pretrain_steps: int = 800
    pretrain_lr: float = 2e-3
    align_steps: int = 400
    align_lr: float = 1e-3

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ToyWorldConfig:
        """Build from a plain mapping (YAML, CLI), rejecting unknown keys by name."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        sizes = values.pop("sizes", {}) or {}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown toy-world config key(s): {', '.join(unknown)}; "
                             f"known keys: {', '.join(sorted(known))}")
        size_keys = {f.name for f in dataclasses.fields(DataSizes)}
        bad = sorted(set(sizes) - size_keys)
        if bad:
            raise ValueError(f"unknown toy-world sizes key(s): {', '.join(bad)}; "
                             f"known keys: {', '.join(sorted(size_keys))}")
        config = cls(sizes=DataSizes(**sizes), **values)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"toy-world seed must be a non-negative integer, got {self.seed!r}")
        for name in ("hidden_size", "num_layers", "num_heads", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"toy-world {name} must be positive, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Cache key: config + generator version + the source of the code that builds the world.

        Hashing the source (not just the arguments) is what keeps a cached model from silently
        outliving a change to the data or tokenizer code (a stale cache once remapped 448 of 458
        token ids under a cached model in the prototype).
        """
        here = Path(__file__).parent
        payload = {
            "config": self.to_dict(),
            "data_version": DATA_VERSION,
            "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in _WORLD_CODE},
            "libs": {lib: ".".join(version(lib).split(".")[:2]) for lib in ("torch", "transformers", "trl")},
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
