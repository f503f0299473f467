# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Chunked element-wise passes over parameter-sized tensors with reused scratch buffers.

θ − θ₀ (Case II) and the EMA's host↔device staging are formed a chunk at a time in buffers that are allocated once:
a fresh parameter-sized temporary per tensor costs more than the arithmetic on CPU (large allocations are
page-faulted in on every step: measured 3×), adds allocator churn on GPU, and would need the memory of the largest
parameter on top of the weights."""

from __future__ import annotations

import torch

CHUNK = 1 << 24  # elements formed at a time (64 MiB in fp32)


class Scratch:
    """One reusable buffer of at most `CHUNK` elements per (dtype, device, role)."""

    def __init__(self):
        self._buffers: dict = {}

    def get(self, dtype: torch.dtype, device: torch.device, numel: int, role: str = "diff") -> torch.Tensor:
        key = (dtype, device, role)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel]


def sq_norm(d: torch.Tensor) -> torch.Tensor:
    """‖d‖² in fp32 or better. Not `torch.dot`/`vector_norm`: on CPU their fp32 accumulation loses 1e-3 relative
    precision on a few million near-equal values, while `sum()` reduces pairwise."""
    if d.dtype != torch.float32 and d.dtype != torch.float64:
        d = d.float()
    return (d * d).sum().float()


def chunkable(*tensors) -> bool:
    """Plain contiguous tensors (not FSDP2 `DTensor`s), which the chunked passes can view as flat vectors."""
    from .placement import is_dtensor

    return all(not is_dtensor(t) and t.is_contiguous() for t in tensors)


def staged(scratch: Scratch, flat: torch.Tensor, start: int, end: int, device: torch.device,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """`flat[start:end]` on `device` (and in `dtype`): the slice itself when it is already there, else a copy into a
    scratch buffer (non-blocking from pinned host memory; ordered before later work on the same stream)."""
    dtype = dtype or flat.dtype
    piece = flat[start:end]
    if piece.device == device and piece.dtype == dtype:
        return piece
    buf = scratch.get(dtype, device, end - start, role="stage")
    buf.copy_(piece, non_blocking=piece.device.type == "cpu" and piece.is_pinned())
    return buf


def diff_chunks(scratch: Scratch, t: torch.Tensor, p0: torch.Tensor):
    """Yield `(d, start, end)` with `d = (t − p0).view(-1)[start:end]` in a scratch buffer on `t`'s device, in fp32
    (fp64 if both are fp64). `t` and `p0` must be contiguous local tensors; `p0` may live on the host (offloaded)."""
    flat_t, flat_0 = t.detach().view(-1), p0.view(-1)
    dtype = torch.float64 if t.dtype == p0.dtype == torch.float64 else torch.float32
    n = flat_t.numel()
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        d = scratch.get(dtype, t.device, end - start)
        ref = staged(scratch, flat_0, start, end, t.device)
        if t.dtype == ref.dtype == dtype:
            torch.sub(flat_t[start:end], ref, out=d)
        else:
            d.copy_(flat_t[start:end]).sub_(ref)
        yield d, start, end


def lerp_chunks(scratch: Scratch, target: torch.Tensor, source: torch.Tensor, weight: float) -> None:
    """`target ← target + weight·(source − target)` in place, chunk by chunk, `source` converted to `target`'s dtype
    and device on the way (a host `source` is staged to the device)."""
    flat_t, flat_s = target.view(-1), source.view(-1)
    n = flat_t.numel()
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        flat_t[start:end].lerp_(staged(scratch, flat_s, start, end, target.device, target.dtype), weight)
