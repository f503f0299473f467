"""Injection guard: text from the evaluated model must not be able to change the judge's prompt format.

HarmBench issue #91 (https://github.com/centerforaisafety/HarmBench/issues/91): a completion containing
``[/INST]`` closes the classifier's instruction early, so whatever follows reads as the judge's own
answer. A fine-tuned model can emit such markers by accident (its own chat template leaks) or on
purpose. Two layers keep the format intact:

1. :func:`neutralise` breaks every chat-control marker in the prompt and the response *text* by putting
   a visible space after its first character (``[/INST]`` -> ``[ /INST]``, ``<|eot_id|>`` ->
   ``< |eot_id|>``): the judge's tokenizer special tokens, the usual turn markers of Llama 2/3, ChatML,
   Phi and Gemma templates, any ``<|...|>`` token, the judge format's own section markers
   (``<BEGIN CONVERSATION>``, ``[GENERATION]:``) and, for Llama Guard, lines that start with a turn
   label (``Agent:`` -> ``> Agent:``). The judge still reads the words; they just cannot open a turn.
2. :func:`injected_special_ids` then checks the *token ids*: the guarded text, tokenised alone, must
   contain none of the tokenizer's special-token ids. Only the template's own control tokens remain.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Turn and control markers of common chat formats (matched case-insensitively).
CHAT_MARKERS: tuple[str, ...] = (
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>",                       # Llama 2 / Mistral
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",  # Llama 3
    "<|eot_id|>", "<|eom_id|>", "<|header_start|>", "<|header_end|>", "<|eot|>",      # Llama 3 / 4
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",                                    # ChatML
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",                             # Phi / Zephyr / toy world
    "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",                             # Gemma
)
_PIPE_TOKEN = re.compile(r"<\|[^|<>\s]{1,80}\|>")  # any <|...|> control token, reserved ones included


def special_token_strings(tokenizer: Any) -> list[str]:
    """The judge tokenizer's special tokens as strings (BOS/EOS/PAD, role tokens, reserved tokens...)."""
    if tokenizer is None:
        return []
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            tokens.add(str(added))
    return sorted(t for t in tokens if len(t) >= 2 and not t.isalnum())


def _break(marker: str) -> str:
    return marker[0] + " " + marker[1:]


def neutralise(text: str, *, markers: Iterable[str] = (), line_labels: Sequence[str] = ()) -> str:
    """`text` with every control marker broken by a visible space, and turn labels quoted at line starts.

    `markers`: extra strings (the judge tokenizer's special tokens, the format's section markers) besides
    :data:`CHAT_MARKERS`; `line_labels`: e.g. ``("User", "Agent")`` for Llama Guard's conversation.
    """
    if not text:
        return text or ""
    literal = sorted({*CHAT_MARKERS, *markers}, key=len, reverse=True)
    pattern = re.compile("|".join([_PIPE_TOKEN.pattern] + [re.escape(m) for m in literal]), re.IGNORECASE)
    text = pattern.sub(lambda m: _break(m.group(0)), text)
    if line_labels:
        labels = "|".join(re.escape(label) for label in line_labels)
        text = re.sub(rf"(?im)^([ \t]*)((?:{labels})[ \t]*:)", r"\1> \2", text)
    return text


def injected_special_ids(tokenizer: Any, texts: Iterable[str]) -> set[int]:
    """Special-token ids that `texts` (guarded user text) would produce when tokenised normally: must be
    empty. Returned rather than raised so the caller can name the sample."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    special.discard(getattr(tokenizer, "unk_token_id", None))  # unknown words map to <unk>: not an injection
    found: set[int] = set()
    for text in texts:
        if text:
            found |= special & set(tokenizer(text, add_special_tokens=False)["input_ids"])
    return found


__all__ = ["CHAT_MARKERS", "injected_special_ids", "neutralise", "special_token_strings"]
