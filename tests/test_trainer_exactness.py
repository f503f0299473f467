"""Numerical exactness of the safety trainers (tiny random Llama, CPU, fp32, SGD without clipping).

- gradient accumulation: GA=1 at batch 2B equals GA=2 at batch B, for every mechanism (params, θ̄, dual λ) to 1e-6;
- Case II: the gradient-side penalty equals autograd of (λ/2)‖θ − θ₀‖²; grad mode equals loss mode; the ball is
  respected after every step; the LoRA merged-delta penalty equals Σ‖get_delta_weight()‖² from peft.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from tiny_models import (
    ALL_MECHANISMS,
    EXACT_ARGS,
    load_tiny,
    make_args,
    max_abs_diff,
    safety_prompt_completion,
    snapshot,
    task_messages,
    tiny_model_dir,
    trainable_params,
)
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from safety_tradeoff.trainer import (
    AlignmentLossConfig,
    AlignmentLossSFTTrainer,
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


# name -> (trainer class, config class, config overrides, uses the proxy set, LoRA)
VARIANTS = {
    "caseI_penalty": (
        AlignmentLossSFTTrainer,
        AlignmentLossConfig,
        dict(align_lambda=1.0, learning_rate=0.2),
        True,
        False,
    ),
    "caseI_constraint": (
        AlignmentLossSFTTrainer,
        AlignmentLossConfig,
        dict(align_mode="constraint", align_lambda=0.5, align_epsilon=5.5, align_dual_lr=0.5, learning_rate=0.2),
        True,
        False,
    ),
    "caseI_concat": (
        AlignmentLossSFTTrainer,
        AlignmentLossConfig,
        dict(align_lambda=1.0, align_forward="concat", learning_rate=0.2),
        True,
        False,
    ),
    "caseII_grad": (ParamConstraintSFTTrainer, ParamConstraintConfig, dict(anchor_lambda=0.5), False, False),
    "caseII_loss": (
        ParamConstraintSFTTrainer,
        ParamConstraintConfig,
        dict(anchor_lambda=0.5, anchor_mode="loss"),
        False,
        False,
    ),
    "caseII_ball": (ParamConstraintSFTTrainer, ParamConstraintConfig, dict(anchor_radius=0.3), False, False),
    "ema": (EMASFTTrainer, EMAConfig, dict(ema_beta=0.5), False, False),
    "lora_merged_grad": (
        ParamConstraintSFTTrainer,
        ParamConstraintConfig,
        dict(anchor_lambda=0.5, anchor_radius=0.05),
        False,
        True,
    ),
    "lora_merged_loss": (
        ParamConstraintSFTTrainer,
        ParamConstraintConfig,
        dict(anchor_lambda=0.5, anchor_mode="loss"),
        False,
        True,
    ),
    "all": (
        SafeSFTTrainer,
        SafetySFTConfig,
        dict(ALL_MECHANISMS),
        True,
        False,
    ),
}


def run(tiny, tmp_path, trainer_cls, config_cls, overrides, align, use_lora, batch, ga, callbacks=None):
    model, tok = load_tiny(tiny)
    args = make_args(
        config_cls,
        str(tmp_path / f"{trainer_cls.__name__}-b{batch}-ga{ga}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=ga,
        **{**EXACT_ARGS, **overrides},
    )
    kwargs = {"align_dataset": safety_prompt_completion()} if align else {}
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=task_messages(),
        processing_class=tok,
        peft_config=lora() if use_lora else None,
        callbacks=callbacks,
        **kwargs,
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradient_accumulation_invariance(tiny, tmp_path, name):
    trainer_cls, config_cls, overrides, align, use_lora = VARIANTS[name]
    one = snapshot(run(tiny, tmp_path, trainer_cls, config_cls, overrides, align, use_lora, batch=8, ga=1))
    two = snapshot(run(tiny, tmp_path, trainer_cls, config_cls, overrides, align, use_lora, batch=4, ga=2))
    assert max_abs_diff(one["params"], two["params"]) < TOL
    assert max_abs_diff(one["ema"], two["ema"]) < TOL
    if one["align_lambda"] is not None:
        assert abs(one["align_lambda"] - two["align_lambda"]) < TOL

    # The mechanism has an effect (otherwise the comparison above proves nothing).
    model, tok = load_tiny(tiny)
    plain = SFTTrainer(
        model=model,
        args=make_args(SFTConfig, str(tmp_path / "plain"), per_device_train_batch_size=8, **EXACT_ARGS),
        train_dataset=task_messages(),
        processing_class=tok,
        peft_config=lora() if use_lora else None,
    )
    plain.train()
    if name == "ema":
        assert max_abs_diff(one["ema"], one["params"]) > 1e-3
    else:
        assert max_abs_diff(one["params"], trainable_params(plain)) > 1e-4
    if name == "caseI_constraint":
        assert one["align_lambda"] != 0.5  # the dual variable moved


class _GradRecorder(ParamConstraintSFTTrainer):
    """Records the gradients right before and after the gradient-side penalty is added (instrumentation only)."""

    records: list

    def _after_backward_sync(self):
        before = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        params = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        super()._after_backward_sync()
        after = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.records.append((params, before, after))


def test_grad_penalty_equals_autograd(tiny, tmp_path):
    lam = 0.7
    _GradRecorder.records = []
    trainer = run(tiny, tmp_path, _GradRecorder, ParamConstraintConfig, dict(anchor_lambda=lam), False, False, 4, 2)
    theta0 = trainer._anchor.theta0
    assert len(_GradRecorder.records) == 3  # once per optimizer step, not per micro-batch
    for step, (params, before, after) in enumerate(_GradRecorder.records):
        leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        penalty = 0.5 * lam * sum(((leaves[n] - theta0[n]) ** 2).sum() for n in leaves)
        grads = dict(zip(leaves, torch.autograd.grad(penalty, list(leaves.values())), strict=True))
        added = {n: after[n] - before[n] for n in after}
        assert max_abs_diff(added, grads) < TOL
        if step > 0:
            assert max(float(g.abs().max()) for g in grads.values()) > 1e-3  # θ moved away from θ₀


def test_lora_merged_penalty_gradient_equals_autograd_of_peft_delta(tiny, tmp_path):
    lam = 0.7
    _GradRecorder.records = []
    trainer = run(tiny, tmp_path, _GradRecorder, ParamConstraintConfig, dict(anchor_lambda=lam), False, True, 4, 2)
    params, before, after = _GradRecorder.records[-1]
    model = trainer.model
    with torch.no_grad():  # put the recorded (pre-update) adapter weights back to evaluate the peft delta there
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(params[n])
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    penalty = 0.5 * lam * sum((m.get_delta_weight("default") ** 2).sum() for m in layers)
    grads = dict(zip(named, torch.autograd.grad(penalty, list(named.values())), strict=True))
    added = {n: after[n] - before[n] for n in after}
    assert max_abs_diff(added, grads) < TOL
    assert max(float(g.abs().max()) for g in grads.values()) > 1e-4


def test_lora_merged_penalty_equals_peft_delta_weight(tiny, tmp_path):
    trainer = run(tiny, tmp_path, ParamConstraintSFTTrainer, ParamConstraintConfig, dict(anchor_lambda=0.1), False,
                  True, 4, 2)
    layers = [m for m in trainer.model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 4  # q_proj and v_proj of 2 layers
    with torch.no_grad():
        via_peft = sum(float((m.get_delta_weight("default").double() ** 2).sum()) for m in layers)
    ours = float(trainer._anchor.sq_dist())
    assert via_peft > 1e-6
    assert abs(ours - via_peft) <= TOL * max(1.0, via_peft)
    assert not trainer._anchor.theta0  # θ₀ of a LoRA model is the zero delta: nothing copied


def test_grad_mode_equals_loss_mode(tiny, tmp_path):
    kw = dict(anchor_lambda=0.5, anchor_radius=0.5)
    grad = run(tiny, tmp_path, ParamConstraintSFTTrainer, ParamConstraintConfig, {**kw, "anchor_mode": "grad"},
               False, False, 4, 2)
    loss = run(tiny, tmp_path, ParamConstraintSFTTrainer, ParamConstraintConfig, {**kw, "anchor_mode": "loss"},
               False, False, 4, 2)
    assert max_abs_diff(trainable_params(grad), trainable_params(loss)) < TOL


class _DistanceRecorder(TrainerCallback):
    def __init__(self):
        self.trainer = None
        self.distances = []

    def on_step_end(self, args, state, control, **kwargs):
        anchor = self.trainer._anchor
        sq = 0.0
        for n, p in zip(anchor.names, anchor.params, strict=True):
            if n in anchor.theta0:
                sq += float(((p.detach().double() - anchor.theta0[n].double()) ** 2).sum())
        for ia, ib, s in anchor.lora:
            a, b = anchor.params[ia].detach().double(), anchor.params[ib].detach().double()
            sq += float(((s * b @ a) ** 2).sum())
        self.distances.append(math.sqrt(sq))


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_ball_respected_after_every_step(tiny, tmp_path, use_lora):
    radius = 0.05 if use_lora else 0.3
    recorder = _DistanceRecorder()
    model, tok = load_tiny(tiny)
    args = make_args(ParamConstraintConfig, str(tmp_path / "ball"), max_steps=5, anchor_radius=radius, **EXACT_ARGS)
    trainer = ParamConstraintSFTTrainer(model=model, args=args, train_dataset=task_messages(), processing_class=tok,
                                        peft_config=lora() if use_lora else None, callbacks=[recorder])
    recorder.trainer = trainer
    trainer.train()
    assert len(recorder.distances) == 5
    assert all(d <= radius * (1 + TOL) for d in recorder.distances), recorder.distances
    assert max(recorder.distances) > radius * (1 - 1e-3)  # the constraint is active
    logged = [r["dist_to_theta0"] for r in trainer.state.log_history if "dist_to_theta0" in r]
    assert len(logged) == 5 and all(d <= radius * (1 + TOL) for d in logged)


def test_anchor_dtype_bfloat16_is_exact_for_bf16_checkpoints(tiny, tmp_path):
    """θ₀ stored in bf16 gives the same run as an fp32 θ₀ when the aligned weights are bf16-representable."""
    results = []
    for dtype in ("auto", "bfloat16"):
        model, tok = load_tiny(tiny)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        args = make_args(ParamConstraintConfig, str(tmp_path / dtype), anchor_lambda=0.5, anchor_radius=0.5,
                         anchor_dtype=dtype, **EXACT_ARGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = ParamConstraintSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                                                processing_class=tok)
        trainer.train()
        results.append(trainer)
    assert next(iter(results[1]._anchor.theta0.values())).dtype == torch.bfloat16
    assert results[1]._anchor.num_bytes * 2 == results[0]._anchor.num_bytes
    assert max_abs_diff(trainable_params(results[0]), trainable_params(results[1])) == 0.0


def test_all_mechanisms_off_is_plain_sft(tiny, tmp_path):
    """SafeSFTTrainer with every mechanism off (the plain-SFT recipe of the training script) is SFTTrainer."""
    model, tok = load_tiny(tiny)
    plain = SFTTrainer(model=model, args=make_args(SFTConfig, str(tmp_path / "a"), **EXACT_ARGS),
                       train_dataset=task_messages(), processing_class=tok)
    plain.train()
    safe = run(tiny, tmp_path, SafeSFTTrainer, SafetySFTConfig, {}, False, False, 4, 1)
    assert max_abs_diff(trainable_params(plain), trainable_params(safe)) == 0.0
    assert safe._anchor is None and safe._ema_shadow is None


class OffsetPositions:
    """A collator whose batches carry `position_ids` 0, 2, 4, ... (a constant shift would not do: rotary embeddings
    only see relative positions): a forward that dropped them would compute other logits."""

    def __init__(self, pad_token_id: int):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.inner = DataCollatorForLanguageModeling(pad_token_id=pad_token_id)

    def __call__(self, examples):
        batch = self.inner(examples)
        rows, length = batch["input_ids"].shape
        batch["position_ids"] = (2 * torch.arange(length)).expand(rows, length).clone()
        return batch


def run_case1(tiny, tmp_path, forward, setting):
    model, tok = load_tiny(tiny)
    overrides = dict(align_lambda=1.0, align_forward=forward, **{**EXACT_ARGS, "learning_rate": 0.2})
    if setting == "dft":
        overrides["loss_type"] = "dft"
    args = make_args(AlignmentLossConfig, str(tmp_path / f"{forward}-{setting}"), gradient_accumulation_steps=2,
                     **overrides)
    trainer = AlignmentLossSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                                      align_dataset=safety_prompt_completion(),
                                      data_collator=OffsetPositions(tok.pad_token_id)
                                      if setting == "position_ids" else None, processing_class=tok)
    trainer.train()
    return trainer


@pytest.mark.parametrize("setting", ["dft", "position_ids"])
def test_concat_forward_follows_loss_type_and_position_ids(tiny, tmp_path, setting):
    """align_forward='concat' trains exactly like 'separate' (where SFTTrainer computes the task loss) with
    `loss_type="dft"` and with batches that carry `position_ids`."""
    separate = run_case1(tiny, tmp_path, "separate", setting)
    concat = run_case1(tiny, tmp_path, "concat", setting)
    assert max_abs_diff(trainable_params(separate), trainable_params(concat)) < TOL
    for a, b in zip(separate.state.log_history, concat.state.log_history, strict=True):
        for key in ("task_loss", "align_loss", "loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), key
    plain = run_case1(tiny, tmp_path, "separate", "none")  # the setting changes the run (else nothing is tested)
    assert max_abs_diff(trainable_params(plain), trainable_params(concat)) > 1e-4
