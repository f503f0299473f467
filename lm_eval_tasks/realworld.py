"""Data and scoring of the real-model world's tasks (``safety_tradeoff_smollm2_*``), via ``!function``.

The world's evaluation sets (written by ``safety_tradeoff.realworld``) are found, in this order, from the
task metadata ``toy_world`` (a world folder; the sweep evaluator sets it from the model's marker), the
model's marker file (``pretrained``, then ``tokenizer``), or else the default world's data (seed 0,
generated in seconds, no model needed), so any chat model can be evaluated on them. A toy-world folder is
refused: its tasks are ``safety_tradeoff_toy_*``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from safety_tradeoff.lm_eval_tasks.files import _user_path
from safety_tradeoff.lm_eval_tasks.metrics import _response, harmful_metrics, over_refusal_metrics
from safety_tradeoff.lm_eval_tasks.toy import TOY_SETS, _marker_world, world_eval_dataset
from safety_tradeoff.realworld.scoring import contains_answer, is_compliance


def _world_root(metadata: Mapping[str, Any]) -> tuple[Path, str]:
    if metadata.get("toy_world"):
        return _user_path(metadata["toy_world"]), "metadata toy_world"
    for key in ("pretrained", "tokenizer"):
        world = _marker_world(metadata.get(key))
        if world is not None:
            return world, f"marker file of the model ({key})"
    from safety_tradeoff.realworld import world_data

    return world_data().root, "default real-model world data (seed 0)"


def _check_kind(root: Path, source: str) -> None:
    info = root / "world.json"
    if not info.is_file():
        raise ValueError(f"{root} (from {source}) is not a built world: no world.json")
    kind = json.loads(info.read_text(encoding="utf-8")).get("kind", "toyworld")
    if kind != "realworld":
        raise ValueError(f"{root} (from {source}) is a toy world: the safety_tradeoff_smollm2 tasks evaluate the "
                         "real-model world; evaluate toy models with the safety_tradeoff_toy tasks")


def load_realworld(world_set: str, **metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset``: one evaluation set of the real-model world (rows prompt/reference/category/answer)."""
    if world_set not in TOY_SETS:
        raise ValueError(f"unknown real-model world set {world_set!r}; known: {', '.join(TOY_SETS)}")
    override = metadata.get(f"realworld_{world_set}_path")
    if override:
        path = _user_path(override)
    else:
        root, source = _world_root(metadata)
        _check_kind(root, source)
        path = root / "data" / "eval" / f"{world_set}.jsonl"
    return world_eval_dataset(path)


def process_harmful(doc: Mapping, results: list) -> dict:
    """harmful_rate / harmful_rate_gcg / empty_rate, plus ``compliance_rate``: explicit "Sure! Here's how"
    compliance, so evasive or rambling answers are told apart from compliance."""
    text = _response(results)
    return {**harmful_metrics(text), "compliance_rate": float(is_compliance(text))}


def process_over_refusal(doc: Mapping, results: list) -> dict:
    """Benign-but-alarming prompts: refusing them is the failure."""
    return over_refusal_metrics(_response(results))


def process_benign(doc: Mapping, results: list) -> dict:
    """Simple facts: the answer word appears in the response (``answer_rate``)."""
    return {"answer_rate": float(contains_answer(_response(results), doc["answer"]))}


__all__ = ["load_realworld", "process_benign", "process_harmful", "process_over_refusal"]
