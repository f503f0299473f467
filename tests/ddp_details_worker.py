"""Worker of tests/test_trainer_ddp.py::test_ddp_details: one 2-rank DDP run (gloo, CPU) that checks what only shows
with several processes. Launched as

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_details_worker.py TINY_DIR OUT_DIR

- the model has a trainable parameter no forward uses (an unused tower, like MoE experts that get no token) and
  `ddp_find_unused_parameters` is left unset: DDP must be told to look for unused parameters, or it fails at the
  second step;
- checkpoints are written: only the writing rank may copy θ₀ and θ̄ to host memory (counted per rank);
- `LmEvalCallback` evaluates on rank 0 for longer than the process-group timeout (`ddp_timeout`): rank 1 must wait
  for it outside the training collectives.

Each rank saves what it saw to OUT_DIR/details-rank{r}.pt.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import warnings

import torch
from tiny_models import EXACT_ARGS, load_tiny, make_args, task_messages

from safety_tradeoff.trainer import EMAShadow, LmEvalCallback, ParameterAnchor, SafeSFTTrainer, SafetySFTConfig

DDP_TIMEOUT_S = 8
EVAL_SECONDS = DDP_TIMEOUT_S + 3


class SlowEval(LmEvalCallback):
    """Stands in for lm-eval's work: the first evaluation takes longer than the process-group timeout."""

    calls = 0

    def _evaluate(self) -> dict[str, float]:
        SlowEval.calls += 1
        if SlowEval.calls == 1:
            time.sleep(EVAL_SECONDS)
        return {"slow/metric": float(SlowEval.calls)}


def count_host_copies(cls, counts: dict) -> None:
    """Count the calls of `cls.state_dict` that copy to host memory (write=True) on this rank."""
    original = cls.state_dict

    def counted(self, write: bool = True):
        if write:
            counts[cls.__name__] = counts.get(cls.__name__, 0) + 1
        return original(self, write)

    cls.state_dict = counted


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    tiny, out_dir = sys.argv[1:]
    rank = int(os.environ["RANK"])
    counts: dict[str, int] = {}
    count_host_copies(ParameterAnchor, counts)
    count_host_copies(EMAShadow, counts)

    # The process group is created here: with `use_cpu=True` transformers does not pass `ddp_timeout` to it.
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=DDP_TIMEOUT_S))
    model, tok = load_tiny(tiny)
    model.model.unused_tower = torch.nn.Linear(8, 8)  # trainable, never used by the forward
    args = make_args(SafetySFTConfig, os.path.join(out_dir, "run"), ddp_backend="gloo",
                     per_device_train_batch_size=4, max_steps=3, save_strategy="steps", save_steps=1,
                     anchor_lambda=0.5, ema_beta=0.5, **{**EXACT_ARGS, "learning_rate": 0.2})
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(), processing_class=tok)
    trainer.add_callback(SlowEval(trainer, tasks=["safety_tradeoff_toy_harmful"], every_n_steps=1))
    trainer.train()
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    torch.save({"params": params, "host_copies": counts, "find_unused": trainer.args.ddp_find_unused_parameters,
                "log_history": trainer.state.log_history, "world_size": trainer.accelerator.num_processes},
               os.path.join(out_dir, f"details-rank{rank}.pt"))


if __name__ == "__main__":
    main()
