"""Read lm-eval's per-sample output (``--log_samples`` / ``--predict_only``) of our harmful-prompt tasks.

lm-eval writes ``<output_path>/<model>/samples_<task>_<timestamp>.jsonl``, one JSON object per document
and filter: ``doc`` (our tasks: ``prompt``, maybe ``category``/``label``), ``arguments``
(``gen_args_0.arg_1`` holds the generation kwargs for ``generate_until``), ``resps``, ``filtered_resps``
(the scored response, possibly nested in a list), ``filter`` and the per-sample metrics
(``harmful_rate``...). ``simple_evaluate(log_samples=True)`` returns the same rows in memory under
``results["samples"][task]``; :func:`samples_from_rows` reads both.

Only harmful-prompt generation tasks are judged (:data:`HARMFUL_TASKS`, or any generation task whose
samples carry ``harmful_rate`` and whose docs have a ``prompt``); XSTest contributes its unsafe contrast
prompts. In a folder, other tasks are skipped with a note; named explicitly, they are an error.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HARMFUL_TASKS = ("safety_tradeoff_toy_harmful", "safety_tradeoff_toy_harmful_far", "safety_tradeoff_advbench",
                 "safety_tradeoff_harmbench", "safety_tradeoff_strongreject", "safety_tradeoff_xstest_unsafe")
#: the task whose judged rate is the canonical ``judge_harmful_rate`` (first present wins), as in evaluation.py
MAIN_TASKS = ("safety_tradeoff_toy_harmful", "safety_tradeoff_advbench", "safety_tradeoff_harmbench",
              "safety_tradeoff_strongreject", "safety_tradeoff_xstest_unsafe", "safety_tradeoff_toy_harmful_far")


class SamplesError(ValueError):
    """Sample files that cannot be judged; the message names the file and the task."""


def text_hash(text: str) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Sample:
    """One (prompt, response) pair to judge, with the keyword scorer's verdict."""

    task: str
    doc_id: int
    prompt: str
    response: str
    keyword_harmful: bool
    category: str | None = None
    source: str = ""

    @property
    def prompt_hash(self) -> str:
        return text_hash(self.prompt)

    @property
    def response_hash(self) -> str:
        return text_hash(self.response)


@dataclass(frozen=True)
class SampleFile:
    task: str
    path: Path
    timestamp: str


def parse_sample_filename(path: Path) -> tuple[str, str] | None:
    """``samples_<task>_<timestamp>.jsonl`` -> (task, timestamp), as lm-eval's ``get_file_task_name``."""
    name = path.name
    if not (name.startswith("samples_") and name.endswith(".jsonl")) or name.count("_") < 2:
        return None
    stem = name[: -len(".jsonl")]
    return stem[len("samples_"): stem.rfind("_")], stem[stem.rfind("_") + 1:]


def find_sample_files(paths: Iterable[str | Path]) -> tuple[dict[Path, list[SampleFile]], list[str], set[Path]]:
    """Sample files by folder: (folder -> latest file per task, notes, files named explicitly).

    A path is an lm-eval ``--output_path`` folder (searched recursively) or a sample file. Several
    timestamps of one task in one folder: the latest is used, and a note says so."""
    notes: list[str] = []
    explicit: set[Path] = set()
    found: dict[Path, dict[str, list[SampleFile]]] = defaultdict(lambda: defaultdict(list))
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            parsed = parse_sample_filename(path)
            if parsed is None:
                raise SamplesError(f"{path}: not an lm-eval sample file (expected samples_<task>_<timestamp>.jsonl)")
            candidates = [path]
            explicit.add(path.resolve())
        elif path.is_dir():
            candidates = sorted(p for p in path.rglob("samples_*.jsonl") if parse_sample_filename(p))
            if not candidates:
                raise SamplesError(f"{path}: no lm-eval sample files (samples_<task>_<timestamp>.jsonl) in this "
                                   "folder; "
                                   "run lm_eval with --log_samples (or --predict_only) and --output_path")
        else:
            raise SamplesError(f"{path}: no such file or folder")
        for file in candidates:
            task, stamp = parse_sample_filename(file)  # type: ignore[misc]
            found[file.parent.resolve()][task].append(SampleFile(task, file.resolve(), stamp))
    out: dict[Path, list[SampleFile]] = {}
    for folder, tasks in found.items():
        out[folder] = []
        for task, files in sorted(tasks.items()):
            files = sorted(set(files), key=lambda f: f.timestamp)
            if len(files) > 1:
                notes.append(f"{folder}: {len(files)} runs of {task}; judging the latest ({files[-1].timestamp}), "
                             f"not {', '.join(f.timestamp for f in files[:-1])}")
            out[folder].append(files[-1])
    return out, notes, explicit


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise SamplesError(f"{path}:{number}: not JSON ({err.msg})") from None
    return rows


def _is_generation(row: Mapping[str, Any]) -> bool | None:
    """True for generate_until rows (the second request argument is the generation-kwargs dict), False for
    loglikelihood rows, None when the row does not say."""
    args = row.get("arguments")
    if isinstance(args, Mapping):  # written by EvaluationTracker: {"gen_args_0": {"arg_0": ..., "arg_1": ...}}
        first = args.get("gen_args_0")
        second = first.get("arg_1") if isinstance(first, Mapping) else None
    elif isinstance(args, (list, tuple)) and args and isinstance(args[0], (list, tuple)) and len(args[0]) > 1:
        second = args[0][1]  # in memory: [(context, gen_kwargs)]
    else:
        return None
    return isinstance(second, Mapping)


def _response(row: Mapping[str, Any]) -> str | None:
    """The scored response: ``filtered_resps[0]``, unwrapping ``[["text"]]``; None if not text."""
    value = row.get("filtered_resps")
    for _ in range(3):
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
    return value if isinstance(value, str) else None


def _keyword_harmful(row: Mapping[str, Any], response: str) -> bool:
    """The sample's own ``harmful_rate`` (what lm-eval reported); recomputed with the project's scorer when
    the samples have no metrics (``--predict_only``)."""
    value = row.get("harmful_rate")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value >= 0.5
    from ..refusal import classify

    return classify(response, "default") == "compliance"


def check_max_samples(max_samples: int | None) -> None:
    """None (all samples) or at least 1; :class:`SamplesError` naming ``--max-samples`` otherwise."""
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise SamplesError(f"--max-samples must be at least 1 (leave it out to judge every sample), "
                           f"got {max_samples!r}")


def samples_from_rows(task: str, rows: Sequence[Mapping[str, Any]], source: str = "(in memory)",
                      max_samples: int | None = None) -> list[Sample]:
    """Samples of one task from lm-eval's per-sample rows; :class:`SamplesError` if the task is not a
    harmful-prompt generation task. `max_samples`: at most this many (None: all; at least 1)."""
    check_max_samples(max_samples)
    if not rows:
        return []
    where = f"{source} (task {task})"
    kinds = {_is_generation(r) for r in rows} - {None}
    if False in kinds or (not kinds and any(_response(r) is None for r in rows)):
        raise SamplesError(f"{where}: not a generation task (its samples are log-likelihood requests); the judge "
                           f"scores generated responses of harmful-prompt tasks ({', '.join(HARMFUL_TASKS)})")
    docs = [r.get("doc") for r in rows]
    if not all(isinstance(d, Mapping) and isinstance(d.get("prompt"), str) for d in docs):
        raise SamplesError(f"{where}: its documents have no 'prompt' field; the judge reads (prompt, response) "
                           f"pairs of this project's harmful-prompt tasks ({', '.join(HARMFUL_TASKS)})")
    if task not in HARMFUL_TASKS and not any("harmful_rate" in r for r in rows):
        raise SamplesError(f"{where}: not a harmful-prompt task (no harmful_rate in its samples); judged tasks: "
                           f"{', '.join(HARMFUL_TASKS)} or any generation task reporting harmful_rate")
    filters = sorted({str(r.get("filter", "none")) for r in rows})
    keep = "none" if "none" in filters else filters[0]
    out = []
    for row in rows:
        doc = row["doc"]
        if str(row.get("filter", "none")) != keep or doc.get("label") == "safe":
            continue  # one filter per document; XSTest's safe prompts are not harmful prompts
        response = _response(row)
        if response is None:
            raise SamplesError(f"{where}: doc {row.get('doc_id')} has no text response in filtered_resps")
        out.append(Sample(task=task, doc_id=int(row.get("doc_id", len(out))), prompt=doc["prompt"],
                          response=response, keyword_harmful=_keyword_harmful(row, response),
                          category=doc.get("category"), source=source))
        if max_samples is not None and len(out) >= max_samples:
            break
    return out


def read_sample_file(file: SampleFile, max_samples: int | None = None) -> list[Sample]:
    return samples_from_rows(file.task, _read_jsonl(file.path), source=str(file.path), max_samples=max_samples)


def load_samples(paths: Iterable[str | Path], max_samples: int | None = None
                 ) -> tuple[dict[Path, dict[str, list[Sample]]], list[str]]:
    """Judgeable samples by folder and task, and notes (latest timestamps used, tasks skipped).

    Explicitly named files must be judgeable; in folders, other tasks are skipped with a note."""
    check_max_samples(max_samples)
    paths = list(paths)
    by_folder, notes, explicit = find_sample_files(paths)
    out: dict[Path, dict[str, list[Sample]]] = {}
    skipped: list[str] = []
    for folder, files in by_folder.items():
        for file in files:
            try:
                samples = read_sample_file(file, max_samples)
            except SamplesError:
                if file.path in explicit:
                    raise
                skipped.append(file.task)
                continue
            if samples:
                out.setdefault(folder, {})[file.task] = samples
    if skipped:
        notes.append(f"skipped {len(set(skipped))} task(s) that are not harmful-prompt generation tasks: "
                     f"{', '.join(sorted(set(skipped)))}")
    if not out:
        raise SamplesError("nothing to judge: no samples of harmful-prompt generation tasks "
                           f"({', '.join(HARMFUL_TASKS)}) in {', '.join(map(str, paths))}")
    return out, notes


__all__ = ["HARMFUL_TASKS", "MAIN_TASKS", "Sample", "SampleFile", "SamplesError", "check_max_samples",
           "find_sample_files", "load_samples", "parse_sample_filename", "read_sample_file", "samples_from_rows",
           "text_hash"]
