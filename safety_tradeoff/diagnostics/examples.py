"""(prompt, response) pairs from any dataset, tokenised the way training and lm-eval see them.

The diagnostics must measure the same L_s the sweep reports as ``alignment_nll``: the response tokens'
NLL after the chat template's generation prompt (what lm-eval scores with ``--apply_chat_template``),
averaged over tokens. So every pair is rendered through the tokenizer's chat template, and the
prompt part (user turn + generation prompt) is masked out of the loss.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PROMPT_COLUMNS = ("prompt", "question", "instruction")
RESPONSE_COLUMNS = ("completion", "response", "reference", "chosen", "output", "answer")


class DiagnosticsDataError(ValueError):
    """A dataset the diagnostics cannot read as (prompt, response) pairs; the message names it."""


@dataclass
class Encoded:
    """One tokenised pair: `ids` = prompt tokens then response tokens; `user` = the token span of the
    user's own text inside the prompt (what prompt representations pool over)."""

    ids: list[int]
    n_prompt: int
    user: tuple[int, int] = (0, 0)


def _text(value: Any, role: str | None = None) -> str:
    """Plain text of a string or of a conversational column (a list of messages); None is empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        picked = [m for m in value if role is None or m.get("role") == role] or value
        return str(picked[-1]["content"])
    raise DiagnosticsDataError(f"expected text or a list of chat messages, got {type(value).__name__}")


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, spec: str) -> str:
    if wanted:
        if wanted not in columns:
            raise DiagnosticsDataError(f"{spec}: no {what} column {wanted!r}; columns: {', '.join(columns)}")
        return wanted
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DiagnosticsDataError(f"{spec}: no {what} column (looked for {', '.join(candidates)}); columns: "
                                   f"{', '.join(columns)}; name it with --set {what}_column=NAME "
                                   f"(diagnostics.{what}_column in a sweep)")
    return found


def load_pairs(spec: str, *, prompt_column: str | None = None, response_column: str | None = None,
               max_examples: int = 256, seed: int = 0) -> list[tuple[str, str]]:
    """A seeded sample of (prompt, response) pairs of dataset `spec` (see `safety_tradeoff.data`)."""
    from ..data import load_dataset_spec

    data = load_dataset_spec(spec)
    columns = list(data.column_names)
    try:
        if "messages" in columns and not prompt_column and "prompt" not in columns:
            rows = [(_text(m, "user"), _text(m, "assistant")) for m in data["messages"]]
        else:
            p = _pick(columns, prompt_column, PROMPT_COLUMNS, "prompt", spec)
            r = _pick(columns, response_column, RESPONSE_COLUMNS, "response", spec)
            rows = [(_text(a, "user"), _text(b, "assistant")) for a, b in zip(data[p], data[r])]
    except DiagnosticsDataError as err:
        if str(err).startswith(spec):
            raise
        raise DiagnosticsDataError(f"{spec}: {err}") from None
    rows = [(p, r) for p, r in rows if p.strip() and r.strip()]
    if not rows:
        raise DiagnosticsDataError(f"{spec}: no example with a non-empty prompt and response")
    if len(rows) > max_examples:
        rows = random.Random(seed).sample(rows, max_examples)
    return rows


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[Encoded]:
    """Chat-template token ids with the prompt length; pairs whose response is cut away are dropped."""
    if not getattr(tokenizer, "chat_template", None):
        raise DiagnosticsDataError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template: the diagnostics score "
            "responses after the template's generation prompt, as training and lm-eval do; set "
            "tokenizer.chat_template (or use the instruct model's tokenizer)")
    out = []
    for prompt, response in pairs:
        user = [{"role": "user", "content": prompt}]
        context = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
        if not full.startswith(context):
            raise DiagnosticsDataError("the chat template does not render an assistant turn as an extension of "
                                       "its generation prompt; the response tokens cannot be told apart")
        offsets = tokenizer(context, add_special_tokens=False,
                            return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)))
        n_prompt = len(offsets["input_ids"])
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
        if len(ids) > n_prompt:
            out.append(Encoded(ids, n_prompt, _user_span(offsets.get("offset_mapping"), context, prompt, n_prompt)))
    if not out:
        raise DiagnosticsDataError(f"no response tokens left within max_length={max_length}")
    return out


def _user_span(offsets: list | None, context: str, prompt: str, n_prompt: int) -> tuple[int, int]:
    """Token span of the user's text in the rendered prompt, so that prompt representations are not
    diluted by the template's system prompt and headers (25 tokens on Llama 3.1 instruct); the whole
    prompt when the tokenizer gives no offsets (slow tokenizers) or the template rewrote the text."""
    start = context.rfind(prompt.strip()) if prompt.strip() else -1
    if start < 0 or not offsets:
        return 0, n_prompt
    end = start + len(prompt.strip())
    inside = [i for i, (a, b) in enumerate(offsets) if b > start and a < end and i < n_prompt]
    return (inside[0], inside[-1] + 1) if inside else (0, n_prompt)


def make_batches(encoded: Sequence[Encoded], batch_size: int, pad_id: int, device: Any) -> list[dict]:
    """Right-padded batches with `labels` = -100 on prompt and padding (the loss covers responses only)
    and `user_mask` on the user's text (not a model input: see `model_inputs`)."""
    import torch

    batches = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(e.ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        user = torch.zeros_like(ids, dtype=torch.bool)
        for i, e in enumerate(chunk):
            ids[i, :len(e.ids)] = torch.tensor(e.ids)
            mask[i, :len(e.ids)] = 1
            labels[i, e.n_prompt:len(e.ids)] = torch.tensor(e.ids[e.n_prompt:])
            user[i, e.user[0]:e.user[1]] = True
        batches.append({"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                        "user_mask": user.to(device)})
    return batches


def model_inputs(batch: dict) -> dict:
    """The keys of a batch the model's forward takes."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


@dataclass
class Forward:
    """Per-example results of one pass of the model over a dataset."""

    nll_sum: Any   # (n,) float64: summed response-token NLL
    n_tokens: Any  # (n,) float64
    prompt_emb: Any    # (n, d) float32: mean last hidden state over the user's text in the prompt
    response_emb: Any  # (n, d) float32: mean last hidden state over response positions

    @property
    def loss(self) -> float:
        """Token-weighted mean NLL (the definition of ``alignment_nll``)."""
        return float(self.nll_sum.sum() / self.n_tokens.sum())


def response_nll(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per example: the summed next-token NLL of the labelled (response) positions, and how many there are.
    Differentiable: the Case II row equilibrium (`equilibrium.py`) takes gradients through it."""
    import torch

    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    scored = target != -100
    nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
    return nll.sum(1), scored.sum(1)


def forward_stats(model: Any, batches: Sequence[dict]) -> Forward:
    """NLL and mean-pooled representations of every example, without gradients."""
    import torch

    sums, counts, prompts, responses = [], [], [], []
    with torch.no_grad():
        for batch in batches:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
            labels = batch["labels"]
            nll, scored = response_nll(out.logits, labels)
            sums.append(nll.double().cpu())
            counts.append(scored.double().cpu())
            hidden = out.hidden_states[-1].float()
            response = (labels != -100).unsqueeze(-1)
            prompt = batch["user_mask"].unsqueeze(-1)
            responses.append(((hidden * response).sum(1) / response.sum(1).clamp(min=1)).cpu())
            prompts.append(((hidden * prompt).sum(1) / prompt.sum(1).clamp(min=1)).cpu())
    return Forward(torch.cat(sums), torch.cat(counts), torch.cat(prompts), torch.cat(responses))
