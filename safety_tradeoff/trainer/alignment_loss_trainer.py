# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Case I: `L_task + λ·L_align` with a proxy safety dataset, fixed λ or dual ascent towards `L_align ≤ ε`."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.utils.data import RandomSampler

from .alignment_loss_config import AlignmentLossConfig, validate_alignment_loss_args
from .base import SafetyTrainerBase
from .checkpoint_state import changed_setting_error, note_followed
from .concat_forward import check_concat_support, concat_forward_losses
from .dataset_checks import dataset_sample, validate_align_dataset

logger = logging.getLogger(__name__)


class AlignmentLossMixin(SafetyTrainerBase):
    """Case I. One proxy micro-batch is drawn for every task micro-batch from a cycled, distributed-aware loader; the
    proxy target tokens of the whole optimizer step (all micro-batches, all ranks) are counted up front, like the
    Trainer's `num_items_in_batch`, so `L_align` is the exact token mean of the step whatever the accumulation and
    world size. In `constraint` mode λ is updated after every optimizer step by dual ascent on the step's `L_align`
    (averaged over ranks)."""

    _align_dataset_required = True
    _handles_alignment = True

    def __init__(self, model, args=None, *positional, align_dataset=None, **kwargs):
        self._align_raw = align_dataset
        super().__init__(model, args, *positional, **kwargs)
        a = self.args
        self.align_lambda = float(a.align_lambda)
        self._align_active = align_dataset is not None and (a.align_mode == "constraint" or a.align_lambda > 0)
        self._align_dl = None
        self._align_it = None
        self._align_epoch = 0  # passes started over the proxy set
        self._align_pos = 0  # batches drawn in the current pass
        self._align_queue: list = []
        self._align_num_items = None
        self.align_dataset = self.prepare_align_dataset(align_dataset) if align_dataset is not None else None
        del self._align_raw
        if self._align_active and a.align_forward == "concat":
            check_concat_support(self)

    # ---- construction --------------------------------------------------------------------------------------------
    def _validate_inputs(self, args, train_dataset, eval_dataset, processing_class) -> None:
        super()._validate_inputs(args, train_dataset, eval_dataset, processing_class)
        if self._align_raw is None:
            if self._align_dataset_required:
                raise ValueError(
                    f"{type(self).__name__} needs `align_dataset=`, the proxy safety dataset of the alignment loss."
                )
            return
        validate_alignment_loss_args(args)
        sample = dataset_sample(train_dataset) if train_dataset is not None else None
        validate_align_dataset(self._align_raw, sample, args, processing_class)

    def _distributed_features(self, args) -> dict:
        features = super()._distributed_features(args)
        if self._align_raw is not None and (args.align_mode == "constraint" or args.align_lambda > 0):
            features["alignment_forward"] = args.align_forward
        return features

    def prepare_align_dataset(self, dataset):
        """Run the proxy set through SFTTrainer's preprocessing (chat template, EOS, tokenisation, label masking with
        `completion_only_loss` decided for this dataset, truncation to `max_length`), never packed."""
        if not self._skip_prepare_dataset:
            dataset = self._prepare_dataset(
                dataset, self.processing_class, self.args, packing=False, formatting_func=None, dataset_name="align"
            )
        if dataset_sample(dataset) is None:
            raise ValueError(
                "`align_dataset` has no example left after preparation: every example lost all its response tokens "
                f"to truncation (max_length={self.args.max_length})."
            )
        return dataset

    # ---- proxy loader -------------------------------------------------------------------------------------------
    def get_align_dataloader(self):
        """Same path as the train loader: column removal, collator, seeded sampler, worker seeding and
        `accelerator.prepare` (per-rank shards, device placement)."""
        batch_size = self.args.align_batch_size or self._train_batch_size

        def sampler_fn(dataset):
            if self.args.train_sampling_strategy == "batch_rebalance":  # sized for the task batches, not these
                return RandomSampler(dataset)
            return self._get_train_sampler(dataset)

        return self._get_dataloader(
            dataset=self.align_dataset,
            description="Alignment",
            batch_size=batch_size,
            sampler_fn=sampler_fn,
            is_training=True,
        )

    def _next_align_batch(self):
        if self._align_dl is None:
            self._align_dl = self.get_align_dataloader()
        while True:
            if self._align_it is None:
                if hasattr(self._align_dl, "set_epoch"):
                    self._align_dl.set_epoch(self._align_epoch)
                self._align_it = iter(self._align_dl)
                self._align_pos = 0
            try:
                batch = next(self._align_it)
            except StopIteration:
                if self._align_pos == 0:
                    raise RuntimeError(
                        "The proxy (align) dataloader yields no batch; with `dataloader_drop_last=True` the proxy set "
                        "needs at least align_batch_size × world_size examples."
                    ) from None
                self._align_it = None  # cycle: the proxy set is usually much smaller than the task set
                self._align_epoch += 1
                continue
            self._align_pos += 1
            return batch

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # Called once per optimizer step with its micro-batches: draw as many proxy micro-batches and count their
        # target tokens over the step (and over all ranks with `average_tokens_across_devices`, a collective).
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._align_queue = []
        if self._align_active and len(batch_samples) > 0:
            self._align_queue = [self._next_align_batch() for _ in batch_samples]
            self._align_num_items = self._get_num_items_in_batch(self._align_queue, device)
        return batch_samples, num_items_in_batch

    # ---- loss ---------------------------------------------------------------------------------------------------
    def _normalise(self, nll_sum, num_tokens, num_items):
        """Same convention as `SFTTrainer.compute_loss` for the task loss."""
        if num_items is None:  # per-micro-batch mean; the Trainer divides the loss by the accumulation steps
            return nll_sum / num_tokens.clamp(min=1)
        loss = nll_sum / torch.as_tensor(num_items).clamp(min=1)
        if self.args.average_tokens_across_devices:  # num_items counts every rank and DDP averages the ranks
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss

    def _lm_loss_sum(self, model, inputs):
        """Sum of the target-token NLLs and their number, through the fused LM head SFTTrainer installs."""
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        return (-outputs.log_probs).sum(), outputs.label_mask.sum()

    def _forward_losses(self, model, inputs, num_items_in_batch):
        if not (self._align_active and self._align_queue):
            return super()._forward_losses(model, inputs, num_items_in_batch)
        align_inputs = self._prepare_inputs(self._align_queue.pop(0))
        if self.args.align_forward == "concat":
            task_loss, align_loss = concat_forward_losses(self, model, inputs, align_inputs, num_items_in_batch,
                                                          self._align_num_items)
        else:
            task_loss = self._sft_compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
            # λ = 0 (constraint mode before the constraint binds): L_align is still needed for the dual update, but
            # not its gradient.
            ctx = torch.no_grad() if self.align_lambda == 0 else contextlib.nullcontext()
            with ctx:
                nll_sum, num_tokens = self._lm_loss_sum(model, align_inputs)
            align_loss = self._normalise(nll_sum, num_tokens, self._align_num_items)
        contribution = align_loss.detach().float() * self._metric_fraction(num_items_in_batch)
        previous = self._step_terms.get("align_loss")
        self._step_terms["align_loss"] = contribution if previous is None else previous + contribution
        return task_loss, align_loss

    def _combine_alignment(self, task_loss, align_loss):
        if align_loss is None:
            return task_loss
        return task_loss + self.align_lambda * align_loss.to(task_loss.dtype)

    # ---- dual ascent --------------------------------------------------------------------------------------------
    def _update_dual(self) -> None:
        super()._update_dual()
        if not self._align_active:
            return
        self._add_step_metric("align_lambda", self.align_lambda)  # the λ this step used
        if self.args.align_mode != "constraint":
            return
        value = self._step_terms.get("align_loss")
        if value is None:
            return
        if self.accelerator.num_processes > 1:  # the step's L_align over all ranks; identical λ everywhere
            value = self.accelerator.reduce(value.reshape(1), reduction="mean")
        lam = self.align_lambda + self.args.align_dual_lr * (float(value) - self.args.align_epsilon)
        lam = max(0.0, lam)
        if self.args.align_lambda_max is not None:
            lam = min(lam, self.args.align_lambda_max)
        self.align_lambda = lam

    # ---- checkpoint ---------------------------------------------------------------------------------------------
    def _align_batch_size(self) -> int:
        return self.args.align_batch_size or self._train_batch_size

    def _save_safety_state(self, checkpoint: str, state: dict) -> None:
        super()._save_safety_state(checkpoint, state)
        if self.align_dataset is not None:
            state["align"] = {
                "mode": self.args.align_mode,
                "lambda": self.align_lambda,
                "epoch": self._align_epoch,
                "batches_in_epoch": self._align_pos,
                "batch_size": self._align_batch_size(),
            }

    def _load_safety_state(self, checkpoint: str, state: dict) -> None:
        super()._load_safety_state(checkpoint, state)
        if self.align_dataset is None:
            return
        saved = state.get("align")
        if saved is None:
            if self.args.align_mode == "constraint":
                raise ValueError(
                    f"Resuming from {checkpoint}, which has no saved dual variable λ (align_mode='constraint'). "
                    "Resume from a checkpoint written by an alignment-loss trainer."
                )
            epoch, skip = 0, self.state.global_step * self.args.gradient_accumulation_steps
            logger.warning(
                "Checkpoint %s has no proxy-loader position: skipping %d proxy batches (one per task micro-batch).",
                checkpoint,
                skip,
            )
        else:
            self._restore_lambda(checkpoint, saved)
            epoch, skip = int(saved["epoch"]), self._batches_to_skip(checkpoint, state, saved)
        if not self._align_active:
            return
        self._align_it = None
        if self.args.ignore_data_skip:  # like the task loader: no fast-forward, a fresh pass (new order)
            self._align_epoch = epoch + 1
            return
        # Fast-forward the proxy loader (the Trainer only fast-forwards the task loader): replay the current pass up
        # to the saved position (collation only, no forward).
        self._align_epoch = epoch
        for _ in range(skip):
            self._next_align_batch()

    def _restore_lambda(self, checkpoint: str, saved: dict) -> None:
        """The dual variable is state (restored); a fixed λ is config (the config's value is used)."""
        mode = self.args.align_mode
        saved_mode = saved.get("mode", mode)  # format 1 did not record it: assume unchanged
        if mode == "constraint" and saved_mode == "constraint":
            self.align_lambda = float(saved["lambda"])
        elif saved_mode != mode:
            note_followed(checkpoint, "align_mode", saved_mode, mode,
                          f"λ = align_lambda = {self.align_lambda} from the config "
                          f"({'the dual ascent starts there' if mode == 'constraint' else 'fixed'}).")
        elif float(saved["lambda"]) != self.align_lambda:
            note_followed(checkpoint, "align_lambda", float(saved["lambda"]), self.align_lambda,
                          "the fixed λ of the config is used.")

    def _batches_to_skip(self, checkpoint: str, state: dict, saved: dict) -> int:
        """Proxy batches of the current pass to replay. The position is saved in batches of the old per-device batch
        size on the old world size; the examples consumed (batches × batch size × ranks, the same on every rank) are
        converted to batches of the new setup when they divide evenly, else the resume is refused."""
        batches = int(saved["batches_in_epoch"])
        old_size, old_world = saved.get("batch_size"), state.get("world_size")
        size, world = self._align_batch_size(), self.accelerator.num_processes
        if old_size is None or old_world is None or (old_size, old_world) == (size, world):
            return batches
        consumed, per_batch = batches * old_size * old_world, size * world
        if consumed % per_batch == 0 or self.args.ignore_data_skip:
            note_followed(checkpoint, "align_batch_size × world size", f"{old_size} × {old_world}",
                          f"{size} × {world}", f"the proxy loader resumes after the {consumed} examples drawn in "
                          "this pass.")
            return consumed // per_batch
        field = "align_batch_size" if old_size != size else "world size"
        raise changed_setting_error(checkpoint, field, old_size if old_size != size else old_world,
                      size if old_size != size else world,
                      f"the {consumed} proxy examples drawn in this pass are not a whole number of the new batches of "
                      f"{size} × {world} ranks, so the proxy loader's position cannot be restored exactly.",
                      "Set it back, choose a batch size that divides it, or set ignore_data_skip=True to start a fresh "
                      "proxy pass.")


class AlignmentLossSFTTrainer(AlignmentLossMixin):
    """`SFTTrainer` for Case I: minimises `L_task + λ·L_align`, `L_align` the response-token NLL on a proxy safety
    dataset (`align_dataset=`), with λ fixed (`align_mode="penalty"`) or adapted by dual ascent so that
    `L_align ≤ align_epsilon` (`align_mode="constraint"`). See [`AlignmentLossConfig`].

    Example:

    ```python
    trainer = AlignmentLossSFTTrainer(
        model=model, args=AlignmentLossConfig(output_dir="out", align_mode="constraint", align_epsilon=0.3),
        train_dataset=task_ds, align_dataset=safety_ds, processing_class=tokenizer,
        eval_dataset={"task": task_eval, "safety": safety_eval},
    )
    trainer.train()
    ```

    Logged every logging step: `task_loss`, `align_loss` (window means of the step values), `align_lambda` (mean λ
    used), besides SFTTrainer's metrics; `loss` is `task_loss + λ·align_loss`.
    """

    config_class = AlignmentLossConfig
    _validators = (validate_alignment_loss_args,)
