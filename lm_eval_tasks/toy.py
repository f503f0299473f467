"""``custom_dataset`` of the toy-world tasks: which world's evaluation files to read (``!function toy.load_toy``).

A toy model's folder carries a marker file naming its world, so ``lm_eval --model_args
pretrained=<world>/aligned`` finds the data with no other argument; the order of the other routes is
in :func:`resolve_toy_world` (and the tasks' README).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets

from safety_tradeoff.lm_eval_tasks.files import (
    _dataset, _log_once, _prompt_column, _row, _text_column, _user_path, log, read_rows,
)

TOY_WORLD_ENV = "SAFETY_TRADEOFF_TOY_WORLD"
TOY_MARKER = "safety_tradeoff_toyworld.json"  # written into toy model dirs by the toy-world builder
TOY_SETS = ("harmful", "harmful_far", "over_refusal", "alignment", "task", "benign")


def _marker_world(candidate: Any) -> Path | None:
    """World root from the marker file in a model/tokenizer directory (a str path or an object)."""
    if candidate is None:
        return None
    name = candidate if isinstance(candidate, (str, os.PathLike)) else getattr(candidate, "name_or_path", None)
    if not name or not isinstance(name, (str, os.PathLike)):
        return None
    marker = Path(os.fspath(name)).expanduser() / TOY_MARKER
    if not marker.is_file():
        return None
    try:
        return Path(json.loads(marker.read_text(encoding="utf-8"))["world_dir"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{marker}: unreadable toy-world marker ({err})") from None


def resolve_toy_world(metadata: Mapping[str, Any]) -> tuple[Path, str]:
    """(world root, how it was found), in the documented order: metadata ``toy_world``, the model's
    marker file (``pretrained``, then ``tokenizer``), env ``SAFETY_TRADEOFF_TOY_WORLD``, default world."""
    if metadata.get("toy_world"):
        return _user_path(metadata["toy_world"]), "metadata toy_world"
    for key in ("pretrained", "tokenizer"):
        world = _marker_world(metadata.get(key))
        if world is not None:
            return world, f"marker file of the model ({key})"
    if os.environ.get(TOY_WORLD_ENV):
        return _user_path(os.environ[TOY_WORLD_ENV]), f"${TOY_WORLD_ENV}"
    return _default_world(), "default world (ToyWorldConfig())"


@lru_cache(maxsize=1)
def _default_world() -> Path:
    from safety_tradeoff.toyworld import ToyWorldConfig, load_or_build

    log.warning("safety_tradeoff: no toy world given (metadata toy_world, a toy model's marker file or "
                "$%s): using the default world, building it in the cache if needed (about a minute)",
                TOY_WORLD_ENV)
    return load_or_build(ToyWorldConfig(), progress=log.info).root


def load_toy(toy_set: str, **metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` of the toy tasks: one evaluation file of a toy world (see README)."""
    if toy_set not in TOY_SETS:
        raise ValueError(f"unknown toy-world set {toy_set!r}; known: {', '.join(TOY_SETS)}")
    override = metadata.get(f"toy_{toy_set}_path")
    if override:
        path = _user_path(override)
        source = f"metadata toy_{toy_set}_path"
    else:
        root, source = resolve_toy_world(metadata)
        if not root.is_dir():
            raise ValueError(f"{root}: toy world not found (from {source})")
        path = root / "data" / "eval" / f"{toy_set}.jsonl"
        if not path.is_file():
            raise ValueError(f"{path}: file not found; {root} (from {source}) is not a built toy world")
    _log_once(f"safety_tradeoff_toy {toy_set}: {path} (from {source})")
    return world_eval_dataset(path)


def world_eval_dataset(path: Path) -> datasets.DatasetDict:
    """A world's evaluation file (rows ``prompt``, ``reference``, optional ``category``/``answer``) as the
    tasks' one ``test`` split; shared by the toy and the real-model world's tasks."""
    rows = read_rows(path)
    prompts = _prompt_column(rows, path, "prompt")
    refs = _text_column(rows, path, "reference")
    cats = _text_column(rows, path, "category", required=False)
    answers = _text_column(rows, path, "answer", required=False)
    return _dataset([_row(p, r, c, "", a) for p, r, c, a in zip(prompts, refs, cats, answers)])


# ==================================================================================================
# Hub data (with a local copy through metadata <name>_path for offline users)
