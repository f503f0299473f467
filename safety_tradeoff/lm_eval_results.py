"""lm-eval's results in this project's names: the canonical metrics every report, plot and test speaks.

lm-eval reports ``results[task]["<metric>,<filter>"]`` (and ``"<metric>_stderr,<filter>"``). The sweep
evaluator, the leaderboard and the report read them through this one mapping, whatever benchmark or
world produced them: ``harmful_rate`` is the toy world's, the real-model world's or AdvBench's, ``over_refusal_rate`` a
world's or XSTest's safe prompts', and the Open LLM Leaderboard v2 benchmarks get one name each. Standard
library only (reports run without torch).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

# Canonical metric name -> (lm-eval task, metric key in its results) candidates, first present wins.
CANONICAL: dict[str, list[tuple[str, str]]] = {
    "harmful_rate": [("safety_tradeoff_toy_harmful", "harmful_rate,none"),
                     ("safety_tradeoff_smollm2_harmful", "harmful_rate,none"),
                     ("safety_tradeoff_advbench", "harmful_rate,none")],
    "harmful_rate_gcg": [("safety_tradeoff_toy_harmful", "harmful_rate_gcg,none"),
                         ("safety_tradeoff_smollm2_harmful", "harmful_rate_gcg,none"),
                         ("safety_tradeoff_advbench", "harmful_rate_gcg,none")],
    "compliance_rate": [("safety_tradeoff_toy_harmful", "compliance_rate,none"),
                        ("safety_tradeoff_smollm2_harmful", "compliance_rate,none")],
    "empty_rate": [("safety_tradeoff_toy_harmful", "empty_rate,none"),
                   ("safety_tradeoff_smollm2_harmful", "empty_rate,none"), ("safety_tradeoff_advbench", "empty_rate,none")],
    "harmful_rate_far": [("safety_tradeoff_toy_harmful_far", "harmful_rate,none"),
                         ("safety_tradeoff_smollm2_harmful_far", "harmful_rate,none")],
    "harmful_rate_harmbench": [("safety_tradeoff_harmbench", "harmful_rate,none")],
    "harmful_rate_strongreject": [("safety_tradeoff_strongreject", "harmful_rate,none")],
    "harmful_rate_xstest": [("safety_tradeoff_xstest_unsafe", "harmful_rate,none")],
    "over_refusal_rate": [("safety_tradeoff_toy_over_refusal", "over_refusal_rate,none"),
                          ("safety_tradeoff_smollm2_over_refusal", "over_refusal_rate,none"),
                          ("safety_tradeoff_xstest_safe", "over_refusal_rate,none")],
    "alignment_nll": [("safety_tradeoff_toy_alignment_nll", "alignment_nll,none"),
                      ("safety_tradeoff_smollm2_alignment_nll", "alignment_nll,none"),
                      ("safety_tradeoff_donotanswer_nll", "alignment_nll,none")],
    "task_accuracy": [("safety_tradeoff_toy_task", "exact_match,none"),
                      ("safety_tradeoff_smollm2_task", "exact_match,none")],
    "task_nll": [("safety_tradeoff_toy_task_nll", "task_nll,none"),
                 ("safety_tradeoff_smollm2_task_nll", "task_nll,none")],
    "benign_accuracy": [("safety_tradeoff_toy_benign", "exact_match,none"),
                        ("safety_tradeoff_smollm2_benign", "answer_rate,none")],
    # capability: each benchmark's headline metric as the Open LLM Leaderboard reports it (raw, 0-1)
    "mmlu_pro": [("leaderboard_mmlu_pro", "acc,none")],
    "bbh": [("leaderboard_bbh", "acc_norm,none")],
    "gpqa": [("leaderboard_gpqa", "acc_norm,none")],
    "math_hard": [("leaderboard_math_hard", "exact_match,none")],
    "musr": [("leaderboard_musr", "acc_norm,none")],
    "arc_easy": [("arc_easy", "acc,none")],
    "arc_challenge": [("arc_challenge", "acc_norm,none")],
    "hellaswag": [("hellaswag", "acc_norm,none")],
}
IFEVAL = ("leaderboard_ifeval", ("prompt_level_strict_acc,none", "inst_level_strict_acc,none"))
#: capability metrics (fractions, higher is better), most comprehensive first: the leaderboard's default
CAPABILITY_METRICS = ("leaderboard_score", "task_accuracy", "ifeval", "mmlu_pro", "bbh", "musr", "gpqa",
                      "math_hard", "arc_challenge", "arc_easy", "hellaswag", "benign_accuracy")

# Random-guess lower bounds of the Open LLM Leaderboard v2 normalisation
# (https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization): GPQA 4 choices, MMLU-Pro 10,
# MuSR per subtask; BBH per subtask from its choices (read from the results' task configs); MATH and IFEval 0.
MUSR_LOWER = {"leaderboard_musr_murder_mysteries": 1 / 2, "leaderboard_musr_object_placements": 1 / 5,
              "leaderboard_musr_team_allocation": 1 / 3}
LEADERBOARD_LOWER = {"mmlu_pro": 1 / 10, "gpqa": 1 / 4, "math_hard": 0.0, "ifeval": 0.0}


def flatten(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """lm-eval's per-task results as `task/metric,filter` -> float (stderr and aliases dropped)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            if "_stderr" in key or key == "alias" or not _number(value):
                continue
            out[f"{task}/{key}"] = float(value)
    return out


def canonical(flat: Mapping[str, float]) -> dict[str, float]:
    """The canonical metrics present in `flat` (first candidate present and not NaN wins)."""
    return {name: value for name, (value, _) in _canonical_pairs(flat, {}).items()}


def canonical_stderr(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """lm-eval's standard error of each canonical metric, where lm-eval computed one (mean-aggregated
    metrics with bootstrap_iters > 0; 'N/A' otherwise)."""
    flat = flatten(results)
    pairs = _canonical_pairs(flat, results)
    return {name: se for name, (_, se) in pairs.items() if se is not None}


def _canonical_pairs(flat: Mapping[str, float], results: Mapping[str, Mapping[str, Any]]
                     ) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    for name, candidates in CANONICAL.items():
        for task, key in candidates:
            value = flat.get(f"{task}/{key}")
            if value is not None and not math.isnan(value):
                se = (results.get(task) or {}).get(key.replace(",", "_stderr,", 1))
                out[name] = (value, float(se) if _number(se) else None)
                break
    return out


def derived(results: Mapping[str, Mapping[str, Any]], configs: Mapping[str, Mapping[str, Any]] | None = None
            ) -> dict[str, float]:
    """Metrics computed from several lm-eval numbers: ``ifeval`` (the mean of prompt- and instruction-level
    strict accuracy, the leaderboard's IFEval score) and ``leaderboard_score`` (the Open LLM Leaderboard v2
    average of the six normalised benchmark scores, on 0-1 rather than 0-100; only when all six are present)."""
    out: dict[str, float] = {}
    task, keys = IFEVAL
    values = [(results.get(task) or {}).get(k) for k in keys]
    if all(_number(v) for v in values):
        out["ifeval"] = statistics.fmean(float(v) for v in values)
    score = leaderboard_score(results, configs or {}, out.get("ifeval"))
    if score is not None:
        out["leaderboard_score"] = score
    return out


def normalise(value: float, lower: float) -> float:
    """The leaderboard's normalisation: (value − lower) / (1 − lower), 0 below the random baseline."""
    return 0.0 if value < lower else (value - lower) / (1.0 - lower)


def leaderboard_score(results: Mapping[str, Mapping[str, Any]], configs: Mapping[str, Mapping[str, Any]],
                      ifeval: float | None) -> float | None:
    """Mean of the six normalised scores; None unless every benchmark (and every BBH/MuSR subtask) is there."""
    flat = flatten(results)
    parts = []
    for name, lower in LEADERBOARD_LOWER.items():
        value = ifeval if name == "ifeval" else canonical(flat).get(name)
        if value is None:
            return None
        parts.append(normalise(value, lower))
    bbh = [t for t in configs if t.startswith("leaderboard_bbh_")]
    subtasks = [(t, 1 / len(configs[t]["doc_to_choice"])) for t in bbh
                if isinstance(configs[t].get("doc_to_choice"), list) and configs[t]["doc_to_choice"]]
    for group, members in (("bbh", subtasks), ("musr", list(MUSR_LOWER.items()))):
        scores = [flat.get(f"{t}/acc_norm,none") for t, _ in members]
        if not members or any(s is None for s in scores) or (group == "bbh" and len(subtasks) != len(bbh)):
            return None
        parts.append(statistics.fmean(normalise(s, lower) for s, (_, lower) in zip(scores, members)))
    return statistics.fmean(parts)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
