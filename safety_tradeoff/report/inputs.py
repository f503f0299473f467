"""What `safety-tradeoff leaderboard` reads: lm-eval results of any run, judged results, sweep stores.

Every input becomes :class:`~safety_tradeoff.results.RunRecord`\\ s, so the leaderboard goes through the
same aggregation, tables and plots as a sweep's report:

* lm-eval ``--output_path`` folders (searched recursively for ``results_<timestamp>.json``) or such files:
  one record per evaluated model, named from ``model_args`` (``peft``, then ``pretrained``, as lm-eval
  names its output folders; a local path by its last component) or ``--name``. Several runs of one model
  on different tasks merge into one record; a task run twice for one model keeps the latest run (a note
  says so).
* ``results_judged.json`` of ``safety-tradeoff judge``: its metrics join the model of the lm-eval results
  in the same folder (else the model named by the folder, as lm-eval names folders, or ``--name``).
* Sweep stores (``.jsonl`` of :class:`RunRecord`): their records as they are.

Bad input stops with :class:`LeaderboardInputError` naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..judges.agreement import flat_metrics
from ..judges.run import RESULTS_FILE as JUDGED_FILE
from ..judges.samples import MAIN_TASKS
from ..lm_eval_results import canonical, canonical_stderr, derived, flatten
from ..results import ResultsStore, RunRecord
from .aggregate import STDERR_PREFIX

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
BACKENDS = {"hf", "hf-auto", "huggingface", "vllm", "sglang", "openai-completions", "local-completions",
            "local-chat-completions", "openai-chat-completions", "hf-multimodal", "vllm-vlm", "steered"}


class LeaderboardInputError(ValueError):
    """An input the leaderboard cannot read; the message names the file and the problem."""


@dataclass
class ModelResults:
    """One evaluated model, merged over the results files that hold it."""

    key: str  # identity: what lm-eval was given (model_args peft/pretrained, else its model name)
    name: str  # the row's name
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> lm-eval's metrics
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dates: dict[str, float] = field(default_factory=dict)  # task -> date of the run that gave it
    judged: dict[str, tuple[dict[str, Any], dict[str, int]]] = field(default_factory=dict)
    judge_config: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LeaderboardInputError(f"{path}: not UTF-8 text, so not a results file") from None
    except json.JSONDecodeError as err:
        raise LeaderboardInputError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise LeaderboardInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _kind(path: Path, data: Mapping[str, Any]) -> str:
    """'lm_eval' or 'judged'; anything else is an unknown shape."""
    results = data.get("results")
    if isinstance(results, dict) and isinstance(data.get("agreement"), dict) \
            and isinstance(data.get("config"), dict) and "identity" in data["config"]:
        return "judged"
    if isinstance(results, dict) and isinstance(data.get("config"), dict) and isinstance(data.get("configs"), dict):
        return "lm_eval"
    keys = ", ".join(sorted(map(str, data))[:8]) or "none"
    raise LeaderboardInputError(
        f"{path}: unknown results shape (top-level keys: {keys}); expected lm-eval's results_<timestamp>.json "
        f"(keys results, configs, config), {JUDGED_FILE} of `safety-tradeoff judge`, or a sweep store (.jsonl)")


def _model_args(config: Mapping[str, Any]) -> dict[str, str]:
    args = config.get("model_args")
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items() if v is not None}
    out = {}
    for part in str(args or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def model_identity(data: Mapping[str, Any]) -> str | None:
    """What lm-eval evaluated: model_args ``peft``, ``delta``, ``pretrained``, ``model`` or ``path`` (lm-eval's
    own order for naming output folders), else the results' model name (in-memory models)."""
    config = data.get("config") or {}
    args = _model_args(config)
    for key in ("peft", "delta", "pretrained", "model", "path", "engine"):
        if args.get(key):
            return args[key]
    for value in (data.get("model_name"), config.get("model")):
        if isinstance(value, str) and value and value not in BACKENDS:
            return value
    return None


def display_name(identity: str) -> str:
    """A Hub id as it is (``org/model``); a local path by its last component."""
    if HUB_ID.fullmatch(identity) and not Path(identity).exists():
        return identity
    return Path(identity.rstrip("/")).name or identity


def _results_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(lm-eval results files, judged files) under a folder."""
    found = sorted(p for p in path.rglob("results_*.json") if p.is_file())
    judged = [p for p in found if p.name == JUDGED_FILE]
    return [p for p in found if p.name != JUDGED_FILE], judged


@dataclass
class Inputs:
    """Everything read: evaluated models (by row name), sweep records, notes."""

    models: dict[str, ModelResults] = field(default_factory=dict)
    records: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_inputs(paths: Sequence[str | os.PathLike], names: Mapping[str, str] | None = None) -> Inputs:
    """Read every input (see the module docstring). `names`: ``--name WHAT=NAME``, WHAT an input path as
    given or a model identity (what lm-eval was given as ``pretrained``/``peft``)."""
    names = dict(names or {})
    path_keys = {str(Path(k).resolve()): k for k in names if Path(k).exists()}  # --name keys that are inputs
    out = Inputs()
    lm_files: list[tuple[Path, dict[str, Any], str | None]] = []  # (file, its JSON, name forced by its input)
    judged_files: list[tuple[Path, dict[str, Any], str | None]] = []
    used: set[str] = set()
    for raw in paths:
        path = Path(raw)
        key = path_keys.get(str(path.resolve()))
        forced = names[key] if key is not None else None
        used.update([key] if key is not None else [])
        if path.is_dir():
            files, judged = _results_files(path)
            if not files and not judged:
                raise LeaderboardInputError(
                    f"{path}: no results in this folder: no lm-eval results_<timestamp>.json and no {JUDGED_FILE} "
                    "(run lm_eval with --output_path pointing here, or pass a sweep store .jsonl)")
            lm_files += [(f, _load_json(f), forced) for f in files]
            judged_files += [(f, _load_json(f), forced) for f in judged]
        elif path.is_file() and path.suffix == ".jsonl":
            out.records += _store_records(path)
        elif path.is_file():
            data = _load_json(path)
            (lm_files if _kind(path, data) == "lm_eval" else judged_files).append((path, data, forced))
        else:
            raise LeaderboardInputError(f"{path}: no such file or folder")
    for file, data, forced in sorted(lm_files, key=lambda item: float(item[1].get("date") or 0)):
        _kind(file, data)  # a results_*.json found in a folder must be lm-eval's too
        _add_lm_eval(out, file, data, forced, names, used)
    for file, data, forced in judged_files:
        _kind(file, data)
        _add_judged(out, file, data, forced, names, used)
    unused = [k for k in names if k not in used]
    if unused:
        known = sorted({m.key for m in out.models.values()})
        raise LeaderboardInputError(f"--name {unused[0]}={names[unused[0]]}: {unused[0]!r} is neither an input "
                                    f"given on the command line nor an evaluated model (models: {', '.join(known)})")
    _check_clashes(out)
    return out


def _store_records(path: Path) -> list[RunRecord]:
    try:
        records = list(ResultsStore(path).latest().values())
    except ValueError as err:  # a line that is not a RunRecord
        raise LeaderboardInputError(f"{err}; a .jsonl input must be a sweep results store") from None
    if not records:
        raise LeaderboardInputError(f"{path}: an empty results store (no records)")
    return records


def _name_for(identity: str, forced: str | None, names: Mapping[str, str], used: set[str]) -> str:
    if identity in names:
        used.add(identity)
        return names[identity]
    return forced or display_name(identity)


def _add_lm_eval(out: Inputs, file: Path, data: Mapping[str, Any], forced: str | None, names: Mapping[str, str],
                 used: set[str]) -> None:
    identity = model_identity(data)
    if identity is None:
        if forced is None:
            raise LeaderboardInputError(f"{file}: the results do not say which model was evaluated (no model_args "
                                        f"pretrained/peft); name it with --name {file}=NAME")
        identity = f"{forced} ({file})"
    name = _name_for(identity, forced, names, used)
    model = out.models.get(name)
    if model is None:
        model = out.models[name] = ModelResults(key=identity, name=name)
    elif model.key != identity:
        raise LeaderboardInputError(
            f"two models named {name!r}: {model.key} ({', '.join(model.sources)}) and {identity} ({file}); tell "
            f"them apart with --name {identity}=OTHER_NAME (or --name <results folder>=OTHER_NAME)")
    date = float(data.get("date") or 0)
    for task, values in (data.get("results") or {}).items():
        if task in model.results and model.dates.get(task, 0) <= date:
            out.notes.append(f"{name}: {task} was evaluated more than once; using the latest run ({file})")
        if task not in model.results or model.dates.get(task, 0) <= date:
            model.results[task] = dict(values)
            model.dates[task] = date
            if task in (data.get("configs") or {}):
                model.configs[task] = data["configs"][task]
    model.sources.append(str(file))
    for key in ("lm_eval_version", "transformers_version"):
        if data.get(key):
            model.versions[key.removesuffix("_version")] = str(data[key])


def _add_judged(out: Inputs, file: Path, data: Mapping[str, Any], forced: str | None, names: Mapping[str, str],
                used: set[str]) -> None:
    siblings = [p for p in file.parent.glob("results_*.json") if p.name != JUDGED_FILE]
    identities = {model_identity(_load_json(p)) for p in siblings} - {None}
    if forced is not None:
        name = forced
    elif len(identities) == 1:
        name = _name_for(identities.pop(), None, names, used)
    else:  # lm-eval's folder name: the model name with "/" written as "__"
        folder = file.parent.name
        if folder in names:
            used.add(folder)
        name = names.get(folder) or folder.rsplit("__", 1)[-1]
    model = out.models.setdefault(name, ModelResults(key=name, name=name))
    for task, metrics in (data.get("results") or {}).items():
        counts = (data.get("agreement") or {}).get(task) or {}
        model.judged[task] = ({k: v for k, v in metrics.items() if k != "alias"}, dict(counts))
    config = data["config"]  # judges.run writes the judge as "judge"; the sweep's eval.judge calls it "model"
    model.judge_config = {"model": config.get("judge"), "format": config.get("format"),
                          "threshold": config.get("threshold", 0.5)}
    model.sources.append(str(file))


def _check_clashes(out: Inputs) -> None:
    store_names = defaultdict(set)
    for r in out.records:
        store_names[r.name].add(r.run_id)
    clash = sorted(set(store_names) & set(out.models))
    if clash:
        raise LeaderboardInputError(f"two rows named {clash[0]!r}: a sweep store's run and an evaluated model; "
                                    f"rename the model with --name {out.models[clash[0]].key}=OTHER_NAME")


def model_record(model: ModelResults, method: str = "model") -> RunRecord:
    """One evaluated model as a record: canonical metrics, every ``task/metric``, lm-eval's standard errors
    (``stderr/<metric>``) and the judged metrics (named as the sweep names them)."""
    flat = flatten(model.results)
    metrics: dict[str, float] = {**canonical(flat), **derived(model.results, model.configs), **flat}
    metrics.update({f"{STDERR_PREFIX}{k}": v for k, v in canonical_stderr(model.results).items()})
    if model.judged:
        metrics.update(flat_metrics(model.judged, MAIN_TASKS))
        se = model.judged.get(next((t for t in MAIN_TASKS if t in model.judged), ""), ({}, {}))[0].get(
            "judge_harmful_rate_stderr,none")
        if isinstance(se, (int, float)):
            metrics[f"{STDERR_PREFIX}judge_harmful_rate"] = float(se)
    config: dict[str, Any] = {"model": model.key, "tasks": sorted(model.results), "sources": model.sources}
    if model.judge_config:
        config["eval"] = {"judge": model.judge_config}
    return RunRecord(run_id=f"lm-eval:{model.key}", name=model.name, method=method, seed=0, config=config,
                     metrics=metrics, versions=model.versions)
