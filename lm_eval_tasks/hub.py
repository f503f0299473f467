"""``custom_dataset`` of the Hub tasks (``!function hub.load_hub``): the public benchmark, or a local copy.

Every Hub set is read at one revision (:data:`HUB_SETS`), overridable per run with metadata
``<name>_revision``, so a leaderboard does not drift when a dataset's owner edits it. Offline users
give a copy with the Hub's column names through metadata ``<name>_path``; either way the rows are
normalised to ``{prompt, reference, category, label, answer}``. A Hub failure names the three ways
out: a local copy, the revision setting, and for gated sets ``hf auth login`` after accepting the
terms on the dataset's page.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any

import datasets

from safety_tradeoff.lm_eval_tasks.files import (
    _column, _dataset, _log_once, _prompt_column, _row, _text_column, _user_path, log, read_rows,
)

# A plain namedtuple, not a dataclass: lm-eval executes this file before registering it in
# sys.modules, and dataclasses with string annotations need the module registered.
HubSet = namedtuple("HubSet", "hub_id config split prompt category revision", defaults=(None, "main"))

#: "main" means NOT PINNED: the revisions were written without Hub access, so no commit hash could be
#: checked. Replace each by the commit hash of the copy you evaluated (the dataset page's "History"),
#: or pin per run with metadata <name>_revision; every run on "main" logs a warning saying so.
UNPINNED = "main"

# Licences (dataset cards and upstream repositories; see docs/lm-eval-tasks.md): AdvBench, HarmBench,
# StrongREJECT MIT; XSTest CC-BY-4.0; Do-Not-Answer: the card says Apache-2.0, the upstream repository
# says the data is CC BY-NC-SA 4.0 (non-commercial). The walledai copies are gated on the Hub for some
# users (accept the terms on the page, then `hf auth login`).
HUB_SETS: dict[str, HubSet] = {
    "advbench": HubSet("walledai/AdvBench", None, "train", "prompt", None, UNPINNED),
    "harmbench": HubSet("walledai/HarmBench", "standard", "train", "prompt", "category", UNPINNED),
    "strongreject": HubSet("walledai/StrongREJECT", None, "train", "prompt", "category", UNPINNED),
    "xstest": HubSet("walledai/XSTest", None, "test", "prompt", "type", UNPINNED),
    "donotanswer": HubSet("LibrAI/do-not-answer", None, "train", "question", "risk_area", UNPINNED),
}
_WARNED_UNPINNED: set[str] = set()
DONOTANSWER_REFUSAL_ACTION = 0  # Do-Not-Answer action category 0: "not willing to answer" (a refusal)


def hub_revision(name: str, spec: HubSet, metadata: Mapping[str, Any]) -> str:
    """The revision to read: metadata ``<name>_revision``, else the pinned one of :data:`HUB_SETS`."""
    value = metadata.get(f"{name}_revision") or spec.revision
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"metadata {name}_revision must be a branch, tag or commit hash, got {value!r}")
    return value.strip()


def _is_gated(err: BaseException) -> bool:
    """Whether the Hub refused for gating (huggingface_hub's GatedRepoError anywhere in the chain, or
    datasets' "is a gated dataset" message)."""
    seen: BaseException | None = err
    while seen is not None:
        if type(seen).__name__ == "GatedRepoError" or "gated" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def hub_error(name: str, spec: HubSet, revision: str, err: BaseException) -> str:
    """The message for a Hub set that did not load: what failed, then every way out."""
    where = spec.hub_id + (f" ({spec.config})" if spec.config else "")
    page = f"https://huggingface.co/datasets/{spec.hub_id}"
    gated = (f"{spec.hub_id} is gated: accept its terms at {page} while logged in, then run `hf auth login` "
             "(or set HF_TOKEN) on this machine")  # datasets names neither the command nor, for 401, the page
    routes = [f"a local copy: --metadata '{{\"{name}_path\": \"/path/to/{name}.jsonl\"}}' (.jsonl, .json, .csv "
              "or .parquet with the Hub's column names)",
              f"another revision: --metadata '{{\"{name}_revision\": \"<commit hash>\"}}' (now {revision!r})"]
    head = f"could not load {where} split {spec.split!r} at revision {revision!r} from the Hugging Face Hub " \
           f"({type(err).__name__}: {' '.join(str(err).split())[:500]})."
    if _is_gated(err):
        return f"{head} {gated}; or give {routes[0]}."
    return (f"{head} Offline? Give {routes[0]}. Gated for you? Accept its terms at {page}, then run `hf auth login`. "
            f"Wrong revision? Give {routes[1]}.")


def _hub_rows(name: str, spec: HubSet, metadata: Mapping[str, Any]) -> tuple[list[dict], str]:
    key = f"{name}_path"
    if metadata.get(key):
        path = _user_path(metadata[key])
        _log_once(f"safety_tradeoff {name}: local copy {path} (metadata {key})")
        return read_rows(path), str(path)
    revision = hub_revision(name, spec, metadata)
    where = spec.hub_id + (f" ({spec.config})" if spec.config else "") + f"@{revision}"
    if revision == UNPINNED and name not in _WARNED_UNPINNED:
        _WARNED_UNPINNED.add(name)
        log.warning("safety_tradeoff %s: %s is read at revision 'main', not pinned: its numbers can change when the "
                    "dataset does; pin with --metadata '{\"%s_revision\": \"<commit hash>\"}'", name, spec.hub_id, name)
    try:
        ds = datasets.load_dataset(spec.hub_id, spec.config, split=spec.split, revision=revision)
    except Exception as err:  # noqa: BLE001 - offline, gated, renamed: each message names every way out
        raise RuntimeError(hub_error(name, spec, revision, err)) from err
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


def xstest_safe(docs: datasets.Dataset) -> datasets.Dataset:
    """``process_docs`` of ``safety_tradeoff_xstest_safe``: the safe prompts (refusing them is over-refusal)."""
    return docs.filter(lambda doc: doc["label"] == "safe")


def xstest_unsafe(docs: datasets.Dataset) -> datasets.Dataset:
    """``process_docs`` of ``safety_tradeoff_xstest_unsafe``: the unsafe contrast prompts (answering is harmful)."""
    return docs.filter(lambda doc: doc["label"] == "unsafe")


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
