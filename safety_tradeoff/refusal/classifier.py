"""A small logistic regression over :mod:`.features`, shipped as JSON (``classifier.json``).

Trained by :mod:`.train` on the project's development labels only (never on the frozen test split);
scoring is a sparse dot product in pure Python: microseconds per response, no dependency.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .features import Reading

WEIGHTS_FILE = Path(__file__).with_name("classifier.json")


@dataclass(frozen=True)
class LogisticModel:
    """Weights of the dense cue features and of the n-grams, a bias and the decision threshold."""
    bias: float
    dense: dict[str, float]
    ngrams: dict[str, float]
    threshold: float = 0.5
    trained_on: tuple[str, ...] = ()

    def logit(self, reading: Reading) -> float:
        z = self.bias + sum(w * reading.dense.get(k, 0.0) for k, w in self.dense.items())
        # only the response's n-grams that have a weight: a set intersection in C, then a short sum
        return z + sum(map(self.ngrams.__getitem__, reading.ngrams & self.ngrams.keys()))

    def probability(self, reading: Reading) -> float:
        """P(refusal) under the model."""
        z = self.logit(reading)
        return 1 / (1 + math.exp(-z)) if z > -30 else 0.0

    def to_json(self) -> str:
        return json.dumps({"bias": self.bias, "threshold": self.threshold, "trained_on": list(self.trained_on),
                           "dense": self.dense, "ngrams": self.ngrams}, indent=0, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LogisticModel:
        d = json.loads(text)
        return cls(float(d["bias"]), {k: float(v) for k, v in d["dense"].items()},
                   {k: float(v) for k, v in d["ngrams"].items()}, float(d.get("threshold", 0.5)),
                   tuple(d.get("trained_on", ())))


@lru_cache(maxsize=1)
def shipped_model() -> LogisticModel:
    """The model shipped with the package (read once)."""
    try:
        return LogisticModel.from_json(WEIGHTS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"refusal classifier weights {WEIGHTS_FILE} are missing or unreadable ({e}); "
                           "reinstall safety-tradeoff or run python -m safety_tradeoff.refusal.train") from None
