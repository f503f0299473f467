"""The sweep's ``eval.judge`` block: which judge scores every evaluated checkpoint's harmful-task samples."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .formats import FORMAT_NAMES

#: the judge dtypes (--dtype, eval.judge.dtype); auto: bfloat16 (float16 without bf16 support) on GPU, float32 else
DTYPES = ("auto", "float32", "bfloat16", "float16")

#: keys of ``eval.judge`` -> what they set (the arguments of :func:`~safety_tradeoff.judges.adapters.load_judge`)
JUDGE_KEYS: dict[str, str] = {
    "model": "Hub id or local folder of the judge (required)",
    "format": f"one of {', '.join(FORMAT_NAMES)}; guessed from the model when absent",
    "threshold": "P(unsafe) at or above which a verdict is unsafe (default 0.5)",
    "label_map": "classifier judges: which labels mean unsafe, e.g. 'unsafe=LABEL_1' or {unsafe: [LABEL_1]}",
    "batch_size": "judge batch size (default 8)",
    "device": "auto | cpu | cuda | cuda:N | mps (default auto)",
    "dtype": "auto | float32 | bfloat16 | float16 (default auto)",
    "max_response_tokens": "generative judges: responses are clipped to this many judge tokens (default 512, as "
                           "HarmBench; 0: no clipping)",
    "input": "classifier judges: 'pair' (prompt, response) or 'response' alone (default pair)",
}


def check_judge_config(values: Any, where: str = "eval.judge") -> dict[str, Any]:
    """Validate an ``eval.judge`` mapping; ValueError naming ``eval.judge.<key>`` otherwise."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a mapping with at least 'model', got {type(values).__name__}")
    unknown = sorted(set(values) - set(JUDGE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; known: {', '.join(JUDGE_KEYS)}")
    if not values.get("model"):
        raise ValueError(f"{where}.model: the judge model (Hub id or folder) is required")
    fmt = values.get("format")
    if fmt is not None and fmt not in FORMAT_NAMES:
        raise ValueError(f"{where}.format: unknown format {fmt!r}; known: {', '.join(FORMAT_NAMES)}")
    threshold = values.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"{where}.threshold: expected a number in [0, 1], got {threshold!r}")
    batch_size = values.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"{where}.batch_size: expected a positive integer, got {batch_size!r}")
    clip = values.get("max_response_tokens")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int) or clip < 0):
        raise ValueError(f"{where}.max_response_tokens: expected 0 (no clipping) or a positive integer, got {clip!r}")
    device = values.get("device")
    if device is not None and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(device)):
        raise ValueError(f"{where}.device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if values.get("dtype") is not None and values["dtype"] not in DTYPES:
        raise ValueError(f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {values['dtype']!r}")
    if values.get("input", "pair") not in ("pair", "response"):
        raise ValueError(f"{where}.input: expected 'pair' or 'response', got {values.get('input')!r}")
    return dict(values)


__all__ = ["DTYPES", "JUDGE_KEYS", "check_judge_config"]
