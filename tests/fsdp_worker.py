"""Worker of tests/test_trainer_fsdp.py: the safety trainers under FSDP2 on 2 CPU processes (gloo), launched the way
users launch FSDP,

    accelerate launch --config_file tests/accelerate_fsdp2_cpu.yaml tests/fsdp_worker.py TINY_DIR OUT_DIR

Each rank runs `per_device_train_batch_size=4`, GA=1 on 2 ranks: the global batch of one process with batch 4 and
GA=2, which the test runs in-process and compares against. Then a run stopped at step 2 and resumed from its (sharded)
checkpoint is compared with the uninterrupted one.

accelerate 1.16 only selects FSDP for accelerator devices: on a CPU-only machine a `--cpu` launch is MULTI_CPU (DDP),
and a launch without it is `DistributedType.NO` (independent processes; state.py, `_prepare_backend` and the FSDP
branch of `AcceleratorState.__init__`). `use_fsdp_on_cpu` declares the gloo process group a multi-device one, so
that `AcceleratorState` takes the FSDP config `accelerate launch` exported (ACCELERATE_USE_FSDP, FSDP_VERSION=2, ...);
`fully_shard`, the DTensor parameters, the optimizer and the sharded checkpoints are accelerate's and torch's own.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
from tiny_models import (
    ALL_MECHANISMS,
    EXACT_ARGS,
    StopAt,
    load_tiny,
    make_args,
    safety_prompt_completion,
    task_messages,
)

from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig
from safety_tradeoff.trainer.placement import is_dtensor, to_full_tensor

# name -> config overrides (SGD without clipping: any scaling error shows 1:1 in the update)
FSDP_VARIANTS = {
    "grad": dict(anchor_lambda=0.5),
    "loss": dict(anchor_lambda=0.5, anchor_mode="loss"),
    "decoupled": dict(anchor_lambda=0.5, anchor_mode="decoupled"),
    "ball": dict(anchor_radius=0.3),
    "ema": dict(ema_beta=0.5),
    "all": dict(ALL_MECHANISMS),
}
RESUME = dict(ALL_MECHANISMS, max_steps=4, save_strategy="steps", save_steps=2, optim="adamw_torch",
              learning_rate=1e-2, lr_scheduler_type="linear")


def use_fsdp_on_cpu() -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU


def outcome(trainer) -> dict:
    """Full (gathered) trainable parameters, θ₀ and θ̄ by name, and whether θ₀/θ̄ are shards (a collective)."""
    params = {}
    for name, p in trainer.model.named_parameters():
        if p.requires_grad:
            params[name.replace("_fsdp_wrapped_module.", "").replace("module.", "")] = to_full_tensor(p.detach()).cpu()
    anchor = trainer._anchor
    shadow = trainer._ema_shadow or []
    return {
        "params": params,
        "theta0": anchor.state_dict() if anchor is not None else {},
        "ema": trainer.ema_state_dict(),
        "align_lambda": getattr(trainer, "align_lambda", None),
        "theta0_sharded": [is_dtensor(t) and t.to_local().numel() < t.numel() for t in
                           (anchor.theta0.values() if anchor is not None else [])],
        "ema_sharded": [is_dtensor(t) and t.to_local().numel() < t.numel() for t in shadow],
        "world_size": trainer.accelerator.num_processes,
        "fsdp": trainer.is_fsdp_enabled,
    }


def run(tiny: str, output_dir: str, overrides: dict, fsdp: bool, callbacks=None, resume=None):
    args = make_args(SafetySFTConfig, output_dir, per_device_train_batch_size=4,
                     gradient_accumulation_steps=1 if fsdp else 2, ddp_backend="gloo" if fsdp else None,
                     **{**EXACT_ARGS, "learning_rate": 0.5, **overrides})
    if fsdp:
        use_fsdp_on_cpu()
    model, tok = load_tiny(tiny)
    align = overrides.get("align_mode") == "constraint"
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                             align_dataset=safety_prompt_completion(16) if align else None, processing_class=tok,
                             callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    tiny, out_dir = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    results = {}
    for name, overrides in FSDP_VARIANTS.items():
        results[name] = outcome(run(tiny, os.path.join(out_dir, f"run-{name}"), overrides, fsdp=True))
    full = run(tiny, os.path.join(out_dir, "resume-full"), RESUME, fsdp=True)
    results["resume-full"] = outcome(full)
    part_dir = os.path.join(out_dir, "resume-part")
    run(tiny, part_dir, RESUME, fsdp=True, callbacks=[StopAt(2)])
    resumed = run(tiny, part_dir, RESUME, fsdp=True, resume=os.path.join(part_dir, "checkpoint-2"))
    results["resumed"] = outcome(resumed)
    torch.save(results, os.path.join(out_dir, f"fsdp-rank{rank}.pt"))


if __name__ == "__main__":
    main()
