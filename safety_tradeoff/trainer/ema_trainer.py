# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""EMA of the weights in parameter space: θ̄ ← β·θ̄ + (1 − β)·θ after every optimizer step (or every k steps with β^k).

θ̄ is used wherever the Trainer hands out "the model": `evaluate()`, `save_model()`, `push_to_hub()` (also the pushes
of `push_to_hub=True` at each checkpoint) and the model kept by `load_best_model_at_end`, as `ema_eval`/`ema_save`
say; checkpoints keep the live weights (to resume) plus θ̄ in `ema_state.pt`.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from transformers.trainer_utils import HubStrategy

from .base import SafetyTrainerBase
from .checkpoint_state import EMA_NAME, note_followed
from .ema_config import EMAConfig, validate_ema_args
from .ema_shadow import EMAShadow
from .placement import trainable_named_parameters

logger = logging.getLogger(__name__)

EMA_PUSH_DIR = "_ema_push"
"""Folder under `output_dir` holding θ̄'s model files for the pushes made at each checkpoint (`push_to_hub=True`); the
Trainer never uploads `_*` paths of `output_dir`."""


class EMAMixin(SafetyTrainerBase):
    """EMA of the trainable parameters (the adapter weights with LoRA) in an fp32 shadow, initialised at θ₀ when
    training starts and updated after every optimizer step, after the Case II projection (so θ̄ averages feasible
    points). Evaluation and saving swap θ̄ into the model in place (deep copies of an SFTTrainer model would evaluate
    the live weights).

    Not TRL's `BEMACallback` (step-dependent β, full model copy, no resume, fails with LoRA) nor
    `torch.optim.swa_utils.AveragedModel` (deep copy); the update uses the same kernel as the latter's
    `get_ema_multi_avg_fn` (`_foreach_lerp_`)."""

    _handles_ema = True

    def __init__(self, model, args=None, *positional, **kwargs):
        super().__init__(model, args, *positional, **kwargs)
        a = self.args
        self.ema_beta = a.ema_beta
        self._ema_on = a.ema_beta is not None
        self._ema_dtype = getattr(torch, a.ema_dtype)
        self._ema: EMAShadow | None = None
        self._ema_pending = 0  # optimizer steps taken since θ̄ was last updated
        self._in_ema = False
        self._ema_for_internal_save = False  # save_model(_internal_call=True) writes θ̄ (Hub pushes)
        if self._ema_on and a.ema_log_distances:
            self._ensure_anchor()

    def _distributed_features(self, args) -> dict:
        features = super()._distributed_features(args)
        if args.ema_beta is not None:
            features["ema"] = True
            features["offload"] = features.get("offload", False) or bool(args.ema_offload)
        return features

    # ---- state --------------------------------------------------------------------------------------------------
    @property
    def _ema_shadow(self) -> list[torch.Tensor] | None:
        """θ̄'s tensors (aligned with the trainable parameters), None before training starts or without EMA."""
        return None if self._ema is None else self._ema.shadow

    def _bind_training_state(self, checkpoint: str | None, state: dict | None) -> None:
        super()._bind_training_state(checkpoint, state)
        if not self._ema_on:
            return
        named = trainable_named_parameters(self.model)
        if checkpoint is not None:
            self._ema = self._new_shadow(named, self._read_ema_file(checkpoint))
        elif self._ema is None:
            self._ema = self._new_shadow(named, None)
        else:  # a further train() call on the same trainer
            self._ema.bind(named)

    def _new_shadow(self, named, values) -> EMAShadow:
        return EMAShadow(named, self._ema_dtype, offload=self.args.ema_offload, values=values)

    @staticmethod
    def _read_ema_file(checkpoint: str, purpose: str = "Resuming from") -> dict[str, torch.Tensor]:
        path = os.path.join(checkpoint, EMA_NAME)
        if not os.path.isfile(path):
            raise ValueError(
                f"{purpose} {checkpoint}, which has no {EMA_NAME}: restarting the EMA from the checkpoint weights "
                "would silently change θ̄. Use a checkpoint written with the EMA on, or start a new run."
            )
        return torch.load(path, map_location="cpu", weights_only=True)

    @property
    def ema_num_bytes(self) -> int:
        return 0 if self._ema is None else self._ema.num_bytes

    def ema_state_dict(self, write: bool = True) -> dict[str, torch.Tensor] | None:
        """θ̄ by parameter name, as full CPU tensors (`{}` before training starts); a collective under FSDP2 (call
        on every rank); with `write=False` nothing is copied to host memory and None is returned."""
        if self._ema is None:
            return {} if write else None
        return self._ema.state_dict(write)

    def _save_safety_state(self, checkpoint: str, state: dict) -> None:
        super()._save_safety_state(checkpoint, state)
        if self._ema is None:
            return
        tensors = self.ema_state_dict(write=self.args.should_save)
        state["ema"] = {"beta": self.ema_beta, "dtype": self.args.ema_dtype, "update_every": self.args.ema_update_every,
                        "pending_steps": self._ema_pending, "num_tensors": len(self._ema.names)}
        if self.args.should_save:
            torch.save(tensors, os.path.join(checkpoint, EMA_NAME))
        if self._pushes_checkpoints():  # θ̄'s model files for the push that follows (every rank: may be collective)
            self._save_ema_for_push(os.path.join(self.args.output_dir, EMA_PUSH_DIR))

    def _load_safety_state(self, checkpoint: str, state: dict) -> None:
        super()._load_safety_state(checkpoint, state)
        if not self._ema_on:
            return
        saved = state.get("ema") or {}
        for field, current, consequence in (
            ("ema_beta", self.ema_beta, "θ̄ continues from the checkpoint's shadow with the new decay"),
            ("ema_dtype", self.args.ema_dtype, "the checkpoint's shadow was cast to the new dtype"),
            ("ema_update_every", self.args.ema_update_every, "θ̄ is updated at the new interval from now on"),
        ):
            key = {"ema_beta": "beta", "ema_dtype": "dtype", "ema_update_every": "update_every"}[field]
            if key in saved and saved[key] != current:
                note_followed(checkpoint, field, saved[key], current, consequence)
        self._ema_pending = int(saved.get("pending_steps", 0))

    # ---- update -------------------------------------------------------------------------------------------------
    def _update_ema(self) -> None:
        super()._update_ema()
        if not self._ema_on:
            return
        self._ema_pending += 1  # skipped fp16 steps never get here: they do not count
        if self._ema_pending >= self.args.ema_update_every:
            self._ema.update(1.0 - self.ema_beta ** self._ema_pending)
            self._ema_pending = 0

    def _distance_metrics(self) -> dict[str, float]:
        metrics = super()._distance_metrics()
        if self._ema is not None and self._anchor is not None:
            by_name = dict(zip(self._ema.names, self._ema.shadow, strict=True))
            tensors = [by_name[n] for n in self._anchor.names]
            metrics["ema_dist_to_theta0"] = float(self._anchor.sq_dist(tensors).sqrt())
        return metrics

    # ---- use of θ̄ ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def ema_weights(self):
        """Temporarily load θ̄ into the model's trainable parameters (one transient copy of them, in host memory with
        `ema_offload`); the live weights are restored bit for bit on exit. A no-op without EMA."""
        if self._ema is None or self._in_ema:
            yield
            return
        backup = self._ema.swap_in()
        self._in_ema = True
        try:
            yield
        finally:
            self._ema.restore(backup)
            self._in_ema = False

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        use = self.args.ema_eval if self._ema is not None else "live"
        if use == "live" or self._in_ema:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if use == "ema":
            with self.ema_weights():
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # both: a dict of eval sets recurses into evaluate() per set, whose leaves evaluate both weights
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        with self.ema_weights():
            metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_ema"))
        return metrics

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        use = self.args.ema_save if self._ema is not None else "live"
        # Checkpoints (`_internal_call=True`) keep the live weights, needed to resume; θ̄ goes to ema_state.pt. The
        # Hub pushes also call it with `_internal_call=True`: they set `_ema_for_internal_save`.
        if use == "live" or self._in_ema or (_internal_call and not self._ema_for_internal_save):
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if use == "both":
            super().save_model(os.path.join(output_dir, "live"), _internal_call=True)  # no push for this copy
        with self.ema_weights():
            super().save_model(output_dir, _internal_call)

    # ---- Hub ----------------------------------------------------------------------------------------------------
    def push_to_hub(self, *args, **kwargs):
        """`Trainer.push_to_hub`, uploading the weights `ema_save` names (θ̄ by default; with "both" θ̄ at the root
        and θ in `live/`)."""
        saved, self._ema_for_internal_save = self._ema_for_internal_save, True
        try:
            return super().push_to_hub(*args, **kwargs)
        finally:
            self._ema_for_internal_save = saved

    def _pushes_checkpoints(self) -> bool:
        """Whether each checkpoint is pushed (`push_to_hub=True`, `hub_strategy` other than "end") with θ̄ to upload."""
        return (self._ema is not None and self.args.ema_save != "live" and self.args.push_to_hub
                and self.args.hub_strategy != HubStrategy.END)

    def _save_ema_for_push(self, folder: str) -> None:
        saved, self._ema_for_internal_save = self._ema_for_internal_save, True
        try:
            self.save_model(folder, _internal_call=True)
        finally:
            self._ema_for_internal_save = saved

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Transformers copies the model files of the folder it is given into output_dir and uploads output_dir (and,
        # with hub_strategy "checkpoint"/"all_checkpoints", that folder as the checkpoint). Give it θ̄'s model files,
        # and upload the real checkpoint (live weights + ema_state.pt, to resume from) here.
        if not self._pushes_checkpoints():
            return super()._push_from_checkpoint(checkpoint_folder)
        from .hub_push import push_checkpoint_with_model_from

        push_checkpoint_with_model_from(self, checkpoint_folder, os.path.join(self.args.output_dir, EMA_PUSH_DIR),
                                        super()._push_from_checkpoint)

    # ---- best model ---------------------------------------------------------------------------------------------
    def _load_best_model(self) -> None:
        # The Trainer loads the best checkpoint's live weights; θ̄ (on whose metrics that checkpoint may have been
        # chosen, with ema_eval="ema") is restored from the same checkpoint, so evaluate/save_model use its θ̄.
        super()._load_best_model()
        if self._ema is None:
            return
        best = self.state.best_model_checkpoint
        values = self._read_ema_file(best, purpose="load_best_model_at_end: the best checkpoint is")
        self._ema = self._new_shadow(trainable_named_parameters(self.model), values)
        self._ema_pending = 0


class EMASFTTrainer(EMAMixin):
    """`SFTTrainer` with an EMA of the weights in parameter space (`ema_beta`), evaluated and saved by default. See
    [`EMAConfig`].

    Example:

    ```python
    trainer = EMASFTTrainer(model=model, args=EMAConfig(output_dir="out", ema_beta=0.99),
                            train_dataset=task_ds, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()  # writes θ̄ (ema_save="ema")
    with trainer.ema_weights():
        ...  # the model holds θ̄ here
    ```

    Logged every logging step: `task_loss`, and with `ema_log_distances=True` `dist_to_theta0` and
    `ema_dist_to_theta0`.
    """

    config_class = EMAConfig
    _validators = (validate_ema_args,)
