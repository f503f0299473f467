"""Where datasets and models come from: Hub ids, local files and folders, or the toy world.

Scripts, recipes and sweeps name datasets and models with one string each:

* ``toyworld:<split>`` / ``toyworld:aligned`` / ``toyworld:base``: the default toy world (built on first
  use and cached); ``toyworld@<seed>:<split>`` picks another world seed; ``toyworld:eval/<set>`` is one
  of its evaluation sets (columns ``prompt``, ``reference``), e.g. ``eval/alignment``, the original
  safety data D_s whose loss the sweep's ``alignment_nll`` measures;
* a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder saved by ``Dataset.save_to_disk``;
* anything else is a Hub id, loaded by ``datasets.load_dataset`` (offline users point at local copies).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

_TOY = re.compile(r"^toyworld(?:@(?P<seed>\d+))?:(?P<name>(?:eval/)?[\w.-]+)$")
_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataSpecError(ValueError):
    """A dataset or model name that cannot be resolved; the message names it and says why."""


@functools.lru_cache(maxsize=None)
def _toy_world(seed: int):
    """Built once per process (the cache check re-hashes the builder's source otherwise)."""
    from .toyworld import ToyWorldConfig, load_or_build

    return load_or_build(ToyWorldConfig(seed=seed), progress=print)


def resolve_model(name: str) -> str:
    """A model name or folder for `from_pretrained`; ``toyworld:aligned`` becomes the built folder."""
    match = _TOY.match(name)
    if not match:
        return name
    world = _toy_world(int(match["seed"] or 0))
    stage = match["name"]
    if stage not in ("aligned", "base"):
        raise DataSpecError(f"{name!r}: toy-world models are 'toyworld:aligned' and 'toyworld:base'")
    return str(world.aligned_dir if stage == "aligned" else world.base_dir)


def load_dataset_spec(spec: str, config: str | None = None, split: str = "train",
                      fmt: str = "prompt_completion") -> Dataset:
    """Load one split named by `spec` (see the module docstring), with errors that name the spec."""
    match = _TOY.match(spec)
    if match:
        world = _toy_world(int(match["seed"] or 0))
        name = match["name"]
        try:
            path = world.eval_file(name[5:]) if name.startswith("eval/") else world.train_file(name, fmt)
        except KeyError as err:
            raise DataSpecError(f"{spec!r}: {err.args[0]}") from None
        return load_dataset("json", data_files=str(path), split="train")
    path = Path(spec).expanduser()
    if path.suffix in _FILE_FORMATS:
        if not path.is_file():
            raise DataSpecError(f"dataset file not found: {path}")
        try:
            data = load_dataset(_FILE_FORMATS[path.suffix], data_files=str(path), split="train")
        except Exception as err:  # datasets raises many types for unreadable files
            raise DataSpecError(f"cannot read dataset file {path}: {err}") from None
    elif path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
        loaded = load_from_disk(str(path))
        data = loaded[split] if isinstance(loaded, DatasetDict) else loaded
    else:
        try:
            data = load_dataset(spec, config, split=split)
        except Exception as err:
            raise DataSpecError(f"cannot load dataset {spec!r} (config={config!r}, split={split!r}): {err}") from None
    if len(data) == 0:
        raise DataSpecError(f"dataset {spec!r} is empty")
    return data


def to_prompt_completion(data: Dataset, prompt_column: str, completion_column: str,
                         context_column: str | None = None) -> Dataset:
    """Raw instruction data (Alpaca/Dolly/safety sets with their own column names) as conversational
    prompt-completion, so SFT computes the loss on the response only and the chat template applies."""
    missing = [c for c in (prompt_column, completion_column, context_column) if c and c not in data.column_names]
    if missing:
        raise DataSpecError(f"dataset has no column(s) {', '.join(missing)}; columns: {', '.join(data.column_names)}")

    def convert(row: dict) -> dict:
        prompt = row[prompt_column]
        if context_column and row[context_column]:
            prompt = f"{prompt}\n\n{row[context_column]}"
        return {"prompt": [{"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": row[completion_column]}]}

    return data.map(convert, remove_columns=data.column_names)
