# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Plumbing shared by the safety trainers: argument handling, input checks, the θ₀ anchor, per-step hooks, metrics,
non-finite loss detection and the extra checkpoint state.

The extra copies of the weights (θ₀, θ̄) are taken when training starts (`on_train_begin`, after `accelerator.prepare`
has placed, cast or sharded the model, and after a resumed run loaded its checkpoint), from the checkpoint when
resuming, from the live weights otherwise; each copy follows its parameter's device, dtype and FSDP2 sharding.

`SafetyTrainerBase` orchestrates; the mixins (Case I, Case II, EMA) fill in hooks:

| hook | called | implemented by |
|---|---|---|
| `_forward_losses` | every training micro-batch, returns (task loss, alignment loss or None) | Case I |
| `_loss_penalty` | every training micro-batch, returns a penalty added to the loss or None | Case II (`loss`) |
| `_after_backward_sync` | after the backward of the last micro-batch of a step (grads all-reduced) | Case II (`grad`) |
| `_update_dual`, `_project`, `_update_ema` | after `optimizer.step()`, in this order | Case I, Case II, EMA |
| `_bind_training_state`, `_save_safety_state`, `_load_safety_state`, `_distance_metrics`, `_validate_inputs`, \
`_distributed_features` | cooperative (each mixin calls `super()`) | all |

`ddp_find_unused_parameters` is left to transformers (True unless activation checkpointing is on): models with
parameters unused on some steps (MoE experts, unused towers) need it; dense models train faster with it set to False.

Private TRL/transformers API used (pinned `trl==1.16.*`, `transformers==5.23.*`): `SFTTrainer._prepare_dataset`,
`completion_only_loss`, `_skip_prepare_dataset`, `_metrics`, `_total_train_tokens`, `_tp_size`, `_tokenizer`,
`padding_free`, `aux_loss_enabled`, the fused LM head (`fused_lm_head=True`); `Trainer._get_dataloader`,
`_get_train_sampler`, `_get_num_items_in_batch`, `_prepare_inputs`, `_get_output_dir`, `_train_batch_size`,
`current_gradient_accumulation_steps`, `model_accepts_loss_kwargs`, `loss_is_scaled_for_ga`, and accelerate's
`optimizer_step_was_skipped`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings

import torch
from accelerate.utils import is_peft_model
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from .anchor import ParameterAnchor
from .checkpoint_state import (
    ANCHOR_NAME,
    STATE_FORMAT_VERSION,
    changed_setting_error,
    read_state,
    write_state,
)
from .dataset_checks import check_chat_template, dataset_sample
from .distributed_support import check_distributed_support, engine_of
from .errors import NonFiniteLossError
from .lora_delta import find_lora_pairs
from .placement import trainable_named_parameters
from .safety_sft_config import SafetySFTConfig
from .step_metrics import StepMetricsMixin

logger = logging.getLogger(__name__)


class _SafetyStepCallback(TrainerCallback):
    """Forwards the Trainer events the safety mechanisms need to the trainer."""

    def __init__(self, trainer: SafetyTrainerBase):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._on_train_begin()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # After optimizer.step(), before zero_grad() and the scheduler step.
        self.trainer._on_optimizer_step()


class SafetyTrainerBase(StepMetricsMixin, SFTTrainer):
    """`SFTTrainer` with the plumbing of the safety mechanisms; use one of the concrete trainers."""

    config_class: type[SFTConfig] = SafetySFTConfig
    _validators = ()  # config-group validators run on `args` at construction
    _handles_alignment = False  # set by the mixins (used to warn about config fields a trainer ignores)
    _handles_anchor = False
    _handles_ema = False

    def __init__(self, model, args: SFTConfig | TrainingArguments | None = None, *positional, **kwargs):
        bound = inspect.signature(SFTTrainer.__init__).bind(self, model, args, *positional, **kwargs)
        params = bound.arguments
        params.pop("self")
        params["args"] = self._coerce_args(model, params.get("args"))
        args = params["args"]
        for validate in self._validators:
            validate(args)
        self._warn_unused_fields(args)
        self._validate_inputs(args, params.get("train_dataset"), params.get("eval_dataset"),
                              params.get("processing_class"))

        # State set up before SFTTrainer.__init__ (which may call overridden methods such as _prepare_dataset).
        self._anchor: ParameterAnchor | None = None
        self._anchor_lora_merged = False
        self._anchor_wanted = False
        self._resume_checkpoint: str | None = None
        self._resume_state: dict | None = None
        self._window: dict[str, torch.Tensor] = {}
        self._log_values: dict[str, torch.Tensor] = {}
        self._window_steps = 0
        self._step_terms: dict[str, torch.Tensor] = {}

        super().__init__(**params)

        check_distributed_support(**engine_of(self), **self._distributed_features(args))
        self.add_callback(_SafetyStepCallback(self))

    # ------------------------------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------------------------------
    @classmethod
    def _coerce_args(cls, model, args):
        """Return `args` as an instance of `cls.config_class` (like SFTTrainer does for `TrainingArguments`)."""
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            return cls.config_class(f"{str(name).rstrip('/').split('/')[-1]}-SFT")
        if isinstance(args, cls.config_class):
            return args
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"`args` must be a {cls.config_class.__name__}, got {type(args).__name__}.")
        # Not `to_dict()`: it masks every `*_token` field (eos_token, pad_token, hub_token) with a placeholder.
        dict_args = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
        known = {f.name for f in dataclasses.fields(cls.config_class) if f.init}
        dropped = sorted(k for k in dict_args if k not in known)
        if dropped:
            warnings.warn(
                f"{cls.__name__} uses {cls.config_class.__name__}; ignoring {type(args).__name__} fields {dropped}.",
                stacklevel=3,
            )
        return cls.config_class(**{k: v for k, v in dict_args.items() if k in known})

    def _warn_unused_fields(self, args) -> None:
        unused = []
        if not self._handles_alignment and getattr(args, "align_mode", "penalty") == "constraint":
            unused.append("align_*")
        if not self._handles_anchor and (
            getattr(args, "anchor_lambda", 0.0) or getattr(args, "anchor_radius", None) is not None
        ):
            unused.append("anchor_*")
        if not self._handles_ema and getattr(args, "ema_beta", None) is not None:
            unused.append("ema_*")
        if unused:
            warnings.warn(
                f"{type(self).__name__} ignores the {', '.join(unused)} settings of its config; use SafeSFTTrainer "
                "to combine the mechanisms.",
                stacklevel=3,
            )

    def _validate_inputs(self, args, train_dataset, eval_dataset, processing_class) -> None:
        """Checks on the datasets and tokenizer before `SFTTrainer.__init__` (cooperative: mixins extend it)."""
        if train_dataset is not None:
            check_chat_template(dataset_sample(train_dataset), processing_class, args, "train")
        if isinstance(eval_dataset, dict):
            for key, ds in eval_dataset.items():
                check_chat_template(dataset_sample(ds), processing_class, args, f"eval '{key}'")
        elif eval_dataset is not None:
            check_chat_template(dataset_sample(eval_dataset), processing_class, args, "eval")

    def _distributed_features(self, args) -> dict:
        """Which mechanisms are on, for `check_distributed_support` (cooperative: mixins add their keys)."""
        return {}

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        # SFTTrainer decides `completion_only_loss` once, from the *train* set's format, and reuses it for every
        # dataset it prepares. Decide it per dataset instead, so that a prompt-completion eval or proxy set next to a
        # `messages` train set keeps its prompts out of the loss (they would otherwise be trained/evaluated on).
        saved = self.completion_only_loss
        sample = dataset_sample(dataset) if args.completion_only_loss is None else None
        if sample is not None and "input_ids" not in sample:
            self.completion_only_loss = "prompt" in sample and "completion" in sample
        try:
            return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
        finally:
            self.completion_only_loss = saved

    def _ensure_anchor(self) -> None:
        """Ask for θ₀ (taken when training starts, see `_bind_training_state`). A LoRA setup the merged-delta distance
        cannot measure is refused here, before any training."""
        if self._anchor_wanted:
            return
        self._anchor_wanted = True
        self._anchor_lora_merged = is_peft_model(self.model) and getattr(self.args, "lora_delta", "merged") == "merged"
        if self._anchor_lora_merged:
            pairs = find_lora_pairs(self.model)
            ParameterAnchor(trainable_named_parameters(self.model), pairs).warn_if_lora_not_at_base()

    def _new_anchor(self, checkpoint: str | None) -> ParameterAnchor:
        """θ₀ of the trainable parameters as placed now: from `checkpoint` when resuming, else their current values."""
        named = trainable_named_parameters(self.model)
        pairs = find_lora_pairs(self.model) if self._anchor_lora_merged else ()
        dtype_name = getattr(self.args, "anchor_dtype", "auto")
        dtype = None if dtype_name in (None, "auto") else getattr(torch, dtype_name)
        values = None
        if checkpoint is not None:
            values = lambda: self._read_anchor_file(checkpoint)  # noqa: E731 (only read if θ₀ has copies)
        return ParameterAnchor(named, pairs, dtype, offload=bool(getattr(self.args, "anchor_offload", False)),
                               values=values)

    def _read_anchor_file(self, checkpoint: str) -> dict[str, torch.Tensor]:
        path = os.path.join(checkpoint, ANCHOR_NAME)
        if not os.path.isfile(path):
            raise ValueError(
                f"Resuming from {checkpoint}, which has no {ANCHOR_NAME} (θ₀). Taking θ₀ from the weights in memory "
                "could anchor the constraint on the checkpoint itself instead of the aligned model. Resume from a "
                "checkpoint written by a safety trainer with the anchor on, or start a new run from the aligned model."
            )
        return load_file(path)

    # ------------------------------------------------------------------------------------------------------------------
    # Hooks (no-ops here; mixins override)
    # ------------------------------------------------------------------------------------------------------------------
    def _forward_losses(self, model, inputs, num_items_in_batch):
        """(task loss, alignment loss or None) for one training micro-batch."""
        return self._sft_compute_loss(model, inputs, num_items_in_batch=num_items_in_batch), None

    def _combine_alignment(self, task_loss, align_loss):
        return task_loss

    def _loss_penalty(self):
        return None

    def _after_backward_sync(self) -> None:
        pass

    def _update_dual(self) -> None:
        pass

    def _project(self) -> None:
        pass

    def _update_ema(self) -> None:
        pass

    def _distance_metrics(self) -> dict[str, float]:
        if self._anchor is None:
            return {}
        return {"dist_to_theta0": float(self._anchor.sq_dist().sqrt())}

    # ------------------------------------------------------------------------------------------------------------------
    # Training loop integration
    # ------------------------------------------------------------------------------------------------------------------
    def _sft_compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        """Mirror of `Trainer.training_step`: True if the loss is already normalised over the whole optimizer step
        (then the Trainer does not divide it by the number of accumulation micro-batches)."""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None

    def _per_step_scale(self, num_items_in_batch) -> float:
        """Factor for a term added to *every* micro-batch that must count once per optimizer step."""
        scaled = self._loss_is_scaled_for_ga(num_items_in_batch)
        return 1.0 / self.current_gradient_accumulation_steps if scaled else 1.0

    def _loss_scale(self) -> float:
        """The fp16 loss scale the gradients carry until the optimizer unscales them (1.0 without a grad scaler): a
        term added to the gradients directly must carry it too, or it is divided by it at the step."""
        scaler = getattr(self.accelerator, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def _metric_fraction(self, num_items_in_batch) -> float:
        """Factor turning a micro-batch loss term into its contribution to the step value."""
        scaled = self._loss_is_scaled_for_ga(num_items_in_batch)
        return 1.0 if scaled else 1.0 / self.current_gradient_accumulation_steps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.model.training or return_outputs:  # evaluation: plain SFT loss
            return self._sft_compute_loss(model, inputs, return_outputs, num_items_in_batch)
        frac = self._metric_fraction(num_items_in_batch)
        task_loss, align_loss = self._forward_losses(model, inputs, num_items_in_batch)
        loss = self._combine_alignment(task_loss, align_loss)
        penalty = self._loss_penalty()
        if penalty is not None:
            loss = loss + self._per_step_scale(num_items_in_batch) * penalty.to(device=loss.device, dtype=loss.dtype)
        self._check_finite(loss, task_loss=task_loss, align_loss=align_loss, penalty=penalty)
        self._add_step_metric("task_loss", task_loss.detach() * frac)
        if align_loss is not None:
            self._add_step_metric("align_loss", align_loss.detach() * frac)
        if penalty is not None:  # identical in every micro-batch of the step: counted once per step
            self._add_step_metric("penalty", penalty.detach() / self.current_gradient_accumulation_steps)
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:  # last micro-batch of the step: gradients are complete (and all-reduced)
            self._after_backward_sync()
        return loss

    def _on_optimizer_step(self) -> None:
        self._window_steps += 1
        if self.accelerator.optimizer_step_was_skipped:  # fp16 overflow: the parameters did not change
            self._step_terms.clear()
            return
        self._update_dual()
        self._project()  # projection first, so that the EMA averages feasible points
        self._update_ema()
        self._step_terms.clear()

    def _check_finite(self, loss, **terms) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self.accelerator.num_processes > 1:  # every rank stops together (a collective)
            bad = self.accelerator.reduce(bad.float().reshape(1), reduction="sum") > 0
        if not bool(bad):
            return
        parts = ", ".join(
            f"{name}={float(value.detach().float()) if torch.is_tensor(value) else float(value):.6g}"
            for name, value in terms.items()
            if value is not None
        )
        output_dir = self._get_output_dir(trial=None)
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        raise NonFiniteLossError(
            f"non-finite loss at step {self.state.global_step + 1} (global step; {parts}). Training was stopped "
            f"before this step's update; last saved checkpoint: {last or 'none'}. Lower the learning rate or the "
            "penalty weights, or inspect the batch."
        )

    # ------------------------------------------------------------------------------------------------------------------
    # Train start, checkpoint and resume
    # ------------------------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)  # None: the Trainer raises its own error
        elif checkpoint is False:
            checkpoint = None
        self._resume_checkpoint = checkpoint
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def _on_train_begin(self) -> None:
        """After `accelerator.prepare` and after the Trainer loaded the checkpoint weights (cooperative)."""
        self._window.clear()
        self._log_values.clear()
        self._window_steps = 0
        self._step_terms.clear()
        checkpoint = self._resume_checkpoint
        self._resume_state = read_state(checkpoint) if checkpoint is not None else None
        self._bind_training_state(checkpoint, self._resume_state)
        if checkpoint is not None:
            self._load_safety_state(checkpoint, self._resume_state)

    def _bind_training_state(self, checkpoint: str | None, state: dict | None) -> None:
        """Create the extra copies of the weights, or pair existing ones with the (possibly re-created) live parameters,
        now that `accelerator.prepare` placed them (cooperative); from `checkpoint` when resuming (`state` is its JSON,
        `{}` if absent). Runs before `_load_safety_state`."""
        if not self._anchor_wanted:
            return
        if checkpoint is not None:
            saved = (state or {}).get("anchor", {}).get("lora_delta")
            current = getattr(self.args, "lora_delta", "merged") if is_peft_model(self.model) else None
            if saved is not None and saved != current:
                raise changed_setting_error(checkpoint, "lora_delta", saved, current,
                              "θ₀ in the checkpoint measures another distance.",
                              "Resume with the checkpoint's lora_delta or start a new run.")
            self._anchor = self._new_anchor(checkpoint)
        elif self._anchor is None:
            self._anchor = self._new_anchor(None)
        else:  # a further train() call on the same trainer
            self._anchor.bind(trainable_named_parameters(self.model))

    def _load_safety_state(self, checkpoint: str, state: dict) -> None:
        """Restore the scalar state from a checkpoint and check it against the config (cooperative). `state` is the
        JSON, `{}` if absent."""

    def _save_safety_state(self, checkpoint: str, state: dict) -> None:
        """Write the extra tensors of a checkpoint and fill `state` for the JSON (cooperative; on every rank: gathering
        sharded tensors is a collective, but only the `args.should_save` rank copies them to host memory and writes)."""
        if self._anchor is None:
            return
        lora_delta = getattr(self.args, "lora_delta", "merged") if is_peft_model(self.model) else None
        state["anchor"] = {"num_tensors": len(self._anchor.theta0), "lora_merged_pairs": len(self._anchor.lora),
                           "lora_delta": lora_delta, "dtype": str(self._anchor.dtype or "auto")}
        if self._anchor.theta0:
            tensors = self._anchor.state_dict(write=self.args.should_save)
            if self.args.should_save:
                save_file(tensors, os.path.join(checkpoint, ANCHOR_NAME), metadata={"format": "pt"})

    def _save_checkpoint(self, model, trial):
        # The extra state is written first, so a checkpoint that has the Trainer's trainer_state.json (written last)
        # has the safety state too, even if the process dies while saving.
        checkpoint = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save:
            os.makedirs(checkpoint, exist_ok=True)
        state = {"format_version": STATE_FORMAT_VERSION, "global_step": self.state.global_step,
                 "world_size": self.accelerator.num_processes}
        self._save_safety_state(checkpoint, state)
        if self.args.should_save:
            write_state(checkpoint, state)
        super()._save_checkpoint(model, trial)
