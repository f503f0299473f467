# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Checkpoint pushes (`push_to_hub=True`) whose model files are not the checkpoint's (θ̄ instead of the live weights).

`Trainer._push_from_checkpoint(folder)` copies the model files of `folder` into `output_dir`, uploads `output_dir` and,
with `hub_strategy` "checkpoint"/"all_checkpoints", uploads `folder` itself as the checkpoint. Here the Trainer's
function is given the folder holding θ̄'s model files with the checkpoint upload switched off, and the real
checkpoint folder (live weights and `ema_state.pt`, what a resume needs) is uploaded the way the Trainer does it.
"""

from __future__ import annotations

from pathlib import Path

from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils import hf_api


def push_checkpoint_with_model_from(trainer, checkpoint_folder: str, model_folder: str, transformers_push) -> None:
    """Push like `transformers_push(checkpoint_folder)` (the bound `Trainer._push_from_checkpoint`), but with the
    model files of `model_folder` at the root of the repository."""
    args = trainer.args
    if not trainer.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
        return
    in_progress = getattr(trainer, "push_in_progress", None)
    if not args.hub_always_push and in_progress is not None and not in_progress.is_done():
        return  # the Trainer's rule: skip this push while the previous one runs
    strategy = args.hub_strategy
    args.hub_strategy = HubStrategy.EVERY_SAVE  # the Trainer's code uploads the model folder only
    try:
        transformers_push(model_folder)
    finally:
        args.hub_strategy = strategy
    if strategy not in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
        return
    if args.save_strategy == SaveStrategy.STEPS:
        message = f"Training in progress, step {trainer.state.global_step}, checkpoint"
    else:
        message = f"Training in progress, epoch {int(trainer.state.epoch)}, checkpoint"
    path_in_repo = "last-checkpoint" if strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
    job = hf_api().upload_folder(
        repo_id=trainer.hub_model_id, folder_path=checkpoint_folder, path_in_repo=path_in_repo,
        commit_message=message, token=args.hub_token, run_as_future=True, revision=args.hub_revision,
    )
    trainer.push_in_progress.jobs.append(job)
