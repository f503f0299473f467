"""Precision and placement engines of the safety trainers, simulated on CPU: fp16 loss scaling, weights cast or moved
after the trainer is built, the decoupled pull toward θ₀, host-memory options and the sparse EMA update.

The expected values are computed here from recorded parameters and gradients, not by the trainers' own code."""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import LoraConfig
from tiny_models import EXACT_ARGS, load_tiny, make_args, max_abs_diff, task_messages, tiny_model_dir, trainable_params
from transformers import TrainerCallback

from safety_tradeoff.trainer import (
    EMAConfig,
    EMASFTTrainer,
    ParamConstraintConfig,
    ParamConstraintSFTTrainer,
    SafeSFTTrainer,
    SafetySFTConfig,
)

TOL = 1e-6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


def lora():
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")


def build(tiny, output_dir, trainer_cls=ParamConstraintSFTTrainer, config_cls=ParamConstraintConfig, use_lora=False,
          callbacks=None, model=None, **overrides):
    base, tok = load_tiny(tiny)
    args = make_args(config_cls, output_dir, **{**EXACT_ARGS, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer_cls(model=model if model is not None else base, args=args, train_dataset=task_messages(),
                           processing_class=tok, peft_config=lora() if use_lora else None, callbacks=callbacks)


# ---------------------------------------------------------------------------------------------------------------------
# fp16 loss scaling
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_grad_mode_penalty_is_not_divided_by_the_fp16_loss_scale(tiny, tmp_path, use_lora):
    """A loss scaler multiplies the gradients by its scale until the optimizer step divides them back: the
    gradient-side penalty must be added scaled too, so that training with a scaler ends where it ends without."""
    runs = {}
    for name, lam, scaler in (("plain", 1.0, False), ("scaled", 1.0, True), ("no_penalty", 0.0, True)):
        trainer = build(tiny, str(tmp_path / name), use_lora=use_lora, anchor_lambda=lam,
                        anchor_radius=None if lam else 1e3, learning_rate=0.2)
        if scaler:  # what fp16 mixed precision installs on a GPU, on CPU
            trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024)
        trainer.train()
        if scaler:
            assert trainer.accelerator.scaler.get_scale() == 1024  # no overflow: every step was taken
        runs[name] = trainable_params(trainer)
    assert max_abs_diff(runs["scaled"], runs["plain"]) < TOL
    assert max_abs_diff(runs["scaled"], runs["no_penalty"]) > 1e-3  # the penalty acts


# ---------------------------------------------------------------------------------------------------------------------
# θ₀ and θ̄ follow the weights as placed for training
# ---------------------------------------------------------------------------------------------------------------------
class AtTrainBegin(TrainerCallback):
    """Copies θ₀ and θ̄ as they are when the first step starts (after the trainer's own train-begin callback)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.theta0 = self.ema = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.theta0 = {n: t.clone() for n, t in self.trainer._anchor.theta0.items()}
        self.ema = {n: t.clone() for n, t in self.trainer.ema_state_dict().items()}


@pytest.mark.parametrize("anchor_dtype", ["auto", "float32"])
def test_theta0_and_ema_follow_a_cast_made_after_the_trainer_was_built(tiny, tmp_path, anchor_dtype):
    """CPU analogue of DeepSpeed / `bf16_full_eval` / `place_model_on_device=False`, which move or cast the model
    inside `train()`: θ₀ is taken from the weights training starts from, in their dtype (or `anchor_dtype`), and θ̄
    in fp32."""
    trainer = build(tiny, str(tmp_path), SafeSFTTrainer, SafetySFTConfig, anchor_lambda=0.5, anchor_radius=0.5,
                    anchor_dtype=anchor_dtype, ema_beta=0.5, max_steps=2)
    recorder = AtTrainBegin(trainer)
    trainer.add_callback(recorder)
    trainer.model.to(torch.bfloat16)
    start = trainable_params(trainer)
    trainer.train()
    expected_dtype = torch.bfloat16 if anchor_dtype == "auto" else torch.float32
    assert set(recorder.theta0) == set(start)
    for name, value in start.items():
        assert recorder.theta0[name].dtype == expected_dtype and torch.equal(recorder.theta0[name].float(),
                                                                            value.float()), name
        assert recorder.ema[name].dtype == torch.float32 and torch.equal(recorder.ema[name], value.float()), name
    logged = [r["dist_to_theta0"] for r in trainer.state.log_history if "dist_to_theta0" in r]
    assert len(logged) == 2 and 0 < logged[-1] <= 0.5 * (1 + 1e-2)  # bf16 rounding after the projection


# ---------------------------------------------------------------------------------------------------------------------
# Decoupled pull toward θ₀
# ---------------------------------------------------------------------------------------------------------------------
class StepRecorder(TrainerCallback):
    """θ and ∇ right before each optimizer step, θ right after the whole step (pull/projection/EMA included)."""

    def __init__(self):
        self.model = None
        self.before, self.grads, self.after = [], [], []

    def _params(self):
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.before.append(self._params())
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after.append(self._params())


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_decoupled_pull_formula(tiny, tmp_path, use_lora):
    """θ ← (θ − lr·∇) − lr·λ·((θ − lr·∇) − θ₀) after every SGD step (LoRA, merged delta: B ← (1 − lr·λ)·B after
    the step, A untouched), recomputed here from the recorded θ, ∇ and θ₀."""
    lr, lam = 0.2, 1.5
    recorder = StepRecorder()
    trainer = build(tiny, str(tmp_path), use_lora=use_lora, callbacks=[recorder], learning_rate=lr, anchor_lambda=lam,
                    anchor_mode="decoupled", max_steps=3)
    trainer.train()
    theta0 = trainer._anchor.theta0
    assert len(recorder.after) == 3
    for before, grads, after in zip(recorder.before, recorder.grads, recorder.after, strict=True):
        expected = {}
        for name, value in before.items():
            stepped = value.double() - lr * grads[name].double()
            if use_lora:
                expected[name] = (1 - lr * lam) * stepped if "lora_B" in name else stepped
            else:
                expected[name] = stepped - lr * lam * (stepped - theta0[name].double())
        assert max_abs_diff(after, expected) < TOL
    pulled = [r["penalty"] for r in trainer.state.log_history if "penalty" in r]
    assert len(pulled) == 3 and pulled[-1] > 0


def test_decoupled_fraction_above_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"learning_rate·anchor_lambda = 0\.5 × 3\.0 = 1\.5.*must be ≤ 1"):
        make_args(ParamConstraintConfig, str(tmp_path), learning_rate=0.5, anchor_lambda=3.0, anchor_mode="decoupled")


def test_weight_decay_with_case_ii_warns(tiny, tmp_path):
    model, tok = load_tiny(tiny)
    args = make_args(ParamConstraintConfig, str(tmp_path), anchor_lambda=0.1, weight_decay=0.01)
    with pytest.warns(UserWarning, match=r"weight_decay=0\.01 with Case II: weight decay pulls the weights toward 0"):
        ParamConstraintSFTTrainer(model=model, args=args, train_dataset=task_messages(), processing_class=tok)


# ---------------------------------------------------------------------------------------------------------------------
# Memory options
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["grad", "loss", "decoupled"])
def test_host_copies_give_the_same_run(tiny, tmp_path, mode):
    """`anchor_offload`/`ema_offload` change where θ₀ and θ̄ live, not the arithmetic (on CPU they stay on the CPU:
    this checks the staged code paths, not the transfer)."""
    kw = dict(anchor_lambda=0.5, anchor_mode=mode, anchor_radius=0.4, ema_beta=0.6, anchor_dtype="bfloat16")
    base = build(tiny, str(tmp_path / "a"), SafeSFTTrainer, SafetySFTConfig, **kw)
    base.train()
    off = build(tiny, str(tmp_path / "b"), SafeSFTTrainer, SafetySFTConfig, anchor_offload=True, ema_offload=True, **kw)
    off.train()
    assert off._anchor.offload and off._ema.offload
    assert max_abs_diff(trainable_params(base), trainable_params(off)) == 0.0
    assert max_abs_diff(base.ema_state_dict(), off.ema_state_dict()) == 0.0


@pytest.mark.parametrize("every", [1, 3])
def test_ema_every_k_steps_formula(tiny, tmp_path, every):
    """With `ema_update_every=k`, θ̄ ← β^k·θ̄ + (1 − β^k)·θ at steps k, 2k, ... and unchanged in between."""
    beta, steps = 0.7, 7
    recorder = StepRecorder()
    trainer = build(tiny, str(tmp_path), EMASFTTrainer, EMAConfig, callbacks=[recorder], ema_beta=beta,
                    ema_update_every=every, ema_dtype="float64", max_steps=steps, learning_rate=0.3)
    start = {n: p.detach().double().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    ema = dict(start)
    for step, after in enumerate(recorder.after, start=1):
        if step % every == 0:
            w = beta ** every
            ema = {n: w * ema[n] + (1 - w) * after[n].double() for n in ema}
    assert max_abs_diff(trainer.ema_state_dict(), ema) < 1e-12
    assert max_abs_diff(ema, start) > 1e-3
