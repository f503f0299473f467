# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Checks on the datasets given to the safety trainers, before `SFTTrainer` prepares them."""

from __future__ import annotations

import warnings

from datasets import Dataset, IterableDataset
from trl.data_utils import is_conversational


def dataset_sample(dataset):
    """The first example of a (possibly iterable) dataset, None if it is empty."""
    try:
        return next(iter(dataset))
    except StopIteration:
        return None


def format_name(sample: dict) -> str:
    if "input_ids" in sample:
        return "pre-tokenised"
    kind = "conversational" if is_conversational(sample) else "plain-text"
    if "prompt" in sample and "completion" in sample:
        return f"{kind} prompt-completion"
    if "messages" in sample or "conversations" in sample:
        return f"{kind} 'messages'"
    return f"{kind} language-modelling"


def check_chat_template(sample, processing_class, args, dataset_name: str) -> None:
    """A conversational dataset needs a chat template; say which dataset and how to fix it."""
    if sample is None or args.chat_template_path is not None or processing_class is None:
        return
    if "input_ids" in sample or not is_conversational(sample):
        return
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if getattr(tokenizer, "chat_template", None) is None and getattr(processing_class, "chat_template", None) is None:
        raise ValueError(
            f"The {dataset_name} dataset is conversational ({format_name(sample)}) but the tokenizer "
            f"({type(tokenizer).__name__}) has no chat template. Set `tokenizer.chat_template` (or "
            "`chat_template_path` in the config), or pass the dataset as plain text."
        )


def validate_align_dataset(align_dataset, task_sample, args, processing_class) -> None:
    """Clear errors for a proxy (alignment) dataset that is unusable or would put the wrong tokens in the loss."""
    if not isinstance(align_dataset, (Dataset, IterableDataset)):
        raise TypeError(
            f"`align_dataset` must be a `datasets.Dataset` or `IterableDataset`, got {type(align_dataset).__name__}."
        )
    if isinstance(align_dataset, Dataset) and len(align_dataset) == 0:
        raise ValueError("`align_dataset` (the proxy safety dataset) is empty.")
    sample = dataset_sample(align_dataset)
    if sample is None:
        raise ValueError("`align_dataset` (the proxy safety dataset) is empty.")
    columns = sorted(sample)
    text_field = args.dataset_text_field
    if "input_ids" in sample:
        return  # pre-tokenised: trusted as is (labels, if present, decide the loss)
    if ("prompt" in sample) != ("completion" in sample):
        raise ValueError(
            f"`align_dataset` has columns {columns}: a prompt-completion dataset needs both 'prompt' and "
            "'completion'."
        )
    known = ("prompt" in sample) or ("messages" in sample) or ("conversations" in sample) or (text_field in sample)
    if not known:
        raise ValueError(
            f"`align_dataset` has columns {columns}, none of which SFT can train on: expected 'messages', "
            f"'prompt' + 'completion', '{text_field}' (`dataset_text_field`), or pre-tokenised 'input_ids'."
        )
    align_conv = is_conversational(sample)
    if task_sample is not None and "input_ids" not in task_sample:
        task_conv = is_conversational(task_sample)
        if task_conv != align_conv:
            raise ValueError(
                f"The train dataset is {format_name(task_sample)} but `align_dataset` is {format_name(sample)}: the "
                "alignment loss would be computed on text formatted differently from the task (with vs without the "
                "chat template). Give both datasets in the same (conversational or plain-text) format."
            )
    check_chat_template(sample, processing_class, args, "align (proxy)")
    is_prompt_completion = "prompt" in sample
    if is_prompt_completion and args.completion_only_loss is False:
        raise ValueError(
            "`completion_only_loss=False` would put the prompts of the prompt-completion `align_dataset` (harmful "
            "requests) in the alignment loss. Leave `completion_only_loss` unset (None) or set it to True."
        )
    if not is_prompt_completion and align_conv and not args.assistant_only_loss:
        raise ValueError(
            "`align_dataset` is a conversational 'messages' dataset but `assistant_only_loss=False`: the user turns "
            "(harmful requests) would be trained on. Set `assistant_only_loss=True` (the chat template needs "
            "{% generation %} markers) or give the proxy set as prompt-completion."
        )
    if not is_prompt_completion and not align_conv and task_sample is not None and "prompt" in task_sample:
        warnings.warn(
            "`align_dataset` is a plain language-modelling set: every token is in the alignment loss, while the "
            "task set is prompt-completion (loss on completions only). Prefer a prompt-completion proxy set.",
            stacklevel=3,
        )
