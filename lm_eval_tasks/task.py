"""The task class of every safety_tradeoff task (``class: !function task.SafetyTask``).

A ``ConfigurableTask`` that sees what the YAML cannot: whether ``--apply_chat_template`` is on and
which tokenizer the model uses. It warns when a model with a chat template runs without it, refuses a
template-less tokenizer with ``--apply_chat_template``, appends the end-of-turn string to NLL
targets, counts the scored tokens exactly as the backend will (its own ``_encode_pair``), and
registers per-category metrics.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from lm_eval.api.metrics import mean
from lm_eval.api.task import ConfigurableTask

from safety_tradeoff.lm_eval_tasks.files import log
from safety_tradeoff.lm_eval_tasks.metrics import N_TOKENS, _slug, weighted_mean


def _unwrap_lm(lm: Any) -> Any:
    inner = getattr(lm, "lm", None)  # CachingLM wraps the real model
    return inner if inner is not None and type(lm).__name__ == "CachingLM" else lm


def _find_lm(chat_template: Callable | None) -> Any:
    """The evaluated LM object. With ``--apply_chat_template`` lm-eval hands the task
    ``lm.apply_chat_template`` (a bound method); without it nothing in the task API names the model,
    so look for evaluate()'s local ``lm`` a few frames up (best effort, lm-eval 0.4.13)."""
    owner = getattr(chat_template, "__self__", None)
    if owner is not None:
        return _unwrap_lm(owner)
    frame = inspect.currentframe()
    try:
        f = frame.f_back if frame else None
        for _ in range(8):
            if f is None:
                break
            cand = f.f_locals.get("lm")
            if cand is not None and hasattr(cand, "loglikelihood"):
                return _unwrap_lm(cand)
            f = f.f_back
    finally:
        del frame
    return None


@lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def _metadata_tokenizer(metadata: Mapping[str, Any]) -> Any:
    for key in ("tokenizer", "pretrained"):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, (str, os.PathLike)):
            return value if hasattr(value, "encode") else None
        try:
            return _load_tokenizer(os.fspath(value))
        except Exception:  # noqa: BLE001 - an unloadable name just means "unknown tokenizer"
            continue
    return None


def _tokenizer_name(tok: Any) -> str:
    return str(getattr(tok, "name_or_path", "") or type(tok).__name__)


_CHAT_WARNED: set[str] = set()
_SENTINEL = "SAFETYTRADEOFFSENTINEL"


def assistant_affixes(tok: Any) -> tuple[str, str] | None:
    """(prefix, suffix) the chat template puts around an assistant message after the generation
    prompt, e.g. ``("", "<|end|>")``, ``("", "<|im_end|>\\n")`` for Qwen; None if the template does
    not render a final assistant turn as an extension of the generation prompt."""
    user = [{"role": "user", "content": "Hello?"}]
    try:
        ctx = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(user + [{"role": "assistant", "content": _SENTINEL}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this is handled by the caller
        return None
    if not isinstance(full, str) or not full.startswith(ctx) or _SENTINEL not in full[len(ctx):]:
        return None
    tail = full[len(ctx):]
    i = tail.index(_SENTINEL)
    return tail[:i], tail[i + len(_SENTINEL):]


def count_continuation_tokens(tok: Any, context: str, continuation: str) -> int:
    """Tokens lm-eval scores for (context, continuation): mirrors ``TemplateLM._encode_pair``
    (trailing context whitespace moves into the continuation; whole minus context encoding)."""
    n_ws = len(context) - len(context.rstrip())
    if n_ws:
        context, continuation = context[:-n_ws], context[-n_ws:] + continuation
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    return len(whole) - len(tok(context, add_special_tokens=False)["input_ids"])


class SafetyTask(ConfigurableTask):
    """ConfigurableTask + what the safety tasks need to know about the run (see module docstring)."""

    def __init__(self, data_dir: str | None = None, cache_dir: str | None = None, download_mode: Any = None,
                 config: dict | None = None) -> None:
        self._affixes: tuple[str, str] = ("", "")  # set first: the base __init__ renders a target
        self._n_tokens: dict[tuple[str, str], int] = {}
        self._categories: list[str] = []
        if config is not None:  # the YAML's `class:` key is the factory's, not a TaskConfig field
            config = {k: v for k, v in config.items() if k != "class"}
        super().__init__(data_dir=data_dir, cache_dir=cache_dir, download_mode=download_mode, config=config)
        self._set_max_gen_toks()

    def _set_max_gen_toks(self) -> None:
        """Metadata ``max_gen_toks`` sets the generation length of this project's generation tasks only.
        lm-eval's ``--gen_kwargs`` would also cut every other generation task of the call (IFEval's 1280
        tokens, MATH's), so each task YAML carries its benchmark's own length and this is the override."""
        value = (self.config.metadata or {}).get("max_gen_toks")
        if value is None or self.config.output_type != "generate_until":
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{self.config.task}: metadata max_gen_toks must be a positive integer, got {value!r}")
        self.config.generation_kwargs = {**(self.config.generation_kwargs or {}), "max_gen_toks": value}

    # ---------------------------------------------------------------------------- requests
    def build_all_requests(self, *, apply_chat_template: bool = False, chat_template: Callable | None = None,
                           **kwargs: Any) -> None:
        meta = self.config.metadata or {}
        lm = _find_lm(chat_template)
        tok = getattr(lm, "tokenizer", None) or _metadata_tokenizer(meta)
        name = self.config.task
        if apply_chat_template and tok is not None and not getattr(tok, "chat_template", None):
            raise ValueError(
                f"{name}: --apply_chat_template was given, but the tokenizer of {_tokenizer_name(tok)} has no "
                "chat template (no chat_template in its tokenizer_config.json / chat_template.jinja). Add one, "
                "or run a base model without --apply_chat_template (plain prompts; see the tasks' README).")
        if not apply_chat_template and tok is not None and getattr(tok, "chat_template", None):
            key = _tokenizer_name(tok)
            if key not in _CHAT_WARNED:
                _CHAT_WARNED.add(key)
                log.warning(
                    "safety_tradeoff tasks are meant for --apply_chat_template: the tokenizer of %s has a chat "
                    "template, but prompts are sent without it, so refusal rates and alignment NLL do not "
                    "measure the model as it is used in chat", key)
        self._affixes = ("", "")
        if self.OUTPUT_TYPE == "loglikelihood" and apply_chat_template and tok is not None \
                and str(meta.get("nll_end_of_turn", True)).lower() not in ("false", "0", "no"):
            affixes = assistant_affixes(tok)
            if affixes is None:
                log.warning("%s: could not read the end-of-turn string from the chat template of %s; "
                            "scoring the reference response alone", name, _tokenizer_name(tok))
            else:
                self._affixes = affixes
        super().build_all_requests(apply_chat_template=apply_chat_template, chat_template=chat_template, **kwargs)
        self._categories = sorted({_slug(inst.doc.get("category") or "") for inst in self.instances} - {""})
        if self.OUTPUT_TYPE == "loglikelihood":
            self._count_tokens(lm, tok)

    def _count_tokens(self, lm: Any, tok: Any) -> None:
        encode_pair = getattr(lm, "_encode_pair", None)
        if encode_pair is None and tok is None:
            raise ValueError(
                f"{self.config.task}: alignment_nll is per response token, and no tokenizer is known to count "
                "them. Pass it in the task metadata: TaskManager(metadata={'tokenizer': tok}) or "
                "--metadata '{\"tokenizer\": \"<model dir or Hub id>\"}'.")
        self._n_tokens = {}
        for inst in self.instances:
            context, continuation = inst.arguments[0], inst.arguments[1]
            if encode_pair is not None and context:
                n = len(encode_pair(context, continuation)[1])
            else:
                n = count_continuation_tokens(tok, context, continuation)
            self._n_tokens[(inst.doc["prompt"], inst.doc["reference"])] = n

    def doc_to_target(self, doc: Mapping, doc_to_target: Any = None) -> Any:
        target = super().doc_to_target(doc, doc_to_target)
        if self.OUTPUT_TYPE == "loglikelihood" and isinstance(target, str):
            prefix, suffix = self._affixes
            return prefix + target + suffix
        return target

    # ---------------------------------------------------------------------------- results
    def _per_category(self, doc: Mapping, out: dict) -> dict:
        """``<metric>_<category>`` for the metrics listed in metadata ``per_category``, as (value,
        weight) pairs aggregated by :func:`weighted_mean`: weight 1 (or the token count) for the
        document's own category, 0 for the others, so every metric is scored on every document."""
        names = (self.config.metadata or {}).get("per_category") or []
        own = _slug(doc.get("category") or "")
        extra = {}
        for name in names:
            if name not in out:
                continue
            value = out[name] if isinstance(out[name], tuple) else (out[name], 1.0)
            for cat in self._categories:
                extra[f"{name}_{cat}"] = value if cat == own else (0.0, 0.0)
        return extra

    def process_results(self, doc: Mapping, results: list) -> dict:
        if self.OUTPUT_TYPE == "loglikelihood":
            key = (doc["prompt"], doc["reference"])
            if key not in self._n_tokens:
                raise ValueError(f"{self.config.task}: no token count for a document (requests were not "
                                 "built by this task object)")
            doc = {**doc, N_TOKENS: self._n_tokens[key]}
        out = super().process_results(doc, results)
        out.update(self._per_category(doc, out))
        for metric, value in out.items():  # metrics named after the data: register them
            if metric not in self._aggregation_list:
                base = max((m for m in self._higher_is_better if metric.startswith(m + "_")), key=len, default=None)
                self._aggregation_list[metric] = weighted_mean if isinstance(value, tuple) else mean
                self._higher_is_better[metric] = self._higher_is_better.get(base, False)
        return out


# ==================================================================================================
