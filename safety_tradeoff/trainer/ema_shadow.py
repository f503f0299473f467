# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""θ̄, the EMA shadow of the trainable parameters: its placement, its update and swapping it into the model.

Nothing here depends on the Trainer; `EMAMixin` wires it into `SFTTrainer`.
"""

from __future__ import annotations

import torch

from .chunked import Scratch, lerp_chunks
from .placement import follows, gather_to_host, host_tensor, is_dtensor, placed_copy, to_full_tensor


class EMAShadow:
    """θ̄ for the trainable parameters, kept in `dtype` (fp32 by default: a bf16 shadow stops moving for β ≥ 0.99),
    placed like each parameter (device, FSDP2 sharding) or in host memory with `offload`. Initialised from the
    parameters, or from `values` (full tensors by name, from a checkpoint)."""

    def __init__(self, named_params, dtype: torch.dtype, offload: bool = False,
                 values: dict[str, torch.Tensor] | None = None):
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.dtype = dtype
        self.offload = offload
        self._scratch = Scratch()
        if values is not None and set(values) != set(self.names):
            missing, extra = sorted(set(self.names) - set(values)), sorted(set(values) - set(self.names))
            raise ValueError(f"the EMA state does not match the trainable parameters (missing {missing[:3]}, "
                             f"unexpected {extra[:3]})")
        self.shadow = [placed_copy(values[n] if values is not None else p, p, dtype, offload)
                       for n, p in zip(self.names, self.params, strict=True)]

    @property
    def num_bytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.shadow)

    def bind(self, named_params) -> None:
        """Pair θ̄ with the live parameters by name (after `accelerator.prepare`), moving any copy whose parameter was
        moved or sharded since."""
        by_name = dict(named_params)
        if set(by_name) != set(self.names):
            raise RuntimeError("The trainable parameters changed since the EMA shadow was created.")
        self.params = [by_name[n] for n in self.names]
        for i, (s, p) in enumerate(zip(self.shadow, self.params, strict=True)):
            if not follows(s, p, self.dtype, self.offload):
                self.shadow[i] = placed_copy(to_full_tensor(s), p, self.dtype, self.offload)

    def state_dict(self, write: bool = True) -> dict[str, torch.Tensor] | None:
        """θ̄ by name as full CPU tensors on the writing rank, None elsewhere (a collective under FSDP2)."""
        return gather_to_host(list(zip(self.names, self.shadow, strict=True)), write)

    @torch.no_grad()
    def update(self, weight: float) -> None:
        """θ̄ ← θ̄ + weight·(θ − θ̄), i.e. θ̄ ← β·θ̄ + (1 − β)·θ with `weight = 1 − β` (β^k when updated every k steps).
        Same-dtype, same-device pairs go through one `_foreach_lerp_` (torch's `get_ema_multi_avg_fn` kernel); the
        others are converted chunk by chunk (a host shadow pulls the parameters over in chunks)."""
        fast_s, fast_p = [], []
        for s, p in zip(self.shadow, self.params, strict=True):
            if is_dtensor(p):
                s.lerp_(p.detach().to(s.dtype), weight)
            elif s.dtype == p.dtype and s.device == p.device:
                fast_s.append(s)
                fast_p.append(p.detach())
            elif p.is_contiguous():
                lerp_chunks(self._scratch, s, p.detach(), weight)
            else:
                s.lerp_(p.detach().to(device=s.device, dtype=s.dtype), weight)
        if fast_s:
            torch._foreach_lerp_(fast_s, fast_p, weight)

    @torch.no_grad()
    def swap_in(self) -> list[torch.Tensor]:
        """Copy θ̄ into the parameters; returns the live values to give to `restore` (on the host when offloaded)."""
        backup = []
        for p, s in zip(self.params, self.shadow, strict=True):
            if self.offload and not is_dtensor(p):
                keep = host_tensor(p.shape, p.dtype, pin=p.device.type != "cpu")
                keep.copy_(p.detach())
            else:
                keep = p.detach().clone()
            backup.append(keep)
            p.copy_(s)
        return backup

    @torch.no_grad()
    def restore(self, backup: list[torch.Tensor]) -> None:
        for p, b in zip(self.params, backup, strict=True):
            p.copy_(b)
