# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""LoRA merged-delta algebra: the distance of the merged weights `W + s·B·A` from the base model `W`, its gradient,
and which adapter layers it covers, from r×r Gram matrices (the out×in delta is never formed)."""

from __future__ import annotations

import torch

from .placement import clean_param_name


def lora_merged_sq_norm(A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """‖scaling·B·A‖_F² from r×r Gram matrices: `scaling²·Σ((BᵀB) ⊙ (AAᵀ))`, never forming the out×in delta.

    Differentiable (autograd flows to A and B) and equal to `‖lora_layer.get_delta_weight(adapter)‖²` for LoRA
    Linear and Embedding layers (the embedding delta is the transpose, with the same norm)."""
    A32, B32 = A.float(), B.float()
    return (scaling * scaling) * ((B32.T @ B32) * (A32 @ A32.T)).sum()


@torch.no_grad()
def lora_merged_sq_grads(A: torch.Tensor, B: torch.Tensor, scaling: float):
    """`(∇_A, ∇_B)` of `½‖scaling·B·A‖_F²` (`s²·(BᵀB)A`, `s²·B(AAᵀ)`) and `‖scaling·B·A‖_F²` itself, in fp32."""
    A32, B32 = A.float(), B.float()
    gram_a, gram_b = A32 @ A32.T, B32.T @ B32
    s2 = scaling * scaling
    return s2 * (gram_b @ A32), s2 * (B32 @ gram_a), s2 * (gram_b * gram_a).sum()


def find_lora_pairs(model: torch.nn.Module) -> list[tuple[str, str, float]]:
    """(name of A, name of B, scaling) for every active LoRA adapter of a PEFT model whose A and B are trainable.

    Supported: LoRA on Linear-like layers (including bitsandbytes ones) and on Embedding layers. Raises
    `NotImplementedError` for DoRA, LoRA biases and convolution LoRA, whose merged delta is not `scaling·B·A`."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover
        return []
    pairs = []
    for module_name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        prefix = clean_param_name(module_name)
        for adapter in module.active_adapters:
            if module.use_dora.get(adapter, False):
                raise NotImplementedError(
                    f"lora_delta='merged' does not support DoRA ({prefix}): its merged weight is not W + s·B·A. "
                    "Use lora_delta='params'."
                )
            if getattr(module, "lora_bias", {}).get(adapter, False):
                raise NotImplementedError(
                    f"lora_delta='merged' does not support LoRA biases ({prefix}). Use lora_delta='params'."
                )
            if adapter in module.lora_A:
                A_mod, B_mod = module.lora_A[adapter], module.lora_B[adapter]
                if not isinstance(A_mod, torch.nn.Linear):
                    raise NotImplementedError(
                        f"lora_delta='merged' supports LoRA on Linear and Embedding layers, not "
                        f"{type(A_mod).__name__} ({prefix}). Use lora_delta='params'."
                    )
                a, b = A_mod.weight, B_mod.weight
                a_name, b_name = f"{prefix}.lora_A.{adapter}.weight", f"{prefix}.lora_B.{adapter}.weight"
            elif adapter in getattr(module, "lora_embedding_A", {}):
                a, b = module.lora_embedding_A[adapter], module.lora_embedding_B[adapter]
                a_name, b_name = f"{prefix}.lora_embedding_A.{adapter}", f"{prefix}.lora_embedding_B.{adapter}"
            else:
                continue
            if a.requires_grad and b.requires_grad:
                pairs.append((a_name, b_name, float(module.scaling[adapter])))
    return pairs
