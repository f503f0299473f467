# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Which mechanisms can run exactly under which distributed engine: refused before training, with the reason."""

from __future__ import annotations

import json


def engine_of(trainer) -> dict:
    """The engine settings of a built trainer that `check_distributed_support` needs."""
    ds_stage = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None
    fsdp_version = None
    if trainer.is_fsdp_enabled:
        fsdp_version = getattr(trainer.accelerator.state.fsdp_plugin, "fsdp_version", 1)
    args = trainer.args
    ckpt_kwargs = args.activation_checkpointing_kwargs or args.gradient_checkpointing_kwargs or {}
    if isinstance(ckpt_kwargs, str):
        ckpt_kwargs = json.loads(ckpt_kwargs)
    reentrant = bool(args.activation_checkpointing) and bool(ckpt_kwargs.get("use_reentrant", False))
    return dict(deepspeed_stage=ds_stage, fsdp_version=fsdp_version, world_size=trainer.accelerator.num_processes,
                reentrant_checkpointing=reentrant, padding_free=bool(trainer.padding_free))


def check_distributed_support(
    *,
    alignment_forward: str | None = None,
    anchor_active: bool = False,
    anchor_mode: str = "grad",
    anchor_radius: float | None = None,
    ema: bool = False,
    offload: bool = False,
    deepspeed_stage: int | None = None,
    fsdp_version: int | None = None,
    world_size: int = 1,
    reentrant_checkpointing: bool = False,
    padding_free: bool = False,
) -> None:
    """Raise before training if a mechanism cannot run correctly under the distributed setup.

    `alignment_forward` is the Case I forward mode (`None` when Case I is off), `anchor_active` whether Case II is on,
    `offload` whether θ₀ or θ̄ is kept in host memory.
    """
    if deepspeed_stage == 3 and (anchor_active or ema):
        what = "Case II (anchor)" if anchor_active else "the EMA"
        raise NotImplementedError(
            f"{what} is not supported with DeepSpeed ZeRO-3: parameters are partitioned placeholders outside the "
            "forward pass, so θ₀, the penalty and the EMA would silently be computed on empty tensors. Use ZeRO-1/2, "
            "FSDP2 or DDP (DeepSpeed issue #7464 describes the hooks a ZeRO-3 version needs)."
        )
    if deepspeed_stage is not None and anchor_active and anchor_mode == "grad":
        raise ValueError(
            "anchor_mode='grad' adds λ·(θ − θ₀) to `param.grad`, which DeepSpeed does not populate (gradients live in "
            "its partitioned buffers). Use anchor_mode='loss' with DeepSpeed."
        )
    if deepspeed_stage is not None and anchor_active and (anchor_radius is not None or anchor_mode == "decoupled"):
        what = "The ball projection (anchor_radius)" if anchor_radius is not None else "anchor_mode='decoupled'"
        raise NotImplementedError(
            f"{what} edits the parameters in place after the optimizer step, which DeepSpeed overwrites from its fp32 "
            "master weights at the next step. Use the penalty (anchor_lambda, anchor_mode='loss') with DeepSpeed."
        )
    if offload and fsdp_version is not None:
        raise NotImplementedError(
            "anchor_offload/ema_offload are not supported under FSDP: θ₀ and θ̄ are already sharded like the weights "
            "(1/world size of a copy per rank). Leave them off, or use DDP."
        )
    if fsdp_version == 1 and (anchor_active or ema):
        raise NotImplementedError(
            "Case II and the EMA need per-parameter tensors; FSDP1 flattens them. Use FSDP2 (fsdp_version: 2)."
        )
    if alignment_forward == "concat" and padding_free:
        raise ValueError(
            "align_forward='concat' pads and concatenates the task and proxy batches, which is incompatible with "
            "padding_free/packing. Use align_forward='separate'."
        )
    distributed = world_size > 1 or deepspeed_stage is not None
    if distributed and reentrant_checkpointing:
        if alignment_forward == "separate":
            raise ValueError(
                "align_forward='separate' runs two forward passes before one backward, which reentrant activation "
                "checkpointing under DDP/DeepSpeed rejects ('Expected to mark a variable ready only once'). Use "
                "align_forward='concat', or non-reentrant checkpointing "
                "(activation_checkpointing_kwargs={'use_reentrant': False})."
            )
        if anchor_active and anchor_mode == "loss" and deepspeed_stage is None:
            raise ValueError(
                "anchor_mode='loss' uses the parameters outside the forward pass, which reentrant activation "
                "checkpointing under DDP rejects. Use anchor_mode='grad' or non-reentrant checkpointing."
            )
