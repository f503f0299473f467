# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Where the extra copies of the weights (θ₀, the EMA shadow θ̄) live and how they travel.

The copies follow the parameters they shadow: same device (each parameter's own under `device_map` model
parallelism), sharded like the parameter under FSDP2 (`DTensor`), or on the host when the user asks for offloading
(pinned memory, non-blocking copies, when the parameter sits on an accelerator). Checkpoints hold full tensors; under
FSDP2 gathering them is a collective that every rank joins, but only the writing rank copies them to host memory.
"""

from __future__ import annotations

import torch

_WRAPPER_PREFIXES = ("module.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_param_name(name: str) -> str:
    """Parameter name without the wrapper prefixes added by DDP, FSDP, activation checkpointing or `torch.compile`."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def trainable_named_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(clean_param_name(n), p) for n, p in model.named_parameters() if p.requires_grad]


try:
    from torch.distributed.tensor import DTensor as _DTensor
except ImportError:  # pragma: no cover (torch built without distributed)
    _DTensor = None


def is_dtensor(t) -> bool:
    return _DTensor is not None and isinstance(t, _DTensor)


def to_full_tensor(t: torch.Tensor) -> torch.Tensor:
    """Full (unsharded) value of a tensor: `DTensor.full_tensor()` under FSDP2 (a collective), else the tensor."""
    return t.full_tensor() if is_dtensor(t) else t


def local_device(t: torch.Tensor) -> torch.device:
    """The device holding `t`'s data on this rank (the local shard's for a `DTensor`)."""
    return t.to_local().device if is_dtensor(t) else t.device


def device_of(tensors) -> torch.device:
    for t in tensors:
        return local_device(t)
    return torch.device("cpu")


def host_tensor(shape, dtype: torch.dtype, pin: bool) -> torch.Tensor:
    """An uninitialised host tensor, page-locked when `pin` (needed for asynchronous host↔device copies)."""
    return torch.empty(shape, dtype=dtype, device="cpu", pin_memory=pin)


def placed_copy(src: torch.Tensor, like: torch.Tensor, dtype: torch.dtype, offload: bool = False) -> torch.Tensor:
    """A copy of `src` placed like the parameter `like`: on its device, sharded the same way under FSDP2, in `dtype`;
    with `offload`, on the host instead (pinned when `like` is on an accelerator).

    `src` is either `like` itself (a snapshot) or a full tensor loaded from a checkpoint."""
    if offload:
        if is_dtensor(like):
            raise NotImplementedError("offloading θ₀/θ̄ to the host is not supported for FSDP2-sharded parameters")
        out = host_tensor(like.shape, dtype, pin=like.device.type != "cpu")
        out.copy_(src.detach())
        return out
    if is_dtensor(like):
        if is_dtensor(src):
            return src.detach().to(dtype=dtype, copy=True)
        from torch.distributed.tensor import distribute_tensor

        full = src.detach().to(device=local_device(like), dtype=dtype)
        return distribute_tensor(full, like.device_mesh, like.placements)
    return src.detach().to(device=like.device, dtype=dtype, copy=True)


def follows(copy: torch.Tensor, like: torch.Tensor, dtype: torch.dtype, offload: bool) -> bool:
    """Whether `copy` is already where `placed_copy(copy, like, dtype, offload)` would put it."""
    if copy.dtype != dtype or is_dtensor(copy) != (is_dtensor(like) and not offload):
        return False
    if offload:
        return copy.device.type == "cpu"
    if is_dtensor(like):
        return copy.device_mesh == like.device_mesh and copy.placements == like.placements
    return copy.device == like.device


def gather_to_host(named: list[tuple[str, torch.Tensor]], write: bool) -> dict[str, torch.Tensor] | None:
    """Full CPU copies of `named` for a checkpoint, on the writing rank only (`write`). Sharded tensors are gathered
    one at a time (a collective every rank joins); other ranks return None without copying anything to the host."""
    out = {} if write else None
    for name, t in named:
        full = to_full_tensor(t.detach())
        if write:
            out[name] = full.to("cpu").contiguous()  # no copy for a CPU tensor: it is serialised right away
    return out


def sum_on(device: torch.device, values) -> torch.Tensor:
    """Sum of scalar tensors that may sit on different devices (`device_map` model parallelism), on `device`."""
    total = torch.zeros((), dtype=torch.float32, device=device)
    for v in values:
        total += v.to(device)
    return total
