"""The toy world's training recipe: TRL's `SFTTrainer` with the settings measured to work on a CPU."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PrinterCallback
from trl import SFTConfig, SFTTrainer


def toy_sft_config(output_dir: str, *, steps: int, lr: float, batch_size: int, seed: int,
                   max_length: int = 128, progress: bool = False, **overrides: Any) -> SFTConfig:
    """SFTConfig for tiny CPU models: cosine schedule with 5% warm-up, AdamW(0.9, 0.98), clip 1.0.

    Checkpointing, logging integrations and mixed precision are off: a toy run takes seconds and
    must give the same weights on any machine.
    """
    values: dict[str, Any] = dict(
        output_dir=output_dir, max_steps=steps, learning_rate=lr, per_device_train_batch_size=batch_size,
        lr_scheduler_type="cosine", warmup_steps=0.05, adam_beta1=0.9, adam_beta2=0.98, weight_decay=0.0,
        max_grad_norm=1.0, seed=seed, data_seed=seed, max_length=max_length, logging_strategy="steps" if progress else "no",
        logging_steps=max(1, steps // 4), log_level="warning" if progress else "error",
        save_strategy="no", report_to="none", bf16=False, fp16=False, use_cpu=True,
        activation_checkpointing=False, dataloader_num_workers=0, disable_tqdm=not progress,
        ddp_find_unused_parameters=False,
    )
    values.update(overrides)
    return SFTConfig(**values)


def sft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, *, steps: int,
        lr: float, batch_size: int, seed: int, max_length: int = 128, progress: bool = False,
        **overrides: Any) -> PreTrainedModel:
    """Plain supervised fine-tuning (completion-only loss on prompt-completion data), in place.

    `overrides` replace `toy_sft_config`'s settings (the real-model world aligns with a constant rate)."""
    with tempfile.TemporaryDirectory(prefix="safety_tradeoff_sft_") as out, quiet_datasets(not progress):
        args = toy_sft_config(out, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                              max_length=max_length, progress=progress, **overrides)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        if not progress:
            trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict even with logging off
        trainer.train()
    model.eval()
    return model


@contextlib.contextmanager
def cpu_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with `n` intra-op threads (default: `OMP_NUM_THREADS` when set, else up to 2).

    Tiny models slow down with many threads (oversubscription); training the toy world on 2 threads is
    ~1.5x faster than on one when nothing else runs. A process that shares the cores (a sweep worker, a
    test worker) says so with `OMP_NUM_THREADS`, and taking more threads there makes everything several
    times slower (measured: a toy test 80 s alone, 330 s beside another 1-thread worker).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n or int(os.environ.get("OMP_NUM_THREADS") or 0) or min(2, os.cpu_count() or 1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_datasets(quiet: bool = True) -> Iterator[None]:
    """Hide `datasets`' per-map progress bars (thousands of them drown a build's stage lines)."""
    import datasets

    was_on = not datasets.utils.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if quiet and was_on:
            datasets.enable_progress_bars()
