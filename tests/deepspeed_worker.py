"""Worker of tests/test_trainer_deepspeed.py: the safety trainers under DeepSpeed ZeRO-2 on 2 CPU processes (gloo,
DeepSpeed's CPU accelerator), launched as

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/deepspeed_worker.py TINY_DIR OUT_DIR

with the DeepSpeed config given to the trainer (`deepspeed=` in the training arguments, `use_cpu=True`). Each rank
runs batch 4, GA=1: the global batch of one process with batch 4 and GA=2, which the test runs in-process (without
DeepSpeed) and compares against. The mechanisms DeepSpeed cannot run exactly (Case II on the gradients, the ball,
the decoupled pull) must be refused when the trainer is built; their refusals are recorded too.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
from tiny_models import EXACT_ARGS, load_tiny, make_args, safety_prompt_completion, task_messages

from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig

ZERO2 = {
    "zero_optimization": {"stage": 2},
    "zero_allow_untested_optimizer": True,
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
}
# name -> (config overrides, uses the proxy set)
DS_VARIANTS = {
    "loss": (dict(anchor_lambda=0.5, anchor_mode="loss"), False),
    "ema": (dict(ema_beta=0.5), False),
    "case1_concat_loss_ema": (dict(align_mode="constraint", align_lambda=0.5, align_epsilon=5.5, align_dual_lr=0.5,
                                   align_forward="concat", anchor_lambda=0.5, anchor_mode="loss", ema_beta=0.5), True),
}
REFUSED = {
    "grad": dict(anchor_lambda=0.5, anchor_mode="grad"),
    "ball": dict(anchor_lambda=0.5, anchor_mode="loss", anchor_radius=0.3),
    "decoupled": dict(anchor_lambda=0.5, anchor_mode="decoupled"),
}


def build(tiny: str, output_dir: str, overrides: dict, align: bool, deepspeed: bool):
    args = make_args(SafetySFTConfig, output_dir, per_device_train_batch_size=4,
                     gradient_accumulation_steps=1 if deepspeed else 2, deepspeed=ZERO2 if deepspeed else None,
                     **{**EXACT_ARGS, "learning_rate": 0.2, **overrides})
    model, tok = load_tiny(tiny)
    return SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                          align_dataset=safety_prompt_completion(16) if align else None, processing_class=tok)


def outcome(trainer) -> dict:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
        "theta0": trainer._anchor.state_dict() if trainer._anchor is not None else {},
        "ema": trainer.ema_state_dict(),
        "align_lambda": trainer.align_lambda if trainer.align_dataset is not None else None,
        "deepspeed": trainer.is_deepspeed_enabled,
        "world_size": trainer.accelerator.num_processes,
    }


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    tiny, out_dir = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    results = {}
    for name, (overrides, align) in DS_VARIANTS.items():
        trainer = build(tiny, os.path.join(out_dir, f"run-{name}"), overrides, align, deepspeed=True)
        trainer.train()
        results[name] = outcome(trainer)
    refusals = {}
    for name, overrides in REFUSED.items():
        try:
            build(tiny, os.path.join(out_dir, f"refused-{name}"), overrides, False, deepspeed=True)
        except (ValueError, NotImplementedError) as err:
            refusals[name] = f"{type(err).__name__}: {err}"
    results["refusals"] = refusals
    torch.save(results, os.path.join(out_dir, f"deepspeed-rank{rank}.pt"))


if __name__ == "__main__":
    main()
