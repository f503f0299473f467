# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Case I's `align_forward="concat"`: one forward over the task and proxy micro-batches stacked by rows.

It replaces `SFTTrainer.compute_loss` for the task rows, so it re-implements what that does for the settings it
supports (token NLL or DFT loss from the fused LM head, `position_ids`, entropy/accuracy/token metrics) and refuses the
others before training: `compute_loss_func` and label smoothing need the full (B, T, V) logits, MoE auxiliary losses
and padding-free batches need per-batch routing and sequence boundaries.
"""

from __future__ import annotations

import torch

# Batch keys the concatenation knows how to pad, with their padding value (None: the tokenizer's pad token).
PADDED_KEYS = {"input_ids": None, "labels": -100, "attention_mask": 0, "position_ids": 0}
SUPPORTED_LOSS_TYPES = ("nll", "dft")


def check_concat_support(trainer) -> None:
    """Refuse, before training, the SFT settings `align_forward="concat"` would silently ignore."""
    args = trainer.args
    problems = []
    if trainer.compute_loss_func is not None:
        problems.append("`compute_loss_func` (it needs the full logits of the task rows)")
    if getattr(args, "label_smoothing_factor", 0) > 0:
        problems.append(f"`label_smoothing_factor={args.label_smoothing_factor}` (it needs the full logits)")
    if args.loss_type not in SUPPORTED_LOSS_TYPES:
        problems.append(f"`loss_type={args.loss_type!r}` (supported: {', '.join(SUPPORTED_LOSS_TYPES)})")
    if trainer.aux_loss_enabled:
        problems.append("MoE router auxiliary losses (`model.config.output_router_logits`)")
    if problems:
        raise ValueError(
            "align_forward='concat' computes the task loss itself from one fused forward over the task and proxy rows "
            f"and does not support {'; '.join(problems)}. Use align_forward='separate'."
        )


def concat_batches(task: dict, align: dict, pad_id: int) -> dict:
    """[task rows; proxy rows], right-padded to a common length with each key's padding value."""
    unknown = sorted((set(task) | set(align)) - set(PADDED_KEYS))
    if unknown:
        raise NotImplementedError(
            f"align_forward='concat' does not know how to concatenate the batch keys {unknown}; use "
            "align_forward='separate'."
        )
    if "attention_mask" not in task:
        raise NotImplementedError("align_forward='concat' needs padded batches with an attention mask.")
    length = max(task["input_ids"].shape[1], align["input_ids"].shape[1])
    out = {}
    for key, value in PADDED_KEYS.items():
        if key not in task and key not in align:
            continue
        if (key in task) != (key in align):
            raise NotImplementedError(f"align_forward='concat': '{key}' is in only one of the two batches.")
        fill = pad_id if value is None else value
        out[key] = torch.cat([torch.nn.functional.pad(b[key], (0, length - b[key].shape[1]), value=fill)
                              for b in (task, align)])
    return out


def per_token_loss(outputs, loss_type: str) -> torch.Tensor:
    """`SFTTrainer.compute_loss`'s per-token loss from the fused head: −log p, times p (detached) for DFT."""
    loss = -outputs.log_probs
    if loss_type == "dft":
        loss = loss * outputs.log_probs.exp().detach()
    return loss


def log_task_metrics(trainer, outputs, task: dict, rows: int) -> None:
    """SFTTrainer's entropy / token-accuracy / token-count metrics for the task rows."""
    gather = trainer.accelerator.gather_for_metrics
    mask = outputs.label_mask[:rows]
    num_valid = gather(mask.sum()).sum()
    entropy = gather(outputs.entropy[:rows].detach().sum()).sum()
    correct = gather(outputs.is_top1[:rows].sum()).sum()
    metrics = trainer._metrics["train"]
    metrics["entropy"].append((entropy / num_valid).item() if num_valid > 0 else 0.0)
    metrics["mean_token_accuracy"].append((correct / num_valid).item() if num_valid > 0 else 0.0)
    trainer._total_train_tokens += gather(task["attention_mask"].sum()).sum().item() // trainer._tp_size
    metrics["num_tokens"] = [trainer._total_train_tokens]


def concat_forward_losses(trainer, model, task: dict, align: dict, num_items_in_batch, align_num_items):
    """(task loss, alignment loss) from one forward over [task rows; proxy rows], each normalised like SFTTrainer
    normalises the task loss. The alignment loss is always the token NLL (as in the separate forward)."""
    cat = concat_batches(task, align, trainer._tokenizer.pad_token_id)
    outputs = model(**cat, use_cache=False, fused_lm_head=True)
    rows = task["input_ids"].shape[0]
    task_tokens = per_token_loss(outputs, trainer.args.loss_type)[:rows]
    mask = outputs.label_mask
    task_loss = trainer._normalise(task_tokens.sum(), mask[:rows].sum(), num_items_in_batch)
    align_loss = trainer._normalise((-outputs.log_probs[rows:]).sum(), mask[rows:].sum(), align_num_items)
    log_task_metrics(trainer, outputs, task, rows)
    return task_loss, align_loss
