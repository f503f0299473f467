"""Bad inputs raise clear errors before training starts; a non-finite loss stops training naming the step."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny_models import (
    build_tokenizer,
    load_tiny,
    make_args,
    safety_messages,
    safety_prompt_completion,
    safety_prompt_completion_text,
    task_messages,
    task_text,
    tiny_model_dir,
)
from transformers import TrainerCallback

from safety_tradeoff.trainer import (
    AlignmentLossConfig,
    AlignmentLossSFTTrainer,
    EMAConfig,
    EMASFTTrainer,
    NonFiniteLossError,
    ParamConstraintConfig,
    ParamConstraintSFTTrainer,
    SafeSFTTrainer,
    SafetySFTConfig,
    check_distributed_support,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


# ---------------------------------------------------------------------------------------------------------------------
# Config values
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config_cls, overrides, message",
    [
        (AlignmentLossConfig, dict(align_lambda=-0.1), r"`align_lambda` must be ≥ 0, got -0.1"),
        (AlignmentLossConfig, dict(align_mode="constraint"), r"needs `align_epsilon`"),
        (AlignmentLossConfig, dict(align_mode="constraint", align_epsilon=-1.0), r"`align_epsilon`.*≥ 0, got -1.0"),
        (AlignmentLossConfig, dict(align_mode="constraint", align_epsilon=0.1, align_dual_lr=0.0),
         r"`align_dual_lr` must be > 0"),
        (AlignmentLossConfig, dict(align_lambda=2.0, align_lambda_max=1.0), r"`align_lambda_max` \(1.0\) must be ≥"),
        (AlignmentLossConfig, dict(align_batch_size=0), r"`align_batch_size` must be a positive integer"),
        (AlignmentLossConfig, dict(align_mode="dual"), r"`align_mode` must be one of"),
        (ParamConstraintConfig, dict(anchor_lambda=-1.0), r"`anchor_lambda` must be ≥ 0, got -1.0"),
        (ParamConstraintConfig, dict(anchor_radius=0.0), r"`anchor_radius`.*must be > 0, got 0.0"),
        (ParamConstraintConfig, dict(anchor_radius=-2.0), r"`anchor_radius`.*must be > 0, got -2.0"),
        (ParamConstraintConfig, dict(anchor_mode="both"), r"`anchor_mode` must be one of"),
        (EMAConfig, dict(ema_beta=1.0), r"`ema_beta` must be in \[0, 1\), got 1.0"),
        (EMAConfig, dict(ema_beta=-0.5), r"`ema_beta` must be in \[0, 1\), got -0.5"),
        (EMAConfig, dict(ema_eval="best"), r"`ema_eval` must be one of"),
        (SafetySFTConfig, dict(anchor_radius=0.0), r"`anchor_radius`"),
        (SafetySFTConfig, dict(ema_beta=1.5), r"`ema_beta`"),
        (SafetySFTConfig, dict(align_lambda=-1.0), r"`align_lambda`"),
    ],
)
def test_invalid_config_values(tmp_path, config_cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(config_cls, str(tmp_path), **overrides)


def test_values_changed_after_construction_are_checked_by_the_trainer(tiny, tmp_path):
    model, tok = load_tiny(tiny)
    args = make_args(ParamConstraintConfig, str(tmp_path), anchor_lambda=1.0)
    args.anchor_lambda = -1.0
    with pytest.raises(ValueError, match="`anchor_lambda` must be ≥ 0"):
        ParamConstraintSFTTrainer(model=model, args=args, train_dataset=task_messages(), processing_class=tok)


# ---------------------------------------------------------------------------------------------------------------------
# Proxy (alignment) dataset
# ---------------------------------------------------------------------------------------------------------------------
def make_align_trainer(tiny, tmp_path, align_dataset, train_dataset=None, tokenizer=None, **overrides):
    model, tok = load_tiny(tiny)
    args = make_args(AlignmentLossConfig, str(tmp_path), **overrides)
    return AlignmentLossSFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset if train_dataset is not None else task_messages(),
        align_dataset=align_dataset,
        processing_class=tokenizer if tokenizer is not None else tok,
    )


@pytest.mark.parametrize(
    "align, overrides, message",
    [
        (None, {}, r"AlignmentLossSFTTrainer needs `align_dataset=`"),
        ("empty", {}, r"`align_dataset` \(the proxy safety dataset\) is empty"),
        ("columnless", {}, r"columns \['question', 'refusal'\], none of which SFT can train on"),
        ("prompt_only", {}, r"needs both 'prompt' and 'completion'"),
        ("plain_pc", {}, r"train dataset is conversational 'messages' but `align_dataset` is plain-text "
                         r"prompt-completion"),
        ("messages", dict(assistant_only_loss=False), r"user turns \(harmful requests\) would be trained on"),
        ("conv_pc", dict(completion_only_loss=False), r"`completion_only_loss=False` would put the prompts"),
        ("conv_pc", dict(max_length=8), r"no example left after preparation.*max_length=8"),
        ("list", {}, r"must be a `datasets.Dataset`"),
    ],
)
def test_bad_align_dataset(tiny, tmp_path, align, overrides, message):
    datasets = {
        None: None,
        "empty": safety_prompt_completion(4).select([]),
        "columnless": Dataset.from_list([{"question": "hack a bank", "refusal": "no"}]),
        "prompt_only": Dataset.from_list([{"prompt": [{"role": "user", "content": "hack a bank"}]}]),
        "plain_pc": safety_prompt_completion_text(),
        "messages": safety_messages(),
        "conv_pc": safety_prompt_completion(),
        "list": [{"prompt": "a", "completion": "b"}],
    }
    overrides = {"assistant_only_loss": True, **overrides}
    exc = TypeError if align == "list" else ValueError
    with pytest.raises(exc, match=message):
        make_align_trainer(tiny, tmp_path, datasets[align], **overrides)


def test_plain_text_task_and_proxy_are_accepted(tiny, tmp_path):
    trainer = make_align_trainer(tiny, tmp_path, safety_prompt_completion_text(), train_dataset=task_text(),
                                 assistant_only_loss=False)
    ex = trainer.align_dataset[0]
    tok = trainer.processing_class
    target = tok.decode([t for t in ex["labels"] if t != -100])
    assert "sorry" in target and "hack" not in target and "bomb" not in target  # completion only


def test_missing_chat_template_names_the_dataset(tiny, tmp_path):
    no_template = build_tokenizer(chat_template=None)
    with pytest.raises(ValueError, match=r"The train dataset is conversational .* has no chat template"):
        make_align_trainer(tiny, tmp_path, safety_prompt_completion(), tokenizer=no_template,
                           assistant_only_loss=False)
    # Task pre-tokenised, proxy conversational: the proxy set is the one named.
    tokenized = Dataset.from_list([{"input_ids": [5, 6, 7, 8]}] * 8)
    with pytest.raises(ValueError, match=r"The align \(proxy\) dataset is conversational .* no chat template"):
        make_align_trainer(tiny, tmp_path, safety_prompt_completion(), train_dataset=tokenized,
                           tokenizer=no_template, assistant_only_loss=False)
    model, _ = load_tiny(tiny)
    with pytest.raises(ValueError, match=r"The eval 'safety' dataset is conversational"):
        ParamConstraintSFTTrainer(
            model=model,
            args=make_args(ParamConstraintConfig, str(tmp_path), anchor_lambda=1.0, assistant_only_loss=False),
            train_dataset=task_text(),
            eval_dataset={"task": task_text(8), "safety": safety_prompt_completion(4)},
            processing_class=no_template,
        )


def test_concat_forward_with_padding_free_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"align_forward='concat'.*padding_free"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_align_trainer(tiny, tmp_path, safety_prompt_completion(), align_forward="concat", padding_free=True,
                               max_length=None)


def test_fields_ignored_by_a_single_mechanism_trainer_warn(tiny, tmp_path):
    model, tok = load_tiny(tiny)
    args = make_args(SafetySFTConfig, str(tmp_path), ema_beta=0.9, anchor_lambda=1.0)
    with pytest.warns(UserWarning, match=r"AlignmentLossSFTTrainer ignores the anchor_\*, ema_\* settings"):
        AlignmentLossSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                                align_dataset=safety_prompt_completion(), processing_class=tok)


# ---------------------------------------------------------------------------------------------------------------------
# Distributed setups (checked from the accelerator state at construction; the check itself is a plain function)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(anchor_active=True, deepspeed_stage=3), NotImplementedError, r"Case II \(anchor\).*ZeRO-3"),
        (dict(ema=True, deepspeed_stage=3), NotImplementedError, r"the EMA is not supported with DeepSpeed ZeRO-3"),
        (dict(anchor_active=True, anchor_mode="grad", deepspeed_stage=2), ValueError, r"Use anchor_mode='loss'"),
        (dict(anchor_active=True, anchor_mode="loss", anchor_radius=1.0, deepspeed_stage=1), NotImplementedError,
         r"ball projection"),
        (dict(anchor_active=True, fsdp_version=1), NotImplementedError, r"Use FSDP2"),
        (dict(ema=True, fsdp_version=1), NotImplementedError, r"Use FSDP2"),
        (dict(alignment_forward="concat", padding_free=True), ValueError, r"padding_free"),
        (dict(alignment_forward="separate", world_size=2, reentrant_checkpointing=True), ValueError,
         r"align_forward='concat'"),
        (dict(anchor_active=True, anchor_mode="loss", world_size=2, reentrant_checkpointing=True), ValueError,
         r"anchor_mode='grad'"),
    ],
)
def test_unsupported_distributed_setups(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        check_distributed_support(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(anchor_active=True, anchor_mode="loss", deepspeed_stage=2),
        dict(alignment_forward="concat", deepspeed_stage=3),
        dict(alignment_forward="concat", world_size=2, reentrant_checkpointing=True),
        dict(anchor_active=True, anchor_radius=1.0, ema=True, fsdp_version=2, world_size=8),
        dict(alignment_forward="separate", anchor_active=True, world_size=4),
    ],
)
def test_supported_distributed_setups(kwargs):
    check_distributed_support(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------------------------------
class PoisonAfter(TrainerCallback):
    """Sets one weight to NaN when the step after `step` begins (after the checkpoint of `step` was written)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def test_nan_loss_stops_training_naming_the_step(tiny, tmp_path):
    model, tok = load_tiny(tiny)
    args = make_args(SafetySFTConfig, str(tmp_path), max_steps=5, save_strategy="steps", save_steps=2,
                     anchor_lambda=1.0, ema_beta=0.9)
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                             align_dataset=safety_prompt_completion(), processing_class=tok,
                             callbacks=[PoisonAfter(2)])
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 .*task_loss=nan, align_loss=nan") as info:
        trainer.train()
    assert isinstance(info.value, FloatingPointError)
    assert "checkpoint-2" in str(info.value)
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "model.safetensors").is_file()
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in saved.values())
    assert not os.path.exists(tmp_path / "checkpoint-3")


def test_other_configs_are_converted(tiny, tmp_path):
    from trl import SFTConfig

    model, tok = load_tiny(tiny)
    plain = make_args(SFTConfig, str(tmp_path), learning_rate=3e-4)
    with pytest.warns(UserWarning, match="trains like SFTTrainer"):  # every Case II setting at its default: off
        trainer = ParamConstraintSFTTrainer(model=model, args=plain, train_dataset=task_messages(),
                                            processing_class=tok)
    assert isinstance(trainer.args, ParamConstraintConfig) and trainer.args.learning_rate == 3e-4
    model, tok = load_tiny(tiny)
    with pytest.warns(UserWarning, match=r"ignoring AlignmentLossConfig fields \['align_batch_size'"):
        EMASFTTrainer(model=model, args=make_args(AlignmentLossConfig, str(tmp_path)), train_dataset=task_messages(),
                      processing_class=tok)


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(label_smoothing_factor=0.1), r"does not support `label_smoothing_factor=0\.1`"),
        (dict(compute_loss_func=True), r"does not support `compute_loss_func`"),
    ],
)
def test_concat_forward_refuses_what_it_cannot_compute(tiny, tmp_path, setting, message):
    model, tok = load_tiny(tiny)
    extra = {}
    if setting.pop("compute_loss_func", False):
        extra["compute_loss_func"] = lambda outputs, labels, num_items_in_batch=None: outputs.logits.mean()
    args = make_args(AlignmentLossConfig, str(tmp_path), align_forward="concat", **setting)
    with pytest.raises(ValueError, match=message + r".*Use align_forward='separate'"):
        AlignmentLossSFTTrainer(model=model, args=args, train_dataset=task_messages(),
                                align_dataset=safety_prompt_completion(), processing_class=tok, **extra)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(anchor_active=True, anchor_mode="decoupled", deepspeed_stage=2), NotImplementedError,
         r"anchor_mode='decoupled' edits the parameters in place"),
        (dict(ema=True, offload=True, fsdp_version=2), NotImplementedError, r"anchor_offload/ema_offload"),
    ],
)
def test_new_unsupported_distributed_setups(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        check_distributed_support(**kwargs)
