"""What defines a real-model world, and the cache key derived from it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..named_models import NAMED_MODELS, SOURCES
from .data import DATA_VERSION, RealDataSizes

# The modules whose source decides a world's bytes (evaluation and CLI code are deliberately absent).
_WORLD_CODE = ("templates.py", "data.py", "hub_shaped.py", "config.py", "build.py")


@dataclass
class RealWorldConfig:
    """Everything that determines a real-model world: its English data and its aligned model.

    The base model is a real chat model known by name (:mod:`safety_tradeoff.named_models`); alignment is
    plain supervised fine-tuning (TRL's `SFTTrainer`, completion-only loss) on the world's D_s, kept
    short on purpose: as in the toy world, a deeply aligned model is robust to benign fine-tuning and
    hides the trade-off the world exists to show.

    Parameters:
        seed: Seeds data generation and alignment.
        base_model: Name of the base chat model (`smollm2`).
        model_source: Where its weights come from: `gguf` (default: the pinned GGUF release, the same
            weights on every machine, so measured numbers reproduce), `hub` or `auto`.
        sizes: Split sizes and mixing fractions of the generated data (`RealDataSizes`).
        align_steps, align_lr, batch_size: The alignment run (constant learning rate, AdamW).
        max_length: Longest tokenised conversation (examples are far shorter).
    """

    seed: int = 0
    base_model: str = "smollm2"
    model_source: str = "gguf"
    sizes: RealDataSizes = field(default_factory=RealDataSizes)
    align_steps: int = 60
    align_lr: float = 1e-4
    batch_size: int = 8
    max_length: int = 256

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RealWorldConfig:
        """Build from a plain mapping (YAML, CLI), rejecting unknown keys by name."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        sizes = values.pop("sizes", {}) or {}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown real-model world key(s): {', '.join(unknown)}; known keys: "
                             f"{', '.join(sorted(known))}")
        size_keys = {f.name for f in dataclasses.fields(RealDataSizes)}
        bad = sorted(set(sizes) - size_keys)
        if bad:
            raise ValueError(f"unknown real-model world sizes key(s): {', '.join(bad)}; known keys: "
                             f"{', '.join(sorted(size_keys))}")
        config = cls(sizes=RealDataSizes(**sizes), **values)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"real-model world seed must be a non-negative integer, got {self.seed!r}")
        if self.base_model not in NAMED_MODELS:
            raise ValueError(f"base_model {self.base_model!r} is not a named model; known: {', '.join(NAMED_MODELS)}")
        if self.model_source not in SOURCES:
            raise ValueError(f"model_source must be one of {', '.join(SOURCES)}, got {self.model_source!r}")
        for name in ("align_steps", "batch_size", "max_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (0 if name == "align_steps" else 1):
                raise ValueError(f"real-model world {name} must be a {'non-negative' if name == 'align_steps' else 'positive'}"
                                 f" integer, got {getattr(self, name)!r}")
        if not self.align_lr > 0:
            raise ValueError(f"real-model world align_lr must be positive, got {self.align_lr!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_fingerprint(self) -> str:
        """Key of the data alone (seed, sizes, generator code): evaluation data need no model."""
        return _digest({"seed": self.seed, "sizes": dataclasses.asdict(self.sizes), "data_version": DATA_VERSION,
                        "code": _code_hashes(("templates.py", "data.py", "hub_shaped.py", "build.py"))})

    def fingerprint(self, base_identity: str) -> str:
        """Key of the aligned model: config, data, the base weights' identity and the building code."""
        libs = {lib: ".".join(version(lib).split(".")[:2]) for lib in ("torch", "transformers", "trl")}
        return _digest({"config": self.to_dict(), "data_version": DATA_VERSION, "code": _code_hashes(_WORLD_CODE),
                        "base": base_identity, "libs": libs})


def _code_hashes(names: tuple[str, ...]) -> dict[str, str]:
    here = Path(__file__).parent
    return {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in names}


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
