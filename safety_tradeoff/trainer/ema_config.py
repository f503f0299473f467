# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Configuration of the exponential moving average (EMA) of the weights in parameter space."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

EMA_DTYPES = ("float32", "float64", "bfloat16", "float16")
EMA_USES = ("ema", "live", "both")


@dataclass
class EMAConfig(SFTConfig):
    r"""
    Configuration class for the [`EMASFTTrainer`] (EMA of the weights in parameter space).

    After every optimizer step (and after the Case II projection, when combined), `θ̄ ← β·θ̄ + (1 − β)·θ` on a shadow
    copy of the trainable parameters (the adapter weights with LoRA), kept in `ema_dtype` and initialised at θ₀, the
    weights at the start of training. The shadow is saved in every checkpoint (`ema_state.pt`) and restored on
    resume. By default evaluation, `save_model()`, `push_to_hub()` and the model loaded by `load_best_model_at_end` use
    θ̄; checkpoints always hold the live weights (to resume).

    With LoRA, θ̄ averages the adapter matrices A and B separately: the model evaluated and saved with θ̄ has the merged
    delta `s·B̄·Ā`, which is not the average of the deltas `s·B·A` the run went through (they differ by the covariance
    of B and A over the averaging window, small when the adapters move slowly over `1/(1 − β)` steps).

    All the parameters of [`~trl.SFTConfig`] are accepted. Using [`~transformers.HfArgumentParser`] (or
    [`~trl.TrlParser`]) this class can be filled from the command line or from a YAML file.

    Parameters:
        > Parameters that control the EMA of the weights

        ema_beta (`float`, *optional*):
            Decay β ∈ [0, 1) of the EMA. `None` disables the EMA. The EMA averages over roughly the last
            `1 / (1 − β)` optimizer steps.
        ema_dtype (`str`, *optional*, defaults to `"float32"`):
            dtype of the shadow copy. Keep `"float32"` for bf16 models: a bf16 shadow stops moving for β ≥ 0.99.
        ema_eval (`str`, *optional*, defaults to `"ema"`):
            Weights used by `evaluate()`. `"ema"`: θ̄, under the usual metric names. `"live"`: the live weights θ.
            `"both"`: θ under the usual names and θ̄ under `<metric_key_prefix>_ema_*` (e.g. `eval_ema_loss`; the
            entropy/accuracy metrics of `SFTTrainer` keep their `eval_*` names).
        ema_save (`str`, *optional*, defaults to `"ema"`):
            Weights written by `save_model()`. `"ema"`: θ̄ in `output_dir`. `"live"`: θ in `output_dir`. `"both"`: θ̄
            in `output_dir` and θ in `output_dir/live`. With LoRA only the adapter is written, as usual. Checkpoints
            always hold θ (plus `ema_state.pt`).
        ema_log_distances (`bool`, *optional*, defaults to `False`):
            Keep a copy of θ₀ to log `dist_to_theta0` (‖θ − θ₀‖) and `ema_dist_to_theta0` (‖θ̄ − θ₀‖) when no
            Case II anchor is active (with one, both are always logged). Costs one more copy of the trainable
            parameters, saved in checkpoints as `safety_anchor.safetensors`.
        ema_offload (`bool`, *optional*, defaults to `False`):
            Keep θ̄ in host memory (pinned) instead of beside the weights on the accelerator: saves one fp32 copy of
            the trainable parameters of accelerator memory; each update copies the parameters to the host and
            averages there (pair it with `ema_update_every` > 1). Not with FSDP (θ̄ is already sharded there).
        ema_update_every (`int`, *optional*, defaults to `1`):
            Update θ̄ every k optimizer steps with `θ̄ ← β^k·θ̄ + (1 − β^k)·θ` (the same decay per step, sampled every k
            steps), to spread the cost of the update (and of the host transfer with `ema_offload`). Steps skipped by
            the fp16 loss scaler do not count.
    """

    ema_beta: float | None = field(
        default=None,
        metadata={"help": "EMA decay β ∈ [0, 1) applied after every optimizer step; None disables the EMA."},
    )
    ema_dtype: str = field(
        default="float32",
        metadata={"help": "dtype of the EMA shadow (keep float32 for bf16 models).", "choices": list(EMA_DTYPES)},
    )
    ema_eval: str = field(
        default="ema",
        metadata={
            "help": "Weights used by evaluate(): 'ema' (θ̄), 'live' (θ) or 'both' (θ̄ under '<prefix>_ema_*').",
            "choices": list(EMA_USES),
        },
    )
    ema_save: str = field(
        default="ema",
        metadata={
            "help": "Weights written by save_model(): 'ema' (θ̄), 'live' (θ) or 'both' (θ̄ in output_dir, θ in "
            "output_dir/live). Checkpoints always hold θ.",
            "choices": list(EMA_USES),
        },
    )
    ema_log_distances: bool = field(
        default=False,
        metadata={
            "help": "Keep a copy of θ₀ to log ‖θ − θ₀‖ and ‖θ̄ − θ₀‖ when no Case II anchor is active (one more copy "
            "of the trainable parameters)."
        },
    )

    ema_offload: bool = field(
        default=False,
        metadata={"help": "Keep θ̄ in (pinned) host memory; each update copies the parameters to the host."},
    )
    ema_update_every: int = field(
        default=1,
        metadata={"help": "Update θ̄ every k optimizer steps with β^k (k ≥ 1)."},
    )

    def __post_init__(self):
        super().__post_init__()
        validate_ema_args(self)


def validate_ema_args(args) -> None:
    """Raise a `ValueError` naming the field if an EMA setting is out of range."""
    beta = args.ema_beta
    if beta is not None and not 0.0 <= beta < 1.0:
        raise ValueError(f"`ema_beta` must be in [0, 1), got {beta}.")
    if args.ema_dtype not in EMA_DTYPES:
        raise ValueError(f"`ema_dtype` must be one of {EMA_DTYPES}, got {args.ema_dtype!r}.")
    if not isinstance(args.ema_update_every, int) or args.ema_update_every < 1:
        raise ValueError(f"`ema_update_every` must be an integer ≥ 1, got {args.ema_update_every!r}.")
    for name in ("ema_eval", "ema_save"):
        if getattr(args, name) not in EMA_USES:
            raise ValueError(f"`{name}` must be one of {EMA_USES}, got {getattr(args, name)!r}.")
