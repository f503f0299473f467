"""Checkpoint and resume: a run stopped after k steps and resumed from its checkpoint ends bit-identical to the
uninterrupted run (parameters, θ₀, EMA shadow, dual λ, proxy-loader position), whether the resumed trainer is built
from the original model or from the checkpoint's weights; θ₀ is never re-anchored on the checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import load_file
from tiny_models import StopAt, load_tiny, make_args, safety_prompt_completion, snapshot, task_messages, tiny_model_dir
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer

from safety_tradeoff.trainer import (
    ANCHOR_NAME,
    EMA_NAME,
    STATE_NAME,
    ParamConstraintConfig,
    ParamConstraintSFTTrainer,
    SafeSFTTrainer,
    SafetySFTConfig,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))




RESUME_ARGS = dict(
    max_steps=5,
    gradient_accumulation_steps=2,
    save_strategy="steps",
    save_steps=2,
    learning_rate=1e-2,  # AdamW: the optimizer state must be restored too
    lr_scheduler_type="linear",
    align_mode="constraint",
    align_lambda=0.5,
    align_epsilon=5.0,
    align_dual_lr=0.3,
    anchor_lambda=0.5,
    anchor_radius=0.4,
    ema_beta=0.7,
)


def build(tiny, output_dir, model=None, use_lora=False, callbacks=None):
    base, tok = load_tiny(tiny)
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return SafeSFTTrainer(
        model=model if model is not None else base,
        args=make_args(SafetySFTConfig, output_dir, **RESUME_ARGS),
        train_dataset=task_messages(),
        align_dataset=safety_prompt_completion(12),  # 3 proxy batches per pass: the stop lands mid-pass
        processing_class=tok,
        peft_config=peft if use_lora else None,
        callbacks=callbacks,
    )


def assert_identical(a, b):
    for key in ("params", "theta0", "ema"):
        assert set(a[key]) == set(b[key]), key
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}/{name}"
    assert a["align_lambda"] == b["align_lambda"]
    assert a["align_position"] == b["align_position"]


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_resume_is_bit_identical(tiny, tmp_path, use_lora):
    full = build(tiny, str(tmp_path / "full"), use_lora=use_lora)
    full.train()
    expected = snapshot(full)
    assert expected["align_lambda"] != 0.5 and expected["align_position"][0] >= 1  # λ moved, the proxy set cycled

    part_dir = tmp_path / "part"
    part = build(tiny, str(part_dir), use_lora=use_lora, callbacks=[StopAt(2)])
    part.train()
    assert part.state.global_step == 2
    checkpoint = part_dir / "checkpoint-2"
    files = set(os.listdir(checkpoint))
    assert {EMA_NAME, STATE_NAME} <= files
    assert (ANCHOR_NAME in files) == (not use_lora)  # LoRA (merged delta): θ₀ is the zero delta, nothing to save
    state = json.loads((checkpoint / STATE_NAME).read_text())
    assert state["align"]["lambda"] == part.align_lambda and state["align"]["epoch"] == 1
    assert state["align"]["batches_in_epoch"] == 1

    # New trainer from the ORIGINAL model, resumed from the checkpoint.
    resumed = build(tiny, str(part_dir), use_lora=use_lora)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert_identical(expected, snapshot(resumed))

    if not use_lora:
        # New trainer built from the CHECKPOINT's weights: θ₀ still comes from the checkpoint, not from the model.
        # (`resume_from_checkpoint=True`: the latest checkpoint of output_dir, here a copy of checkpoint-2.)
        copy_dir = tmp_path / "copy"
        shutil.copytree(checkpoint, copy_dir / "checkpoint-2")
        ckpt_model = AutoModelForCausalLM.from_pretrained(str(checkpoint))
        ckpt_weights = {k: v.detach().clone() for k, v in ckpt_model.named_parameters()}
        from_ckpt = build(tiny, str(copy_dir), model=ckpt_model)
        from_ckpt.train(resume_from_checkpoint=True)
        original, _ = load_tiny(tiny)
        original = dict(original.named_parameters())
        moved = max(float((ckpt_weights[k] - original[k].detach()).abs().max()) for k in original)
        assert moved > 0  # the checkpoint's weights are not θ₀
        for name, value in from_ckpt._anchor.theta0.items():
            assert torch.equal(value, original[name].detach())
        assert_identical(expected, snapshot(from_ckpt))

        saved = load_file(str(checkpoint / ANCHOR_NAME))
        for name, value in saved.items():
            assert torch.equal(value, original[name].detach())


def test_resume_without_anchor_in_checkpoint_is_refused(tiny, tmp_path):
    model, tok = load_tiny(tiny)
    plain = SFTTrainer(
        model=model,
        args=make_args(SFTConfig, str(tmp_path / "plain"), max_steps=2, save_strategy="steps", save_steps=2),
        train_dataset=task_messages(),
        processing_class=tok,
    )
    plain.train()
    checkpoint = str(tmp_path / "plain" / "checkpoint-2")
    trainer = ParamConstraintSFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(checkpoint),
        args=make_args(ParamConstraintConfig, str(tmp_path / "c2"), max_steps=4, anchor_lambda=1.0),
        train_dataset=task_messages(),
        processing_class=tok,
    )
    with pytest.raises(ValueError, match=r"no safety_anchor\.safetensors \(θ₀\)"):
        trainer.train(resume_from_checkpoint=checkpoint)


def test_resume_without_ema_state_is_refused(tiny, tmp_path):
    trainer = build(tiny, str(tmp_path / "a"), callbacks=[StopAt(2)])
    trainer.train()
    checkpoint = tmp_path / "a" / "checkpoint-2"
    os.remove(checkpoint / EMA_NAME)
    with pytest.raises(ValueError, match="no ema_state.pt"):
        build(tiny, str(tmp_path / "a")).train(resume_from_checkpoint=str(checkpoint))
