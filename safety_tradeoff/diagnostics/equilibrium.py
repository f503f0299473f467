r"""Where a Case II run will settle, from its pilot: the penalty's equilibrium along the pilot's direction.

A Case II run minimises L_task(θ) + (λ/2)‖θ − θ₀‖². Early in the run the task pulls θ away from θ₀ faster than
the penalty pulls it back; later, with the task mostly learnt, the penalty wins and θ relaxes towards an
equilibrium, so the G_s read at the pilot step overshoots the final G_s at small λ (up to 3-6x measured). This
module predicts the equilibrium instead: along the ray θ(t) = θ₀ + t·(θ_k − θ₀) through the pilot's weights θ_k
it evaluates the run's own objective, L_task(θ(t)) + (λ/2)·t²·r_k², on a sample of the run's task data, picks
the minimising t*, and reports G_s(θ(t*)) = L_s(θ(t*)) − L_s(θ₀) on D_s. Forward passes only (no gradients),
`RAY_POINTS` points on t ∈ [0, RAY_SPAN].

It assumes the run's remaining movement is mostly along the direction it has taken so far (the penalty shrinks
it; the task keeps it): where the task still has much to learn in new directions at the pilot step, the
prediction is low. docs/diagnostics.md reports how often it lands within 2x of the final G_s.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .examples import forward_stats

RAY_SPAN = 1.5  # scan up to 1.5x the pilot's distance (θ can still move outwards when λ is small)
RAY_POINTS = 31  # t = 0, 0.05, ..., 1.5: the pilot's own weights (t = 1) are on the grid


@dataclass
class RayEquilibrium:
    """The minimiser of the Case II objective along the pilot's ray, and G_s there."""

    t: float  # t*: the fraction of the pilot's displacement kept (1 = the pilot's weights)
    radius: float  # t*·‖θ_k − θ₀‖: the predicted distance from θ₀
    gap: float  # G_s at θ(t*): the predicted final G_s


def ray_equilibrium(model: Any, theta0: Sequence[Any], params: Sequence[Any], anchor_lambda: float,
                    task_batches: Sequence[dict], safety_batches: Sequence[dict], safety_loss0: float,
                    *, span: float = RAY_SPAN, points: int = RAY_POINTS) -> RayEquilibrium:
    """Scan θ₀ + t·(θ − θ₀) over `params` (θ₀: `theta0`, same order), return the Case II equilibrium on it.

    The model's weights are restored bit for bit afterwards (a copy of θ is kept during the scan), so the run
    continues exactly as without the scan. Single process: every parameter must be a full local tensor."""
    import torch

    if anchor_lambda < 0:
        raise ValueError(f"anchor_lambda must be >= 0, got {anchor_lambda}")
    if points < 2 or span <= 0:
        raise ValueError(f"the scan needs points >= 2 and span > 0, got {points} and {span}")
    with torch.no_grad():
        now = [p.detach().clone() for p in params]  # θ_k: one copy of the weights, the only extra memory
        radius = float(torch.sqrt(sum(((p - p0).double() ** 2).sum() for p, p0 in zip(now, theta0))))
        best: tuple[float, float, float] | None = None  # (objective, t, G_s there)
        try:
            for i in range(points):
                t = span * i / (points - 1)
                for p, p0, end in zip(params, theta0, now):
                    p.copy_(p0 + t * (end - p0))  # one parameter's temporaries at a time
                objective = forward_stats(model, task_batches).loss + 0.5 * anchor_lambda * (t * radius) ** 2
                if best is None or objective < best[0]:  # G_s only where the objective improves
                    best = (objective, t, forward_stats(model, safety_batches).loss - safety_loss0)
        finally:
            for p, saved in zip(params, now):
                p.copy_(saved)
    _, t_star, gap = best
    return RayEquilibrium(t=t_star, radius=t_star * radius, gap=gap)
