"""Worker of tests/test_trainer_ddp.py: trains the DDP variants on every rank and saves each rank's outcome.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py TINY_DIR OUT_DIR [VARIANT ...]

Each rank runs `per_device_train_batch_size=B`, GA=1 on 2 ranks (gloo, CPU), i.e. the same global batch per step as
one process with batch B and GA=2, which the test runs in-process and compares against.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
from peft import LoraConfig
from tiny_models import (
    ALL_MECHANISMS,
    EXACT_ARGS,
    load_tiny,
    make_args,
    safety_prompt_completion,
    snapshot,
    task_messages,
)

from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig

LOGGED = ("task_loss", "align_loss", "align_lambda", "penalty", "dist_to_theta0", "ema_dist_to_theta0")

# name -> (config overrides, LoRA)
DDP_VARIANTS = {
    "full_constraint_grad_ball_ema": (
        dict(ALL_MECHANISMS),
        False,
    ),
    "lora_concat_loss_ema": (
        dict(align_lambda=1.0, align_forward="concat", anchor_lambda=0.5, anchor_mode="loss", ema_beta=0.5),
        True,
    ),
}


def run_variant(tiny: str, output_dir: str, name: str, ddp: bool):
    """Train variant `name`: per rank batch 4 with GA=1 under DDP (2 ranks), or batch 4 with GA=2 in one process."""
    overrides, use_lora = DDP_VARIANTS[name]
    args = make_args(
        SafetySFTConfig,
        output_dir,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1 if ddp else 2,
        ddp_backend="gloo" if ddp else None,
        **{**EXACT_ARGS, "learning_rate": 0.2, **overrides},
    )
    model, tok = load_tiny(tiny)
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = SafeSFTTrainer(
        model=model,
        args=args,
        train_dataset=task_messages(),
        align_dataset=safety_prompt_completion(16),  # divisible by batch × ranks (no wrap-around padding)
        processing_class=tok,
        peft_config=peft if use_lora else None,
    )
    trainer.train()
    out = snapshot(trainer)
    out["logs"] = [{k: r[k] for k in LOGGED if k in r} for r in trainer.state.log_history if "loss" in r]
    out["world_size"] = trainer.accelerator.num_processes
    return out


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    tiny, out_dir, *names = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    for name in names or list(DDP_VARIANTS):
        result = run_variant(tiny, os.path.join(out_dir, f"run-{name}"), name, ddp=world > 1)
        torch.save(result, os.path.join(out_dir, f"{name}-rank{rank}.pt"))


if __name__ == "__main__":
    main()
