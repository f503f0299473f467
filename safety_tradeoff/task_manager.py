"""The lm-eval ``TaskManager`` for a list of task names: this project's tasks, plus lm-eval's own when needed.

Indexing lm-eval's built-in tasks costs 6-12 s per ``TaskManager``, so the sweep evaluator and
``LmEvalCallback`` leave them out when every requested task is defined in this project's folder. That
decision is made here, once, from the *resolved* names: a group or tag of this project is replaced by
its members, recursively, so ``safety_tradeoff`` (which holds ``arc_easy``) and
``safety_tradeoff_leaderboard`` (which holds lm-eval's ``leaderboard`` group) get the built-in index,
while ``safety_tradeoff_toy`` does not. Deciding from the requested names alone (they all start with
``safety_tradeoff``) made lm-eval fail on the built-in members with
``TypeError: expected str, bytes or os.PathLike object, not NoneType``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


# keys that make a group member an inline task definition rather than a reference to an indexed name
INLINE_KEYS = {"dataset_path", "custom_dataset", "class", "include"}


def _members(entry: Any) -> list[str]:
    """Member names of a group (its YAML's ``task:`` list; a dict member by its ``task``/``group`` key) or
    tag (the tasks carrying it); [] for a task."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    if entry.kind == Kind.TAG:
        return sorted(entry.tags)
    if entry.kind != Kind.GROUP:
        return []
    cfg = entry.cfg if entry.cfg is not None else load_yaml(entry.yaml_path, resolve_func=False)
    items = cfg.get("task") or []
    names = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and not INLINE_KEYS & set(item):  # {task: existing, num_fewshot: 1}
            item = item.get("task") or item.get("group")
        if isinstance(item, str):  # inline task definitions (a dict with data keys) need no index
            names.append(item)
    return names


def outside_names(tasks: Iterable[str], index: Mapping[str, Any]) -> list[str]:
    """The names `tasks` resolve to that `index` (this project's task index) does not define: requested
    names it lacks, and members of its groups and tags that are not its own, recursively."""
    outside: list[str] = []
    seen: set[str] = set()
    todo = list(tasks)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        entry = index.get(name)
        if entry is None:
            outside.append(name)
        else:
            todo.extend(_members(entry))
    return outside


def needs_builtin_tasks(tasks: Sequence[str]) -> bool:
    """Whether `tasks` (task, group or tag names) need lm-eval's built-in task index."""
    from lm_eval.tasks import TaskManager

    from . import tasks_path

    return bool(outside_names(tasks, TaskManager(include_path=tasks_path(), include_defaults=False).task_index))


def task_manager(tasks: Sequence[str], metadata: Mapping[str, Any] | None = None, *, what: str = "tasks"):
    """A ``TaskManager`` that knows every name in `tasks` (lm-eval's built-in index only when a resolved
    name needs it), with `metadata` for the tasks. Unknown names raise ``ValueError`` naming them and
    `what` (the setting they came from, e.g. ``eval.tasks``)."""
    from lm_eval.tasks import TaskManager

    from . import tasks_path

    meta = dict(metadata or {})
    manager = TaskManager(include_path=tasks_path(), include_defaults=False, metadata=meta)
    outside = outside_names(tasks, manager.task_index)
    if outside:
        manager = TaskManager(include_path=tasks_path(), include_defaults=True, metadata=meta)
    unknown = [t for t in tasks if t not in manager.task_index]
    if unknown:
        raise ValueError(f"unknown lm-eval task(s) in {what}: {', '.join(unknown)}")
    missing = [t for t in outside if t not in manager.task_index and t not in tasks]
    if missing:
        raise ValueError(f"{what}: group member(s) not found in this project's or lm-eval's tasks: "
                         f"{', '.join(missing)} (lm-eval {_lm_eval_version()})")
    return manager


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
