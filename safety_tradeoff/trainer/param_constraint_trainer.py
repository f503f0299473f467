# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Case II: stay close to the aligned weights θ₀, by the L2-SP penalty `(λ/2)·‖θ − θ₀‖²` and/or the ball
`‖θ − θ₀‖ ≤ r` (projection after every optimizer step)."""

from __future__ import annotations

import warnings

from .base import SafetyTrainerBase
from .param_constraint_config import ParamConstraintConfig, validate_param_constraint_args


def _anchor_active(args) -> bool:
    return args.anchor_lambda > 0 or args.anchor_radius is not None


class ParamConstraintMixin(SafetyTrainerBase):
    """Case II. θ₀ is the trainable parameters when training starts (after `accelerator.prepare` placed, cast or
    sharded them), persisted in checkpoints and reloaded on resume. With LoRA and `lora_delta="merged"`, θ₀ is the
    zero adapter delta and the distance is that of the merged weights."""

    _warn_if_inactive = False
    _handles_anchor = True

    def __init__(self, model, args=None, *positional, **kwargs):
        super().__init__(model, args, *positional, **kwargs)
        a = self.args
        self.anchor_lambda = float(a.anchor_lambda)
        self.anchor_radius = None if a.anchor_radius is None else float(a.anchor_radius)
        self._anchor_on = _anchor_active(a)
        if self._anchor_on:
            self._ensure_anchor()
            if a.weight_decay > 0:
                warnings.warn(
                    f"weight_decay={a.weight_decay} with Case II: weight decay pulls the weights toward 0, not toward "
                    "the aligned weights θ₀, working against the constraint. Set weight_decay=0 unless that is meant.",
                    stacklevel=2,
                )
        elif self._warn_if_inactive:
            warnings.warn(
                f"{type(self).__name__} with anchor_lambda=0 and no anchor_radius trains like SFTTrainer: set "
                "anchor_lambda > 0 and/or anchor_radius.",
                stacklevel=2,
            )

    def _distributed_features(self, args) -> dict:
        features = super()._distributed_features(args)
        if _anchor_active(args):
            features.update(anchor_active=True, anchor_mode=args.anchor_mode, anchor_radius=args.anchor_radius)
            features["offload"] = features.get("offload", False) or bool(args.anchor_offload)
        return features

    # ---- penalty ------------------------------------------------------------------------------------------------
    def _loss_penalty(self):
        penalty = super()._loss_penalty()
        if self._anchor_on and self.anchor_lambda > 0 and self.args.anchor_mode == "loss":
            own = 0.5 * self.anchor_lambda * self._anchor.sq_dist_autograd()
            penalty = own if penalty is None else penalty + own
        return penalty

    def _after_backward_sync(self) -> None:
        super()._after_backward_sync()
        if self._anchor_on and self.anchor_lambda > 0 and self.args.anchor_mode == "grad":
            # After the last micro-batch backward (DDP gradients already averaged), before clipping and the optimizer;
            # under fp16 the gradients still carry the loss scale, so the penalty's gradient must carry it too.
            # ‖θ − θ₀‖² (the logged penalty) costs two more passes over the parameters: only on logging steps.
            log = self._is_logging_step()
            sq = self._anchor.add_penalty_grad(self.anchor_lambda * self._loss_scale(), compute_sq=log)
            if log:
                self._set_log_metric("penalty", 0.5 * self.anchor_lambda * sq)

    # ---- after the optimizer step: decoupled pull, then the ball ---------------------------------------------------
    def _step_fractions(self) -> list[float]:
        """lr·λ for every anchor parameter, with the learning rate its optimizer group used in this step."""
        lr_of = {id(p): group["lr"] for group in self.optimizer.param_groups for p in group["params"]}
        default = self.optimizer.param_groups[0]["lr"]
        return [lr_of.get(id(p), default) * self.anchor_lambda for p in self._anchor.params]

    def _project(self) -> None:
        super()._project()
        if not self._anchor_on:
            return
        if self.anchor_lambda > 0 and self.args.anchor_mode == "decoupled":
            log = self._is_logging_step()
            sq = self._anchor.pull(self._step_fractions(), compute_sq=log)
            if log:
                self._set_log_metric("penalty", 0.5 * self.anchor_lambda * sq)
        if self.anchor_radius is not None:
            self._anchor.project(self.anchor_radius)


class ParamConstraintSFTTrainer(ParamConstraintMixin):
    """`SFTTrainer` for Case II: adds `(anchor_lambda/2)·‖θ − θ₀‖²` over the trainable parameters (on the gradient
    side by default, `anchor_mode="grad"`) and/or projects θ onto `‖θ − θ₀‖ ≤ anchor_radius` after every optimizer
    step. With a LoRA model (`peft_config=`), the distance is that of the merged weights from the base model,
    `Σ‖scaling·B·A‖_F²` (`lora_delta="merged"`). See [`ParamConstraintConfig`].

    Example:

    ```python
    trainer = ParamConstraintSFTTrainer(
        model=model, args=ParamConstraintConfig(output_dir="out", anchor_lambda=0.1, anchor_radius=2.0),
        train_dataset=task_ds, processing_class=tokenizer,
    )
    ```

    Logged every logging step: `task_loss`, `penalty` (`(λ/2)‖θ − θ₀‖²`: in loss mode the mean over the logging window
    before each update, as it is part of `loss`; in grad and decoupled modes, where it is not part of `loss`, the value
    at the logging step, before the update in grad mode, before the pull in decoupled mode), `dist_to_theta0`
    (‖θ − θ₀‖ after the logging step's update).
    """

    config_class = ParamConstraintConfig
    _validators = (validate_param_constraint_args,)
    _warn_if_inactive = True
