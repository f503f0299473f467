"""Chen et al.'s Case II bound (reconstruction, shared/notes/papers.md §1), in one place for the
diagnostics, the landscape estimate and the report (standard library only)."""
from __future__ import annotations


def case2_bound(grad_norm: float, beta: float, r: float) -> float:
    """G_s ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r² for any θ with ‖θ − θ₀‖ ≤ r (L_s β_s-smooth on the ball)."""
    if not r >= 0:  # also rejects NaN
        raise ValueError(f"radius r must be >= 0, got {r!r}")
    return grad_norm * r + beta / 2 * r ** 2
