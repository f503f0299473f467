"""Where datasets and models come from: Hub ids, local files and folders, or the toy world.

Scripts, recipes and sweeps name datasets and models with one string each:

* ``toyworld:<split>`` / ``toyworld:aligned`` / ``toyworld:base``: the default toy world (built on first
  use and cached); ``toyworld@<seed>:<split>`` picks another world seed; ``toyworld:eval/<set>`` is one
  of its evaluation sets (columns ``prompt``, ``reference``), e.g. ``eval/alignment``, the original
  safety data D_s whose loss the sweep's ``alignment_nll`` measures;
* ``smollm2``: SmolLM2-135M-Instruct as shipped (Hub weights when reachable, else the GGUF release,
  :mod:`safety_tradeoff.named_models`); ``smollm2:aligned``, ``smollm2@<seed>:<split>``,
  ``smollm2:eval/<set>``: the real-model world built on it (:mod:`safety_tradeoff.realworld`), with the
  toy world's split names plus ``proxy_mid``, and ``smollm2:hub/<name>``: its data in a Hub dataset's
  column shape (``alpaca``, ``dolly``, ``harmful_dataset``, ``advbench``, ``xstest``, ``do_not_answer``);
  ``smollm2:base`` is the world's base model;
* a ``.gguf`` file: dequantised once into a cached transformers folder (models only);
* a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder saved by ``Dataset.save_to_disk``;
* anything else is a Hub id, loaded by ``datasets.load_dataset`` (offline users point at local copies).
"""
from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

_WORLD = re.compile(r"^(?P<world>toyworld|smollm2)(?:@(?P<seed>\d+))?:(?P<name>(?:eval/|hub/)?[\w.-]+)$")
_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _progress(message: str) -> None:
    """Preparation messages go to stderr: stdout may be a path a shell captures (`models path`)."""
    print(message, file=sys.stderr, flush=True)


class DataSpecError(ValueError):
    """A dataset or model name that cannot be resolved; the message names it and says why."""


@functools.lru_cache(maxsize=None)
def _toy_world(seed: int):
    """Built once per process (the cache check re-hashes the builder's source otherwise)."""
    from .toyworld import ToyWorldConfig, load_or_build

    return load_or_build(ToyWorldConfig(seed=seed), progress=_progress)


@functools.lru_cache(maxsize=None)
def _real_world(seed: int, aligned: bool):
    """The real-model world: its data alone (seconds) unless the aligned model is asked for."""
    from .realworld import RealWorldConfig, load_or_build, world_data

    config = RealWorldConfig(seed=seed)
    return load_or_build(config, progress=_progress, show_trainer_progress=True) if aligned else world_data(config)


def resolve_model(name: str) -> str:
    """A model name or folder for `from_pretrained`: ``toyworld:aligned`` / ``smollm2:aligned`` become the
    built folders, ``smollm2`` the prepared chat model, a ``.gguf`` file its dequantised folder; anything
    else (a Hub id, a folder) is returned as given."""
    from .named_models import ModelSourceError

    try:
        return _resolve_model(name)
    except ModelSourceError as err:
        raise DataSpecError(f"{name!r}: {err}") from None


def _resolve_model(name: str) -> str:
    from .named_models import NAMED_MODELS, model_folder

    if name in NAMED_MODELS:
        return str(model_folder(name, progress=_progress)[0])
    if name.endswith(".gguf"):
        from .gguf_models import gguf_folder

        return str(gguf_folder(Path(name), progress=_progress))
    match = _WORLD.match(name)
    if not match:
        return name
    stage, seed = match["name"], int(match["seed"] or 0)
    if stage not in ("aligned", "base"):
        raise DataSpecError(f"{name!r}: world models are '{match['world']}:aligned' and '{match['world']}:base'")
    if match["world"] == "toyworld":
        world = _toy_world(seed)
        return str(world.aligned_dir if stage == "aligned" else world.base_dir)
    if stage == "base":  # the real-model world's base: its named model, from the world's source
        from .realworld import RealWorldConfig

        config = RealWorldConfig(seed=seed)
        return str(model_folder(config.base_model, source=config.model_source, progress=_progress)[0])
    return str(_real_world(seed, aligned=True).aligned_dir)


def load_dataset_spec(spec: str, config: str | None = None, split: str = "train",
                      fmt: str = "prompt_completion") -> Dataset:
    """Load one split named by `spec` (see the module docstring), with errors that name the spec."""
    match = _WORLD.match(spec)
    if match:
        seed, name = int(match["seed"] or 0), match["name"]
        if name.startswith("hub/") and match["world"] == "toyworld":
            raise DataSpecError(f"{spec!r}: the toy world has no Hub-shaped files (the real-model world has: "
                                f"smollm2:{name})")
        world = _toy_world(seed) if match["world"] == "toyworld" else _real_world(seed, aligned=False)
        try:
            path = (world.eval_file(name[5:]) if name.startswith("eval/") else
                    world.hub_file(name[4:]) if name.startswith("hub/") else world.train_file(name, fmt))
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
