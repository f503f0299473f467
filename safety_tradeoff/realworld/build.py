"""Build (or load from the cache) a real-model world: its English data and its aligned chat model.

Two kinds of cache entry under `<cache>/realworld/`, each written atomically
(:func:`safety_tradeoff.cache.building`):

* `<model>-seed<N>-data-<key>/`: the data alone (seconds): what the world's lm-eval tasks read when they
  evaluate a model that does not belong to a built world (the base model, a model trained elsewhere);
* `<model>-seed<N>-<key>/`: data + `aligned/` (the base model after the alignment run) + `world.json`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..cache import building, cache_root, check_writable, one_builder
from ..gguf_models import MODEL_INFO, Progress
from ..named_models import model_folder
from ..toyworld.build import EVAL_SPLITS, ToyWorld, write_data, write_jsonl
from ..toyworld.marker import MARKER
from ..toyworld.training import cpu_threads, quiet_datasets, sft
from .config import RealWorldConfig
from .data import generate
from .hub_shaped import HUB_SHAPED, hub_shaped

TRAIN_SPLITS = ("align", "proxy_near", "proxy_mid", "proxy_far", "task_high_overlap", "task_low_overlap")
WORLD_KIND = "realworld"


@dataclass(frozen=True)
class RealWorld(ToyWorld):
    """A built real-model world on disk: the toy world's layout (`data/`, `aligned/`, `world.json`)."""

    train_splits = TRAIN_SPLITS
    eval_splits = EVAL_SPLITS

    def hub_file(self, name: str) -> Path:
        """The world's data in a Hub dataset's column shape (:mod:`.hub_shaped`), e.g. `alpaca`."""
        if name not in HUB_SHAPED:
            raise KeyError(f"unknown Hub-shaped file {name!r}; known: {', '.join(HUB_SHAPED)}")
        return self.data_dir / "hub" / f"{name}.jsonl"

    @property
    def base_dir(self) -> Path:
        """The base chat model's folder (outside the world: shared by every world built on it)."""
        return Path(self.info["base_model_dir"])


def _worlds_dir(cache_dir: Path | str | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    worlds = root / "realworld"
    check_writable(worlds, "real-model world")
    return worlds


def _write_world_data(config: RealWorldConfig, data_dir: Path) -> dict[str, int]:
    splits = generate(config.seed, config.sizes)
    write_data(splits, data_dir, TRAIN_SPLITS, EVAL_SPLITS)
    for name, rows in hub_shaped(splits, config.seed).items():
        write_jsonl(data_dir / "hub" / f"{name}.jsonl", rows)
    return {name: len(rows) for name, rows in splits.items()}


def world_data(config: RealWorldConfig | None = None, *, cache_dir: Path | str | None = None) -> RealWorld:
    """The world's data only (no model): generated in seconds, cached by the data's own key."""
    config = config or RealWorldConfig()
    config.validate()
    entry = RealWorld(_worlds_dir(cache_dir) / f"{config.base_model}-seed{config.seed}-data-{config.data_fingerprint()}")
    info = entry.root / "world.json"
    with one_builder(entry.root):
        if not info.is_file():
            with building(entry.root, "the real-model world's data") as tmp:
                sizes = _write_world_data(config, tmp / "data")
                (tmp / "world.json").write_text(json.dumps({"kind": WORLD_KIND, "config": config.to_dict(),
                                                            "splits": sizes, "data_only": True}, indent=1))
    return entry


def _base_identity(folder: Path, source: str) -> str:
    """What the aligned model's key depends on: the GGUF's SHA-256, or the Hub snapshot's commit."""
    if source == "gguf":
        return "gguf:" + json.loads((folder / MODEL_INFO).read_text())["gguf_sha256"]
    return "hub:" + folder.name


def _is_complete(world: RealWorld, fingerprint: str) -> bool:
    try:
        info = world.info
        needed = [world.aligned_dir / "config.json", world.aligned_dir / MARKER, world.eval_file("harmful"),
                  world.train_file("align")]
        return info.get("fingerprint") == fingerprint and all(p.is_file() for p in needed) \
            and any(world.aligned_dir.glob("*.safetensors"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_or_build(config: RealWorldConfig | None = None, *, cache_dir: Path | str | None = None,
                  progress: Progress | None = None, threads: int | None = None,
                  show_trainer_progress: bool = False) -> RealWorld:
    """The world for `config`: its aligned model from the cache when complete, else built now.

    The base model is prepared first (:func:`safety_tradeoff.named_models.model_folder`), then the data
    are written and the base model is aligned on D_s with TRL's `SFTTrainer`; the aligned folder carries
    the world marker, so the world's lm-eval tasks find its data from `pretrained=<folder>` alone.
    """
    config = config or RealWorldConfig()
    config.validate()
    say = progress or (lambda _m: None)
    worlds = _worlds_dir(cache_dir)
    models = Path(cache_dir).expanduser() / "models" if cache_dir else None
    base, source = model_folder(config.base_model, source=config.model_source, cache_dir=models, progress=say)
    fingerprint = config.fingerprint(_base_identity(base, source))
    world = RealWorld(worlds / f"{config.base_model}-seed{config.seed}-{fingerprint}")
    with one_builder(world.root):
        if _is_complete(world, fingerprint):
            say(f"{config.base_model} world found in cache: {world.root}")
            return world
        with building(world.root, f"the aligned {config.base_model} world", needs="600 MB") as tmp:
            _build(config, base, source, fingerprint, RealWorld(tmp), world.root, say, threads, show_trainer_progress)
    return world


def _build(config: RealWorldConfig, base: Path, source: str, fingerprint: str, tmp: RealWorld, final_root: Path,
           say: Progress, threads: int | None, show_trainer_progress: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sizes = _write_world_data(config, tmp.data_dir)
    say(f"[1/2] {config.base_model} world data: {sum(sizes.values())} English examples (seed {config.seed})")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    on_cpu = not torch.cuda.is_available()
    say(f"[2/2] aligning {config.base_model} on D_s: {config.align_steps} steps of batch {config.batch_size}, "
        f"lr {config.align_lr:g} on {'the CPU' if on_cpu else 'the GPU'} (a few minutes on 2 CPU cores)")
    start = time.perf_counter()
    with quiet_datasets(), cpu_threads(threads):
        sft(model.train(), tokenizer, tmp.dataset("align"), steps=config.align_steps, lr=config.align_lr,
            batch_size=config.batch_size, seed=config.seed, max_length=config.max_length,
            progress=show_trainer_progress, lr_scheduler_type="constant", warmup_steps=0, adam_beta2=0.999,
            use_cpu=on_cpu)
    align_s = time.perf_counter() - start
    model.save_pretrained(tmp.aligned_dir)
    tokenizer.save_pretrained(tmp.aligned_dir)
    (tmp.aligned_dir / MARKER).write_text(json.dumps({"world_dir": str(final_root), "stage": "aligned",
                                                      "kind": WORLD_KIND}, indent=1))
    info = {"kind": WORLD_KIND, "fingerprint": fingerprint, "config": config.to_dict(), "base_model_dir": str(base),
            "model_source": source, "splits": sizes, "timings": {"align_s": align_s},
            "device": "cpu" if on_cpu else "cuda"}
    (tmp.root / "world.json").write_text(json.dumps(info, indent=1))
    say(f"aligned in {align_s:.0f} s")
