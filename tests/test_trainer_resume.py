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
from transformers import AutoModelForCausalLM, TrainerCallback
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


# ---------------------------------------------------------------------------------------------------------------------
# Resuming with a changed config: follow the new config where that is well defined, else refuse naming the field
# ---------------------------------------------------------------------------------------------------------------------
def stopped_run(tiny, output_dir, **overrides):
    """A run stopped after 2 steps (checkpoint-2 written), as `build` but with overrides."""
    trainer = build_with(tiny, output_dir, callbacks=[StopAt(2)], **overrides)
    trainer.train()
    return trainer, os.path.join(output_dir, "checkpoint-2")


def build_with(tiny, output_dir, callbacks=None, align_size=12, trainer_cls=SafeSFTTrainer, **overrides):
    base, tok = load_tiny(tiny)
    return trainer_cls(
        model=base,
        args=make_args(SafetySFTConfig, output_dir, **{**RESUME_ARGS, **overrides}),
        train_dataset=task_messages(),
        align_dataset=safety_prompt_completion(align_size),
        processing_class=tok,
        callbacks=callbacks,
    )


def logged(trainer, key):
    return [r[key] for r in trainer.state.log_history if key in r]


def test_fixed_lambda_of_the_config_wins_over_a_saved_dual_lambda(tiny, tmp_path, caplog):
    part, checkpoint = stopped_run(tiny, str(tmp_path / "a"))
    assert part.align_lambda != 0.5  # the dual variable moved
    resumed = build_with(tiny, str(tmp_path / "a"), align_mode="penalty", align_lambda=0.3)
    with caplog.at_level("WARNING"):
        resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.align_lambda == 0.3
    assert logged(resumed, "align_lambda")[2:] == [pytest.approx(0.3)] * 3  # steps 3-5, after the resume
    assert "`align_mode` changed from 'constraint' to 'penalty'" in caplog.text


def test_changed_fixed_lambda_is_followed(tiny, tmp_path):
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"), align_mode="penalty", align_lambda=0.5)
    resumed = build_with(tiny, str(tmp_path / "a"), align_mode="penalty", align_lambda=0.2)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert logged(resumed, "align_lambda")[2:] == [pytest.approx(0.2)] * 3


class ParamsAfterStep(TrainerCallback):
    """The trainable parameters after every optimizer step (EMA update included), by global step."""

    def __init__(self):
        self.after = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()
                                         if p.requires_grad}


def test_changed_ema_beta_is_followed_from_the_saved_shadow(tiny, tmp_path, caplog):
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"))
    saved = torch.load(os.path.join(checkpoint, EMA_NAME), weights_only=True)
    recorder = ParamsAfterStep()
    resumed = build_with(tiny, str(tmp_path / "a"), callbacks=[recorder], ema_beta=0.4)
    with caplog.at_level("WARNING"):
        resumed.train(resume_from_checkpoint=checkpoint)
    assert "`ema_beta` changed from 0.7 to 0.4" in caplog.text
    expected = {n: v.double() for n, v in saved.items()}
    for step in (3, 4, 5):
        expected = {n: 0.4 * v + 0.6 * recorder.after[step][n].double() for n, v in expected.items()}
    for name, value in resumed.ema_state_dict().items():
        assert torch.allclose(value.double(), expected[name], atol=1e-6), name


class ProxyRows(SafeSFTTrainer):
    """Records the proxy examples trained on (token ids without padding), in order (instrumentation only)."""

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        out = super().get_batch_samples(epoch_iterator, num_batches, device)
        for batch in self._align_queue:
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
                self.rows.append(tuple(ids[mask.bool()].tolist()))
        return out


def proxy_rows(tiny, output_dir, resume=None, **overrides):
    trainer = build_with(tiny, output_dir, trainer_cls=ProxyRows, **overrides)
    trainer.rows = []
    trainer.train(resume_from_checkpoint=resume)
    return trainer.rows


def test_changed_align_batch_size_continues_the_proxy_pass(tiny, tmp_path):
    """4 proxy batches of 4 drawn (one pass of 12 and 4 examples into the next): resumed with batches of 2, the
    proxy loader continues after those 4 examples, as the uninterrupted run does with batches of 4."""
    reference = proxy_rows(tiny, str(tmp_path / "full"), align_batch_size=4)
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"), align_batch_size=4)
    resumed = proxy_rows(tiny, str(tmp_path / "a"), resume=checkpoint, align_batch_size=2)
    drawn = 16  # 2 steps × GA 2 × batches of 4
    assert len(resumed) == 3 * 2 * 2  # steps 3-5 × GA 2 × batches of 2
    assert resumed == reference[drawn:drawn + len(resumed)]


def test_align_batch_size_that_cannot_continue_the_pass_is_refused(tiny, tmp_path):
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"), align_batch_size=4)
    with pytest.raises(ValueError, match=r"`align_batch_size` changed from 4 to 3: the 4 proxy examples drawn"):
        build_with(tiny, str(tmp_path / "a"), align_batch_size=3).train(resume_from_checkpoint=checkpoint)
    # a fresh proxy pass is well defined
    build_with(tiny, str(tmp_path / "a"), align_batch_size=3, ignore_data_skip=True).train(
        resume_from_checkpoint=checkpoint)


def test_checkpoint_from_a_newer_format_is_refused(tiny, tmp_path):
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"))
    path = os.path.join(checkpoint, STATE_NAME)
    state = json.loads(open(path).read())
    state["format_version"] = 99
    with open(path, "w") as f:
        json.dump(state, f)
    with pytest.raises(ValueError, match=r"format_version 99, written by a newer safety-tradeoff"):
        build_with(tiny, str(tmp_path / "a")).train(resume_from_checkpoint=checkpoint)


def test_changed_lora_delta_is_refused(tiny, tmp_path):
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    base, tok = load_tiny(tiny)
    kw = dict(model=base, train_dataset=task_messages(), processing_class=tok, peft_config=peft)
    trainer = ParamConstraintSFTTrainer(args=make_args(ParamConstraintConfig, str(tmp_path), max_steps=2,
                                                       save_strategy="steps", save_steps=2, anchor_lambda=0.5), **kw)
    trainer.train()
    base, _ = load_tiny(tiny)
    kw["model"] = base
    again = ParamConstraintSFTTrainer(args=make_args(ParamConstraintConfig, str(tmp_path), max_steps=4,
                                                     anchor_lambda=0.5, lora_delta="params"), **kw)
    with pytest.raises(ValueError, match=r"`lora_delta` changed from 'merged' to 'params'"):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


@pytest.mark.parametrize("every", [3])
def test_resume_mid_interval_of_a_sparse_ema_is_bit_identical(tiny, tmp_path, every):
    full = build_with(tiny, str(tmp_path / "full"), ema_update_every=every)
    full.train()
    _, checkpoint = stopped_run(tiny, str(tmp_path / "a"), ema_update_every=every)  # step 2: one step pending
    resumed = build_with(tiny, str(tmp_path / "a"), ema_update_every=every)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert_identical(snapshot(full), snapshot(resumed))
