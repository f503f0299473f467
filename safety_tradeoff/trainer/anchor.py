# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""θ₀ (the anchor) and the operations of Case II on ‖θ − θ₀‖: the penalty in the loss or on the gradients, the
decoupled pull, the ball projection.

Nothing here depends on the Trainer; `ParamConstraintMixin` wires it into `SFTTrainer`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from .chunked import Scratch, chunkable, diff_chunks, lerp_chunks, sq_norm
from .lora_delta import lora_merged_sq_grads, lora_merged_sq_norm
from .placement import (
    device_of,
    follows,
    gather_to_host,
    is_dtensor,
    placed_copy,
    sum_on,
    to_full_tensor,
)


class _SquaredDistance(torch.autograd.Function):
    """Σᵢ‖pᵢ − p0ᵢ‖² for the loss-mode penalty over the anchor's generic parameters; the forward uses the anchor's
    scratch buffers and nothing is kept for backward but the parameters (θ − θ₀ is recomputed there)."""

    @staticmethod
    def forward(ctx, anchor, *params):
        ctx.anchor = anchor
        ctx.save_for_backward(*params)
        return anchor._generic_sq(params)

    @staticmethod
    def backward(ctx, grad_output):
        params = ctx.saved_tensors
        grads = []
        for p, p0 in zip(params, ctx.anchor._generic_theta0(), strict=True):
            p0 = p0.to(p.device, non_blocking=True)
            d = torch.sub(p, p0) if p.dtype == p0.dtype else (p.float() - p0.float()).to(p.dtype)
            grads.append(d.mul_(2 * grad_output.to(device=p.device, dtype=p.dtype)))
        return (None, *grads)


class ParameterAnchor:
    """θ₀ for the trainable parameters and the operations of Case II on ‖θ − θ₀‖.

    Parameters are identified by their cleaned names (so the anchor survives `accelerator.prepare`, which may wrap the
    model or, under FSDP2, replace the Parameter objects). With `lora_pairs`, the LoRA A/B parameters are measured by
    their merged delta `scaling·B·A` against a zero delta (nothing is copied for them); every other trainable
    parameter has an explicit θ₀ copy, placed like its parameter (device, FSDP2 sharding) in `dtype` (default: the
    parameter's), or in host memory with `offload`. `values` (full tensors by name, from a checkpoint, or a function
    returning them, only called if some parameter needs a copy) gives θ₀ instead of the parameters' current values.
    """

    def __init__(self, named_params, lora_pairs=(), dtype: torch.dtype | None = None, offload: bool = False,
                 values: dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]] | None = None):
        self.names = [n for n, _ in named_params]
        index = {n: i for i, n in enumerate(self.names)}
        self.lora = []
        covered = set()
        for a_name, b_name, scaling in lora_pairs:
            if a_name not in index or b_name not in index:
                raise RuntimeError(f"LoRA parameters {a_name}/{b_name} not found among the trainable parameters")
            self.lora.append((index[a_name], index[b_name], scaling))
            covered.update((a_name, b_name))
        self.generic = [i for i, n in enumerate(self.names) if n not in covered]
        self.dtype = dtype
        self.offload = offload
        self.params = [p for _, p in named_params]
        self._scratch = Scratch()
        if callable(values):
            values = values() if self.generic else None
        if values is not None:
            self._check_names(values, "θ₀ in the checkpoint")
        self.theta0 = {}
        for i in self.generic:
            name, p = self.names[i], self.params[i]
            self.theta0[name] = placed_copy(values[name] if values is not None else p, p, self._dtype_for(p), offload)

    def _dtype_for(self, p: torch.Tensor) -> torch.dtype:
        return self.dtype or p.dtype

    def _check_names(self, state, what: str) -> None:
        expected = {self.names[i] for i in self.generic}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"{what} does not match the trainable parameters (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}).")

    def warn_if_lora_not_at_base(self) -> None:
        """With the merged-delta distance, θ₀ is the base model: warn if B ≠ 0 (an initialisation that edits W)."""
        nonzero = [self.names[ib] for _, ib, _ in self.lora if bool(self.params[ib].detach().ne(0).any())]
        if nonzero:
            warnings.warn(
                f"lora_delta='merged' measures the distance of the merged weights from the base model (adapter delta "
                f"0), but {len(nonzero)} LoRA B matrices are non-zero at initialisation (e.g. {nonzero[0]}); with an "
                "initialisation that also edits the base weights (PiSSA, OLoRA, LoftQ, ...) use lora_delta='params'.",
                stacklevel=3,
            )

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.theta0.values())

    # ---------------------------------------------------------------------------------------------------------------
    def bind(self, named_params) -> None:
        """Pair θ₀ with the live parameters by name (after `accelerator.prepare`), and move any θ₀ copy whose
        parameter was moved, cast or sharded since (e.g. a second `train()` after the model was moved)."""
        by_name = dict(named_params)
        missing = [n for n in self.names if n not in by_name]
        if missing or len(by_name) != len(self.names):
            extra = sorted(set(by_name) - set(self.names))
            raise RuntimeError(
                f"The trainable parameters changed since θ₀ was taken (missing: {missing[:3]}, new: {extra[:3]})."
            )
        self.params = [by_name[n] for n in self.names]
        for i in self.generic:
            name, p = self.names[i], self.params[i]
            if not follows(self.theta0[name], p, self._dtype_for(p), self.offload):
                self.theta0[name] = placed_copy(to_full_tensor(self.theta0[name]), p, self._dtype_for(p), self.offload)

    def state_dict(self, write: bool = True) -> dict[str, torch.Tensor] | None:
        """θ₀ as full CPU tensors on the writing rank (`write`), None elsewhere; a collective under FSDP2 (every rank
        calls it), host memory used on the writing rank only."""
        return gather_to_host(list(self.theta0.items()), write)

    # ---------------------------------------------------------------------------------------------------------------
    def _generic_theta0(self) -> list[torch.Tensor]:
        return [self.theta0[self.names[i]] for i in self.generic]

    @torch.no_grad()
    def _generic_sq(self, tensors) -> torch.Tensor:
        """Σ‖t − θ₀‖² over the generic (non-LoRA) entries; `tensors` aligned with `self.generic`."""
        per_device: dict[torch.device, torch.Tensor] = {}
        partial = None  # DTensor partial sums (FSDP2), reduced once at the end
        for t, p0 in zip(tensors, self._generic_theta0(), strict=True):
            if chunkable(t, p0):
                acc = per_device.setdefault(t.device, torch.zeros((), dtype=torch.float32, device=t.device))
                for d, _, _ in diff_chunks(self._scratch, t, p0):
                    acc += d.square_().sum()  # in place: no temporary; pairwise sum (see sq_norm)
            else:
                d = t - p0 if t.dtype == p0.dtype else t.float() - p0.float()
                sq = sq_norm(d)
                partial = sq if partial is None else partial + sq
        values = list(per_device.values())
        if partial is not None:
            values.append(to_full_tensor(partial))
        return sum_on(device_of(self.params), values)

    @torch.no_grad()
    def sq_dist(self, tensors=None) -> torch.Tensor:
        """‖θ − θ₀‖² (fp32 scalar, no graph) for the live parameters or for `tensors` aligned with `self.names`."""
        tensors = self.params if tensors is None else tensors
        values = [to_full_tensor(lora_merged_sq_norm(tensors[ia], tensors[ib], s)) for ia, ib, s in self.lora]
        if self.generic:
            values.append(self._generic_sq([tensors[i] for i in self.generic]))
        return sum_on(device_of(self.params), values)

    def sq_dist_autograd(self) -> torch.Tensor:
        """‖θ − θ₀‖² with a graph to the live parameters (Case II loss mode)."""
        values = [to_full_tensor(lora_merged_sq_norm(self.params[ia], self.params[ib], s)) for ia, ib, s in self.lora]
        if self.generic:
            params = [self.params[i] for i in self.generic]
            if any(is_dtensor(p) for p in params):  # the custom Function is not DTensor-aware: plain autograd
                sq = sum((p.float() - p0.float()).pow(2).sum() for p, p0 in zip(params, self._generic_theta0(),
                                                                                strict=True))
                values.append(sq.full_tensor())
            else:
                values.append(_SquaredDistance.apply(self, *params))
        return sum_on(device_of(self.params), values)

    @torch.no_grad()
    def add_penalty_grad(self, coef: float, compute_sq: bool = False) -> torch.Tensor | None:
        """`grad += coef·∇(½‖θ − θ₀‖²)` in place (`coef` = λ times the current loss scale under fp16); returns
        ‖θ − θ₀‖² (before the update) if `compute_sq`.

        Generic parameters: `grad += coef·(p − p0)`, forming `p − p0` first (adding λp and −λp0 separately cancels
        catastrophically), chunk by chunk in a reused buffer. LoRA pairs: the merged-delta gradients from r×r Grams."""
        values = []
        for ia, ib, s in self.lora:
            A, B = self.params[ia], self.params[ib]
            grad_a, grad_b, sq = lora_merged_sq_grads(A, B, s)
            _grad_of(A).add_(grad_a.to(A.dtype), alpha=coef)
            _grad_of(B).add_(grad_b.to(B.dtype), alpha=coef)
            if compute_sq:
                values.append(to_full_tensor(sq))
        partial = None
        for i in self.generic:
            p, p0 = self.params[i], self.theta0[self.names[i]]
            grad = _grad_of(p)
            if chunkable(p, p0, grad):
                flat_grad = grad.view(-1)
                acc = torch.zeros((), dtype=torch.float32, device=p.device) if compute_sq else None
                for d, start, end in diff_chunks(self._scratch, p, p0):
                    flat_grad[start:end].add_(d, alpha=coef)
                    if compute_sq:
                        acc += d.square_().sum()  # d is not needed any more: square in place
                if compute_sq:
                    values.append(acc)
                continue
            d = p - p0 if p.dtype == p0.dtype else (p.float() - p0.float())
            grad.add_(d if d.dtype == p.dtype else d.to(p.dtype), alpha=coef)
            if compute_sq:
                v = sq_norm(d)
                partial = v if partial is None else partial + v
        if not compute_sq:
            return None
        if partial is not None:
            values.append(to_full_tensor(partial))
        return sum_on(device_of(self.params), values)

    # ---------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _lerp_generic(self, weights: dict[int, float]) -> None:
        """θᵢ ← θᵢ + wᵢ·(θ₀ᵢ − θᵢ) for the generic parameters `i` in `weights`: one `_foreach_lerp_` per weight for
        the parameters whose θ₀ has their dtype and device, chunked staging for the others."""
        fast: dict[float, tuple[list, list]] = {}
        for i, w in weights.items():
            p, p0 = self.params[i], self.theta0[self.names[i]]
            if w == 0.0:
                continue
            if is_dtensor(p):
                p.lerp_(p0.to(p.dtype), w)
            elif p0.dtype == p.dtype and p0.device == p.device:
                group = fast.setdefault(w, ([], []))
                group[0].append(p)
                group[1].append(p0)
            elif p.is_contiguous():
                lerp_chunks(self._scratch, p, p0, w)
            else:
                p.lerp_(p0.to(device=p.device, dtype=p.dtype), w)
        for w, (ps, p0s) in fast.items():
            torch._foreach_lerp_(ps, p0s, w)

    @torch.no_grad()
    def pull(self, fractions: list[float], compute_sq: bool = False) -> torch.Tensor | None:
        """Decoupled pull toward θ₀ after an optimizer step: θ ← θ − fᵢ·(θ − θ₀), fᵢ = lr·λ of parameter i's group
        (`fractions` aligned with `self.names`). LoRA pairs: B ← (1 − f_B)·B, which scales the merged delta s·B·A by
        (1 − f_B) exactly. Returns ‖θ − θ₀‖² before the pull if `compute_sq`."""
        sq = self.sq_dist() if compute_sq else None
        for _, ib, _ in self.lora:
            self.params[ib].mul_(1.0 - fractions[ib])
        self._lerp_generic({i: fractions[i] for i in self.generic})
        return sq

    @torch.no_grad()
    def project(self, radius: float) -> float:
        """Project θ onto the ball ‖θ − θ₀‖ ≤ radius: θ ← θ₀ + c·(θ − θ₀) with c = radius/‖θ − θ₀‖ if outside
        (LoRA: B ← c·B, the delta being linear in B). Returns ‖θ − θ₀‖ before the projection."""
        dist = math.sqrt(float(self.sq_dist()))
        if dist <= radius:
            return dist
        c = radius / dist
        for _, ib, _ in self.lora:
            self.params[ib].mul_(c)
        self._lerp_generic({i: 1.0 - c for i in self.generic})
        return dist


def _grad_of(p: torch.Tensor) -> torch.Tensor:
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad

