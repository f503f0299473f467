"""Settings of `safety-tradeoff diagnose` (and of a sweep's `diagnostics:` block)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DiagnosticsConfig:
    r"""What to measure at the aligned weights θ₀, and on how much data.

    Data
        safety_dataset (`str`): the *original* safety data D_s (harmful prompt → refusal) whose loss
            gap G_s = L_s(θ) − L_s(θ₀) the sweep measures: a dataset spec (Hub id, local file,
            ``toyworld[@seed]:eval/alignment``). Required.
        prompt_column / response_column (`str` or `None`): columns of every dataset; `None` finds
            ``prompt`` (or ``messages``) and ``completion`` / ``response`` / ``reference`` / ``chosen``.
        max_examples (`int`, 256): examples drawn (seeded) from each dataset; the confidence
            intervals say what this costs in precision.
        batch_size (`int`, 32) / max_length (`int`, 512): forward-pass batching and truncation.

    Similarity and overlap (kernel statistics on the model's mean-pooled last hidden states)
        bootstrap (`int`, 200): bootstrap resamples for every confidence interval.
        confidence (`float`, 0.95): level of the intervals.

    Cross-loss (a short fit of θ₀ on each proxy set, then L_s on D_s: Case I's λ → ∞ limit)
        fit_steps (`int`, 50): AdamW steps of the fit; 0 skips the cross-loss (large models).
        fit_learning_rate (`float`, 1e-4) / fit_batch_size (`int`, 16): the fit's optimiser settings;
            use the learning rate you fine-tune with.

    Landscape (gradient norm and top Hessian eigenvalue of L_s at θ₀, by Hessian-vector products)
        hessian_examples (`int`, 128): examples of D_s the gradient and Hessian are taken on.
        hessian_iterations (`int`, 20) / hessian_tol (`float`, 1e-3): iteration budget and stopping rule.
        hessian_method (`str`, "lanczos"): "lanczos" (converges in fewer Hessian-vector products and never
            stops early on a slowly creeping estimate; keeps one parameter-sized vector per iteration) or
            "power" (two vectors in all: for full-parameter estimates on large models). Both can only
            under-state |λ|max, so check `converged` in the output.
        hessian_params (`str`, "all"): "all" parameters, or "lora" (rank `lora_r` adapters on the
            attention projections) for models too large for full-parameter Hessian-vector products.
        lora_r (`int`, 8): LoRA rank when `hessian_params="lora"`.

    Pilot read-out (sweeps only: measured during each fine-tuning run, not at θ₀)
        pilot_fraction (`float`, 1/3): after this fraction of a run's `max_steps`, its G_s on D_s is
            measured and recorded (`pilot_gap`); the report sets it against the run's final G_s, so a
            sweep can be judged, and pruned, after a fraction of its cost. 0 turns it off. EMA runs are
            read at θ̄ (the weights they are evaluated at).
        pilot_equilibrium (`bool`, True): at the pilot step of a Case II penalty run, also predict where it
            settles (`pilot_eq_gap`): the minimiser of its objective along θ₀ → θ_pilot, over per-row shares of
            θ_pilot − θ₀, or the geometric mean of the two, by how far the rest of the schedule will still relax θ,
            and G_s there (`diagnostics/equilibrium.py`; forward passes on `max_examples` of the run's task data, 20 L-BFGS
            iterations for the rows, and a copy of θ₀'s trainable weights held during the run). The pilot also
            measures G_s at the end of every run with its interval (`final_gap_low`/`final_gap_high`), with which
            the report tells measured differences from noise.

    Output
        radii (`list[float]`, []): radii r at which to print the Case II bound on G_s.
        seed (`int`, 0): sampling, bootstrap and power-iteration seed.
    """

    safety_dataset: str
    prompt_column: str | None = None
    response_column: str | None = None
    max_examples: int = 256
    batch_size: int = 32
    max_length: int = 512
    bootstrap: int = 200
    confidence: float = 0.95
    fit_steps: int = 50
    fit_learning_rate: float = 1e-4
    fit_batch_size: int = 16
    hessian_examples: int = 128
    hessian_iterations: int = 20
    hessian_tol: float = 1e-3
    hessian_method: str = "lanczos"
    hessian_params: str = "all"
    lora_r: int = 8
    pilot_fraction: float = 1 / 3
    pilot_equilibrium: bool = True
    radii: list[float] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("max_examples", "batch_size", "max_length", "bootstrap", "fit_batch_size", "hessian_examples",
                    "hessian_iterations", "lora_r")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if isinstance(self.fit_steps, bool) or not isinstance(self.fit_steps, int) or self.fit_steps < 0:
            raise ValueError(f"fit_steps: must be an integer >= 0 (0 skips the cross-loss), got {self.fit_steps!r}")
        for name in ("fit_learning_rate", "hessian_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        if isinstance(self.pilot_fraction, bool) or not isinstance(self.pilot_fraction, (int, float)) \
                or not 0 <= self.pilot_fraction < 1:
            raise ValueError(f"pilot_fraction: must be in [0, 1) (0 turns the pilot read-out off), "
                             f"got {self.pilot_fraction!r}")
        if not isinstance(self.pilot_equilibrium, bool):
            raise ValueError(f"pilot_equilibrium: must be true or false, got {self.pilot_equilibrium!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: must be an integer, got {self.seed!r}")
        for name in ("prompt_column", "response_column"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}: must be a column name, got {getattr(self, name)!r}")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) \
                or not 0 < self.confidence < 1:
            raise ValueError(f"confidence: must be between 0 and 1, got {self.confidence!r}")
        if self.hessian_method not in ("lanczos", "power"):
            raise ValueError(f"hessian_method: must be 'lanczos' or 'power', got {self.hessian_method!r}")
        if self.hessian_params not in ("all", "lora"):
            raise ValueError(f"hessian_params: must be 'all' or 'lora', got {self.hessian_params!r}")
        if not isinstance(self.safety_dataset, str) or not self.safety_dataset:
            raise ValueError("safety_dataset: required (the original safety data D_s, e.g. toyworld:eval/alignment)")
        radii = self.radii if isinstance(self.radii, list) else [self.radii]
        if not all(isinstance(r, (int, float)) and math.isfinite(r) and r >= 0 for r in radii):
            raise ValueError(f"radii: must be numbers >= 0, got {self.radii!r}")
        self.radii = [float(r) for r in radii]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiagnosticsConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown setting; known: {', '.join(sorted(known))}")
        if "safety_dataset" not in values:
            raise ValueError("safety_dataset: required (the original safety data D_s, e.g. toyworld:eval/alignment)")
        return cls(**values)

    def with_seed(self, seed: int) -> DiagnosticsConfig:
        """`{seed}` in dataset specs replaced, as in sweep configs."""
        return dataclasses.replace(self, safety_dataset=self.safety_dataset.replace("{seed}", str(seed)))
