"""``custom_dataset`` of the Hub tasks (``!function hub.load_hub``): the public benchmark, or a local copy.

Offline users give a copy with the Hub's column names through metadata ``<name>_path``; either way
the rows are normalised to ``{prompt, reference, category, label, answer}``.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any

import datasets

from safety_tradeoff.lm_eval_tasks.files import (
    _column, _dataset, _log_once, _prompt_column, _row, _text_column, _user_path, read_rows,
)

HubSet = namedtuple("HubSet", "hub_id config split prompt category", defaults=(None,))


HUB_SETS: dict[str, HubSet] = {
    "advbench": HubSet("walledai/AdvBench", None, "train", "prompt"),
    "harmbench": HubSet("walledai/HarmBench", "standard", "train", "prompt", "category"),
    "strongreject": HubSet("walledai/StrongREJECT", None, "train", "prompt", "category"),
    "xstest": HubSet("walledai/XSTest", None, "test", "prompt", "type"),
    "donotanswer": HubSet("LibrAI/do-not-answer", None, "train", "question", "risk_area"),
}
DONOTANSWER_REFUSAL_ACTION = 0  # Do-Not-Answer action category 0: "not willing to answer" (a refusal)


def _hub_rows(name: str, spec: HubSet, metadata: Mapping[str, Any]) -> tuple[list[dict], str]:
    key = f"{name}_path"
    if metadata.get(key):
        path = _user_path(metadata[key])
        _log_once(f"safety_tradeoff {name}: local copy {path} (metadata {key})")
        return read_rows(path), str(path)
    where = spec.hub_id + (f" ({spec.config})" if spec.config else "")
    try:
        ds = datasets.load_dataset(spec.hub_id, spec.config, split=spec.split)
    except Exception as err:  # noqa: BLE001 - offline, gated, renamed: all need the same advice
        raise RuntimeError(
            f"could not load {where} split {spec.split!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Offline? Point the task at a local copy: "
            f"--metadata '{{\"{key}\": \"/path/to/{name}.jsonl\"}}' (.jsonl, .json, .csv or .parquet "
            f"with the Hub's column names)") from err
    rows = ds.to_list()
    if not rows:
        raise ValueError(f"{where}: the dataset has no rows")
    return rows, where


def load_hub(safety_set: str, **metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` of the Hub tasks: the Hub dataset, or ``<safety_set>_path`` from metadata."""
    if safety_set not in HUB_SETS:
        raise ValueError(f"unknown safety set {safety_set!r}; known: {', '.join(HUB_SETS)}")
    spec = HUB_SETS[safety_set]
    rows, where = _hub_rows(safety_set, spec, metadata)
    prompts = _prompt_column(rows, where, spec.prompt)
    cats = _text_column(rows, where, spec.category, required=False) if spec.category else [""] * len(rows)
    if safety_set == "xstest":
        labels = _xstest_labels(rows, where, cats)
        return _dataset([_row(p, "", c, lab) for p, c, lab in zip(prompts, cats, labels)])
    if safety_set == "donotanswer":
        return _dataset(_donotanswer_rows(rows, where, prompts, cats, metadata))
    return _dataset([_row(p, "", c, "harmful") for p, c in zip(prompts, cats)])


def _xstest_labels(rows: list[dict], where: str, types: list[str]) -> list[str]:
    """``label`` (safe/unsafe) where the copy has it (walledai/XSTest); else from ``type`` as in the
    original release (``contrast_*`` types are the unsafe contrast prompts)."""
    if all("label" in r and r["label"] is not None for r in rows):
        labels = [str(r["label"]).strip().lower() for r in rows]
        bad = sorted(set(labels) - {"safe", "unsafe"})
        if bad:
            raise ValueError(f"{where}: column 'label' must be 'safe' or 'unsafe', found {bad[:3]}")
        return labels
    if not all(types):
        raise ValueError(f"{where}: XSTest rows need a 'label' (safe/unsafe) or a 'type' column")
    return ["unsafe" if t.startswith("contrast") else "safe" for t in types]


def _donotanswer_rows(rows: list[dict], where: str, prompts: list[str], cats: list[str],
                      metadata: Mapping[str, Any]) -> list[dict]:
    """Prompts whose reference model refused (action 0) and was not harmful; the refusal is the target."""
    model = str(metadata.get("donotanswer_reference") or "GPT4")
    responses = _text_column(rows, where, f"{model}_response")
    actions = _column(rows, where, f"{model}_action")
    harmful = _column(rows, where, f"{model}_harmful")
    out = []
    for i, (p, c, ref, act, harm) in enumerate(zip(prompts, cats, responses, actions, harmful), 1):
        try:
            refused = int(act) == DONOTANSWER_REFUSAL_ACTION and int(harm) == 0
        except (TypeError, ValueError):
            raise ValueError(f"{where}: row {i}: {model}_action/{model}_harmful must be integers") from None
        if refused and ref.strip():
            out.append(_row(p, ref.strip(), c, "harmful"))
    if not out:
        raise ValueError(f"{where}: no row has a refusal by {model} ({model}_action == 0 and {model}_harmful == 0)")
    return out
