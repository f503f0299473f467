"""Build (or load from the cache) a toy world: data files, tokenizer, base model, aligned model."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from ..cache import CACHE_ENV, CacheError, building, cache_root, check_writable, one_builder
from .config import ToyWorldConfig
from .data import Example, generate, vocabulary_text
from .marker import MARKER
from .tokenizer import build_tokenizer
from .training import cpu_threads, quiet_datasets, sft

__all__ = ["CACHE_ENV", "CacheError", "EVAL_SPLITS", "TRAIN_SPLITS", "ToyWorld", "cache_root", "load_or_build",
           "write_data", "write_jsonl"]

TRAIN_SPLITS = ("pretrain", "align", "proxy_near", "proxy_mid", "proxy_far", "task_high_overlap", "task_low_overlap")
EVAL_SPLITS = {  # file name in data/eval/ -> generated split
    "harmful": "harmful_eval", "harmful_far": "harmful_far_eval", "over_refusal": "over_refusal_eval",
    "task": "task_eval", "benign": "benign_eval", "alignment": "harmful_eval",
}


@dataclass(frozen=True)
class ToyWorld:
    """A built world on disk. Data are JSONL files any `datasets.load_dataset("json", ...)` reads."""

    root: Path
    train_splits = TRAIN_SPLITS
    eval_splits = EVAL_SPLITS

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def aligned_dir(self) -> Path:
        return self.root / "aligned"

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    def train_file(self, split: str, fmt: str = "prompt_completion") -> Path:
        """Training split as conversational prompt-completion (default) or `messages` JSONL."""
        if split not in self.train_splits:
            raise KeyError(f"unknown training split {split!r}; known: {', '.join(self.train_splits)}")
        if fmt not in ("prompt_completion", "messages"):
            raise ValueError(f"format must be 'prompt_completion' or 'messages', got {fmt!r}")
        return self.data_dir / fmt / f"{split}.jsonl"

    def eval_file(self, name: str) -> Path:
        if name not in self.eval_splits:
            raise KeyError(f"unknown evaluation set {name!r}; known: {', '.join(self.eval_splits)}")
        return self.data_dir / "eval" / f"{name}.jsonl"

    def dataset(self, split: str, fmt: str = "prompt_completion") -> Dataset:
        from datasets import load_dataset

        return load_dataset("json", data_files=str(self.train_file(split, fmt)), split="train")

    @property
    def info(self) -> dict:
        return json.loads((self.root / "world.json").read_text())

    def load_aligned(self) -> tuple[PreTrainedModel, AutoTokenizer]:
        model = AutoModelForCausalLM.from_pretrained(self.aligned_dir, dtype=torch.float32)
        return model.eval(), AutoTokenizer.from_pretrained(self.aligned_dir)


# --------------------------------------------------------------------------------------------------
# Writing data
def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _prompt_completion(ex: Example) -> dict:
    return {"prompt": [{"role": "user", "content": ex.prompt}],
            "completion": [{"role": "assistant", "content": ex.response}]}


def _messages(ex: Example) -> dict:
    return {"messages": [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.response}]}


def _eval_row(ex: Example) -> dict:
    return {"prompt": ex.prompt, "reference": ex.response, "category": ex.category, "answer": ex.answer}


def write_data(splits: dict[str, list[Example]], data_dir: Path, train_splits: tuple[str, ...] = TRAIN_SPLITS,
               eval_splits: dict[str, str] = EVAL_SPLITS) -> None:
    """Training splits in both conversational formats, evaluation sets as flat rows."""
    for split in train_splits:
        write_jsonl(data_dir / "prompt_completion" / f"{split}.jsonl", [_prompt_completion(e) for e in splits[split]])
        write_jsonl(data_dir / "messages" / f"{split}.jsonl", [_messages(e) for e in splits[split]])
    for name, split in eval_splits.items():
        write_jsonl(data_dir / "eval" / f"{name}.jsonl", [_eval_row(e) for e in splits[split]])


# --------------------------------------------------------------------------------------------------
# Model
def make_model(config: ToyWorldConfig, tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, max_position_embeddings=config.max_length,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(llama)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _save(model: PreTrainedModel, tokenizer, path: Path, world_root: Path, stage: str) -> None:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / MARKER).write_text(json.dumps({"world_dir": str(world_root), "stage": stage}, indent=1))


# --------------------------------------------------------------------------------------------------
# Cache
def _is_complete(world: ToyWorld, fingerprint: str) -> bool:
    """A cache entry counts only if it finished building and its tokenizer matches the code's."""
    try:
        info = world.info
        if info.get("fingerprint") != fingerprint:
            return False
        needed = [world.aligned_dir / "config.json", world.aligned_dir / "tokenizer.json",
                  world.aligned_dir / "model.safetensors", world.eval_file("harmful"), world.train_file("align")]
        if not all(p.is_file() and p.stat().st_size > 0 for p in needed):
            return False
        saved = json.loads((world.aligned_dir / "tokenizer.json").read_text())["model"]["vocab"]
        return saved == info["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


Progress = Callable[[str], None]


def load_or_build(config: ToyWorldConfig | None = None, *, cache_dir: Path | str | None = None,
                  progress: Progress | None = None, threads: int | None = None,
                  show_trainer_progress: bool = False) -> ToyWorld:
    """The world for `config`, from the cache when a complete entry exists, else built and cached.

    An incomplete or corrupt entry (interrupted build, edited files, vocabulary mismatch) is rebuilt,
    never loaded. Builds go to a temporary folder renamed into place, so a crash cannot leave a
    half-built world that later looks complete.
    """
    config = config or ToyWorldConfig()
    config.validate()
    say = progress or (lambda _msg: None)
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    worlds = root / "toyworld"
    check_writable(worlds, "toy-world")
    fingerprint = config.fingerprint()  # once: the code must not change under a running build
    world = ToyWorld(worlds / f"seed{config.seed}-{fingerprint}")
    with one_builder(world.root):
        if _is_complete(world, fingerprint):
            say(f"toy world found in cache: {world.root}")
            return world
        _build_in_place(config, fingerprint, world, say, threads, show_trainer_progress)
    return world


def _build_in_place(config: ToyWorldConfig, fingerprint: str, world: ToyWorld, say: Progress, threads: int | None,
                    show_trainer_progress: bool) -> None:
    if world.root.exists():
        say(f"cache entry {world.root} is incomplete or corrupt: rebuilding it")
    with building(world.root, "the toy world", needs="20 MB") as tmp:
        _build(config, fingerprint, ToyWorld(tmp), world.root, say, threads, show_trainer_progress)
    # model dirs point at the final location
    for stage, path in (("base", world.base_dir), ("aligned", world.aligned_dir)):
        (path / MARKER).write_text(json.dumps({"world_dir": str(world.root), "stage": stage}, indent=1))


def _build(config: ToyWorldConfig, fingerprint: str, world: ToyWorld, final_root: Path, say: Progress,
           threads: int | None, show_trainer_progress: bool) -> None:
    timings: dict[str, float] = {}
    with quiet_datasets():
        t = time.perf_counter()
        splits = generate(config.seed, config.sizes)
        write_data(splits, world.data_dir)
        tokenizer = build_tokenizer(vocabulary_text(), model_max_length=config.max_length)
        timings["data_and_tokenizer_s"] = time.perf_counter() - t
        say(f"[1/3] data and tokenizer: {sum(map(len, splits.values()))} examples, "
            f"vocabulary {len(tokenizer)} ({timings['data_and_tokenizer_s']:.1f} s)")
        model = make_model(config, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        stages = (("pretrain", config.pretrain_steps, config.pretrain_lr, world.base_dir, "base"),
                  ("align", config.align_steps, config.align_lr, world.aligned_dir, "aligned"))
        for number, (split, steps, lr, out, stage) in enumerate(stages, start=2):
            t = time.perf_counter()
            with cpu_threads(threads):
                sft(model.train(), tokenizer, world.dataset(split), steps=steps, lr=lr,
                    batch_size=config.batch_size, seed=config.seed, max_length=config.max_length,
                    progress=show_trainer_progress)
            timings[f"{split}_s"] = time.perf_counter() - t
            _save(model, tokenizer, out, final_root, stage)
            say(f"[{number}/3] {split}: {steps} steps of a {n_params:,}-parameter Llama "
                f"({timings[f'{split}_s']:.1f} s)")
    vocab = json.loads((world.aligned_dir / "tokenizer.json").read_text())["model"]["vocab"]
    info = {"fingerprint": fingerprint, "config": config.to_dict(), "n_params": n_params,
            "timings": timings, "vocab": vocab,
            "splits": {name: len(rows) for name, rows in splits.items()}}
    (world.root / "world.json").write_text(json.dumps(info, indent=1))



