r"""Where a Case II run will settle, from its pilot: the penalty's equilibrium along the pilot's direction.

A Case II run minimises L_task(θ) + (λ/2)‖θ − θ₀‖². Early in the run the task pulls θ away from θ₀ faster than
the penalty pulls it back; later, with the task mostly learnt, the penalty wins and θ relaxes towards an
equilibrium, so the G_s read at the pilot step overshoots the final G_s at small λ (up to 3-6x measured). This
module predicts the equilibrium instead: along the ray θ(t) = θ₀ + t·(θ_k − θ₀) through the pilot's weights θ_k
it evaluates the run's own objective, L_task(θ(t)) + (λ/2)·t²·r_k², on a sample of the run's task data, picks
the minimising t*, and reports G_s(θ(t*)) = L_s(θ(t*)) − L_s(θ₀) on D_s. Forward passes only (no gradients),
`RAY_POINTS` points on t ∈ [0, RAY_SPAN].

The ray shrinks every part of the displacement alike. A run that relaxes does not: the penalty pulls back what the
task does not hold (much of the early overshoot), the task keeps the rest. :func:`row_equilibrium` lets each output
row of each weight keep its own share s_j of the pilot's displacement d_j and minimises the same objective,
L_task(θ₀ + s⊙d) + (λ/2)·Σ_j s_j²‖d_j‖², by L-BFGS on the s_j (gradients through the task loss). It is the better
forecast only where the run has time to relax: with a weak penalty (small λ late in a decaying schedule) θ stays
near where training took it. :func:`relaxation_efolds` measures that before choosing: κ, the number of e-folds by
which the penalty alone would shrink θ − θ₀ over the rest of the schedule (λ·Σ lr through a decoupled pull or
plain SGD; λ·Σ lr / √v̂ per weight through Adam, whose second moment v̂ scales every step; the median weight).
The pilot uses the rows where κ ≥ 4, the ray where κ < 1 (less than one e-fold of relaxation ahead), and in
between, where the run is only part-way relaxed when its schedule ends, the geometric mean of the two
(:func:`forecast`); the report flags that band, where forecasts are least reliable.
docs/diagnostics.md reports how often each lands within 2x of the final G_s.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .examples import forward_stats, response_nll

RAY_SPAN = 1.5  # scan up to 1.5x the pilot's distance (θ can still move outwards when λ is small)
RAY_POINTS = 31  # t = 0, 0.05, ..., 1.5: the pilot's own weights (t = 1) are on the grid
ROW_ITERATIONS = 20  # L-BFGS iterations for the row shares (each: a forward and backward on the task sample)
RELAXED_EFOLDS = 1.0  # κ from which the rows are computed; below, θ stays near where training took it (the ray)
# Between RELAXED_EFOLDS and SETTLED_EFOLDS the run is part-way relaxed when its schedule ends: the rows (relaxed)
# and the ray (not relaxed) bracket it, and the forecast is their geometric mean (toy world, docs/diagnostics.md:
# chosen on κ 1.2-3.4 runs of seeds 9-14, 14/18 within 2x against rows 9/18 and ray 11/18; 7/9 on seeds 15-17).
SETTLED_EFOLDS = 4.0
EFOLD_SAMPLE = 1 << 20  # weights sampled (evenly strided) for κ's median: Adam's v̂ of a large model is not copied


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
    def place(t: float) -> None:
        for p, p0, end in zip(params, theta0, now):
            p.copy_(p0 + t * (end - p0))  # one parameter's temporaries at a time

    with torch.no_grad():
        now = [p.detach().clone() for p in params]  # θ_k: one copy of the weights, the only extra memory
        radius = float(torch.sqrt(sum(((p - p0).double() ** 2).sum() for p, p0 in zip(now, theta0))))
        best: tuple[float, float] | None = None  # (objective, t)
        try:
            for i in range(points):
                t = span * i / (points - 1)
                place(t)
                objective = forward_stats(model, task_batches).loss + 0.5 * anchor_lambda * (t * radius) ** 2
                if best is None or objective < best[0]:
                    best = (objective, t)
            t_star = best[1]
            place(t_star)  # the same arithmetic as during the scan: the same weights, bit for bit
            gap = forward_stats(model, safety_batches).loss - safety_loss0  # G_s once, at t* only
        finally:
            for p, saved in zip(params, now):
                p.copy_(saved)
    return RayEquilibrium(t=t_star, radius=t_star * radius, gap=gap)


def part_relaxed(kappa: float | None) -> bool:
    """κ in [RELAXED_EFOLDS, SETTLED_EFOLDS): the run is part-way relaxed when its schedule ends."""
    return kappa is not None and RELAXED_EFOLDS <= kappa < SETTLED_EFOLDS


def forecast(ray: RayEquilibrium | None, rows: RowEquilibrium | None, kappa: float | None) -> tuple[float, float] | None:
    """(G_s, ‖θ − θ₀‖) where a Case II run is predicted to settle: the rows' equilibrium where computed (κ ≥ 1), the
    geometric mean of rows and ray where the run is part-way relaxed and both G_s are positive (the relaxed and the
    unrelaxed forecast bracket it), else the ray's; None without either."""
    if rows is not None and ray is not None and part_relaxed(kappa) and rows.gap > 0 and ray.gap > 0:
        return math.sqrt(rows.gap * ray.gap), math.sqrt(rows.radius * ray.radius)
    chosen = rows or ray
    return None if chosen is None else (chosen.gap, chosen.radius)


@dataclass
class RowEquilibrium:
    """The minimiser of the Case II objective over per-row shares of the pilot's displacement, and G_s there."""

    radius: float  # ‖Σ s_j d_j‖: the predicted distance from θ₀
    gap: float  # G_s there: the predicted final G_s
    objective: float  # L_task + (λ/2)‖θ − θ₀‖² there, on the task sample
    shares: list[Any] = field(default_factory=list, repr=False)  # s_j per parameter (one per row), as optimised


def _rows(x: Any) -> Any:
    """`x` as (rows, rest): a matrix's output rows; each entry of a vector (norm weights, biases) its own row."""
    return x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(-1, 1)


def row_equilibrium(model: Any, theta0: Sequence[Any], params: Sequence[Any], anchor_lambda: float,
                    task_batches: Sequence[dict], safety_batches: Sequence[dict], safety_loss0: float,
                    *, max_iter: int = ROW_ITERATIONS) -> RowEquilibrium:
    """Minimise L_task(θ₀ + s⊙d) + (λ/2)·Σ_j s_j²‖d_j‖² over one share s_j per row (d = θ − θ₀, from 1), and
    return G_s there. L_task is the token-weighted response NLL of `task_batches`, as in :func:`ray_equilibrium`.

    Weights and their `.grad` are restored afterwards, bit for bit; no random numbers are drawn (eval mode)."""
    import torch

    if anchor_lambda < 0:
        raise ValueError(f"anchor_lambda must be >= 0, got {anchor_lambda}")
    now = [p.detach().clone() for p in params]  # θ_k; d = θ_k − θ₀ is formed one parameter at a time
    grads = [p.grad for p in params]
    with torch.no_grad():
        row_sq = [_rows(e - p0).float().pow(2).sum(1) for e, p0 in zip(now, theta0)]  # fp32 sums in bf16/fp16
    shares = [torch.ones_like(r, requires_grad=True) for r in row_sq]

    def place() -> None:
        with torch.no_grad():
            for p, p0, end, s in zip(params, theta0, now, shares):
                p.copy_(p0 + (s.detach().unsqueeze(1) * _rows(end - p0)).reshape(p.shape))

    def objective() -> Any:
        place()
        for p in params:
            p.grad = None
        nll, tokens = zip(*(response_nll(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                         b["labels"]) for b in task_batches))
        loss = torch.cat(nll).sum() / torch.cat(tokens).sum().clamp(min=1)
        loss.backward()
        penalty = 0.0
        with torch.no_grad():
            for p, p0, end, s, sq in zip(params, theta0, now, shares, row_sq):
                grad = p.grad if p.grad is not None else torch.zeros_like(p)  # a weight the task loss does not reach
                s.grad = (_rows(grad).float() * _rows(end - p0).float()).sum(1) + anchor_lambda * s * sq
                penalty += 0.5 * anchor_lambda * float((s * s * sq).sum())
        return torch.tensor(float(loss.detach()) + penalty, dtype=torch.float64)

    try:
        opt = torch.optim.LBFGS(shares, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
        opt.step(objective)
        value = float(objective())  # the objective at the shares L-BFGS ended on (it may end on a line-search probe)
        with torch.no_grad():
            radius = float(torch.sqrt(sum(((p - p0).double() ** 2).sum() for p, p0 in zip(params, theta0))))
            gap = forward_stats(model, safety_batches).loss - safety_loss0
    finally:
        with torch.no_grad():
            for p, saved, grad in zip(params, now, grads):
                p.copy_(saved)
                p.grad = grad
    return RowEquilibrium(radius=radius, gap=gap, objective=value, shares=[s.detach() for s in shares])


def remaining_lr_sum(optimizer: Any, lr_scheduler: Any, step: int, max_steps: int) -> float:
    """Σ lr over the updates still to come (steps `step` .. `max_steps` − 1) of the first parameter group: from the
    schedule's multipliers where it has them (transformers' schedules are `LambdaLR`s), else the current rate."""
    lambdas = getattr(lr_scheduler, "lr_lambdas", None)
    if lambdas and getattr(lr_scheduler, "base_lrs", None):
        base, factor = lr_scheduler.base_lrs[0], lambdas[0]
        return float(sum(base * factor(t) for t in range(step, max_steps)))
    return float(optimizer.param_groups[0]["lr"]) * max(0, max_steps - step)


def relaxation_efolds(optimizer: Any, lr_scheduler: Any, params: Sequence[Any], anchor_lambda: float, step: int,
                      max_steps: int, anchor_mode: str = "grad") -> float | None:
    """κ: the e-folds by which the penalty alone would shrink θ − θ₀ over the rest of the run (see the module's
    docstring). None where the optimizer keeps no per-weight state to read (then the ray is used)."""
    import torch

    total = anchor_lambda * remaining_lr_sum(optimizer, lr_scheduler, step, max_steps)
    group = optimizer.param_groups[0]
    if anchor_mode == "decoupled" or "betas" not in group:  # θ ← θ − lr·λ·(θ − θ₀) each step, or plain SGD
        return total
    beta2, eps = group["betas"][1], group["eps"]
    sampled = []
    n = sum(p.numel() for p in params)
    stride = max(1, n // EFOLD_SAMPLE)
    for p in params:
        state = optimizer.state.get(p) or {}
        if "exp_avg_sq" not in state:
            return None
        v_hat = state["exp_avg_sq"].reshape(-1)[::stride].float() / (1 - beta2 ** float(state["step"]))
        sampled.append((total / (v_hat.sqrt() + eps)).cpu())
    return float(torch.cat(sampled).median()) if sampled else None
