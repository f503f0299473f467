# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Configuration of Case II: the alignment-parameter constraint (stay close to the aligned weights θ₀)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

ANCHOR_MODES = ("grad", "loss", "decoupled")
LORA_DELTAS = ("merged", "params")
ANCHOR_DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass
class ParamConstraintConfig(SFTConfig):
    r"""
    Configuration class for the [`ParamConstraintSFTTrainer`] (Case II, alignment-parameter constraint).

    θ₀ is a snapshot of the trainable parameters taken when training starts (after the model was placed, cast or
    sharded for training), saved in every checkpoint (`safety_anchor.safetensors`) and reloaded from it on resume, so
    a resumed run never re-anchors on its own checkpoint. The trainer pulls θ toward θ₀ with `(λ/2)·‖θ − θ₀‖²` (on
    the gradients, in the loss, or decoupled after each step) and/or keeps θ in the ball `‖θ − θ₀‖ ≤ r` by projection
    after every optimizer step. With a PEFT LoRA model, θ₀ is the base model (zero
    adapter delta) and the distance is the one of the merged weights, `Σ_layers ‖scaling · B·A‖_F²`, computed exactly
    from r×r Gram matrices.

    All the parameters of [`~trl.SFTConfig`] are accepted. Using [`~transformers.HfArgumentParser`] (or
    [`~trl.TrlParser`]) this class can be filled from the command line or from a YAML file.

    Parameters:
        > Parameters that control the parameter-space constraint (Case II)

        anchor_lambda (`float`, *optional*, defaults to `0.0`):
            Weight λ ≥ 0 of the L2-SP penalty `(λ/2)·‖θ − θ₀‖²` over the trainable parameters. `0` disables the
            penalty (the ball projection can still be used).
        anchor_radius (`float`, *optional*):
            Radius r > 0 of the hard constraint `‖θ − θ₀‖ ≤ r`, enforced by projecting θ onto the ball after every
            optimizer step (optimizer moments are left untouched). `None` disables the projection.
        anchor_mode (`str`, *optional*, defaults to `"grad"`):
            How the penalty enters the update. `"grad"`: `λ·(θ − θ₀)` is added to the gradients once per optimizer
            step, after the last micro-batch backward (after the DDP all-reduce, before clipping; times the loss scale
            under fp16); no autograd graph, a chunk-sized temporary at a time. Not available with DeepSpeed (no
            `.grad`). `"loss"`: the penalty is added to the loss of every micro-batch (scaled so it counts once per
            step) through a custom autograd function; works wherever the parameters are materialised, costs more.
            Both go through the optimizer (Adam normalises them, clipping clips them). `"decoupled"`: after every
            optimizer step `θ ← θ − lr·λ·(θ − θ₀)` with the step's learning rate, outside the optimizer (as AdamW
            decouples weight decay): the pull keeps its strength under Adam. Needs `learning_rate·anchor_lambda ≤ 1`;
            not available with DeepSpeed.
        lora_delta (`str`, *optional*, defaults to `"merged"`):
            Distance used with a PEFT LoRA model. `"merged"`: the distance of the merged weights from the base model,
            `Σ ‖scaling·B·A‖_F²` (θ₀ is the zero delta, nothing is copied). `"params"`: the distance of the adapter
            parameters from their initial values (A is random at initialisation, so this is not the distance of the
            weights).
        anchor_dtype (`str`, *optional*, defaults to `"auto"`):
            dtype of the θ₀ copy. `"auto"` keeps the parameter dtype. `"bfloat16"` halves the copy when the aligned
            checkpoint is bf16 but training keeps fp32 parameters (the values are then exactly representable).
        anchor_offload (`bool`, *optional*, defaults to `False`):
            Keep θ₀ in host memory (pinned) instead of beside the weights on the accelerator; each use streams it to
            the device in chunks (non-blocking copies). Saves one copy of the trainable parameters of accelerator
            memory for host↔device traffic every step. Not with FSDP (θ₀ is already sharded there).
    """

    anchor_lambda: float = field(
        default=0.0,
        metadata={"help": "Weight λ ≥ 0 of the L2-SP penalty (λ/2)·‖θ − θ₀‖² over the trainable parameters."},
    )
    anchor_radius: float | None = field(
        default=None,
        metadata={"help": "Radius r > 0 of the ball ‖θ − θ₀‖ ≤ r enforced by projection after each optimizer step."},
    )
    anchor_mode: str = field(
        default="grad",
        metadata={
            "help": "'grad': add λ·(θ − θ₀) to the gradients once per optimizer step (cheap; not with DeepSpeed). "
            "'loss': add the penalty to the loss through autograd. 'decoupled': θ ← θ − lr·λ·(θ − θ₀) after each "
            "optimizer step, outside the optimizer (not with DeepSpeed).",
            "choices": list(ANCHOR_MODES),
        },
    )
    lora_delta: str = field(
        default="merged",
        metadata={
            "help": "With LoRA: 'merged' penalises Σ‖scaling·B·A‖² (distance of the merged weights from the base "
            "model); 'params' the distance of the adapter parameters from their initial values.",
            "choices": list(LORA_DELTAS),
        },
    )
    anchor_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the θ₀ copy ('auto': the parameter dtype).",
            "choices": list(ANCHOR_DTYPES),
        },
    )

    anchor_offload: bool = field(
        default=False,
        metadata={"help": "Keep θ₀ in (pinned) host memory and stream it to the device when used."},
    )

    def __post_init__(self):
        super().__post_init__()
        validate_param_constraint_args(self)


def validate_param_constraint_args(args) -> None:
    """Raise a `ValueError` naming the field if a Case II setting is out of range."""
    if args.anchor_lambda is None or args.anchor_lambda < 0:
        raise ValueError(f"`anchor_lambda` must be ≥ 0, got {args.anchor_lambda}.")
    if args.anchor_radius is not None and not args.anchor_radius > 0:
        raise ValueError(f"`anchor_radius` (r of the ball ‖θ − θ₀‖ ≤ r) must be > 0, got {args.anchor_radius}.")
    if args.anchor_mode not in ANCHOR_MODES:
        raise ValueError(f"`anchor_mode` must be one of {ANCHOR_MODES}, got {args.anchor_mode!r}.")
    if args.lora_delta not in LORA_DELTAS:
        raise ValueError(f"`lora_delta` must be one of {LORA_DELTAS}, got {args.lora_delta!r}.")
    if args.anchor_dtype not in ANCHOR_DTYPES:
        raise ValueError(f"`anchor_dtype` must be one of {ANCHOR_DTYPES}, got {args.anchor_dtype!r}.")
    if args.anchor_mode == "decoupled" and args.learning_rate * args.anchor_lambda > 1:
        raise ValueError(
            f"anchor_mode='decoupled' moves θ a fraction learning_rate·anchor_lambda = {args.learning_rate} × "
            f"{args.anchor_lambda} = {args.learning_rate * args.anchor_lambda:.3g} of the way to θ₀ each step, which "
            "must be ≤ 1 (beyond it θ overshoots θ₀). Lower `anchor_lambda`."
        )
