"""GGUF checkpoints as plain transformers folders: checked, dequantised once, cached.

transformers reads a GGUF file (with the pure-Python `gguf` package) and dequantises it to fp32, but a
model loaded that way refuses `save_pretrained` ("quantized with gguf and is not serializable"), and
every load pays the dequantisation again (~25 s for a 135M model on 2 cores). :func:`gguf_folder`
does it once: the architecture is checked before anything loads, the weights are copied into a fresh
model built from the same config (without the quantisation marker), and the folder is written into
the cache atomically (:func:`safety_tradeoff.cache.building`), keyed by the file's SHA-256.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from .cache import building, cache_root, check_writable, one_builder

Progress = Callable[[str], None]
MODEL_INFO = "safety_tradeoff_model.json"  # written last into a prepared folder: its presence means complete


class ModelSourceError(ValueError):
    """A model that cannot be obtained or read (unreachable source, bad checksum, wrong file); the message
    names the model, the source and what to do."""


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def gguf_architecture(path: Path) -> str:
    """`general.architecture` of a GGUF file, read from its header only (no tensor is loaded)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelSourceError("reading GGUF files needs the `gguf` package: pip install gguf") from None
    if not path.is_file():
        raise ModelSourceError(f"GGUF file not found: {path}")
    try:
        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except KeyError:
        raise ModelSourceError(f"{path}: GGUF file without a general.architecture field") from None
    except Exception as err:  # noqa: BLE001 - gguf raises ValueError/struct/numpy errors for bad files
        raise ModelSourceError(f"{path}: not a readable GGUF file ({type(err).__name__}: {err})") from None


def supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


def check_architecture(path: Path, expected: str | None = None) -> str:
    """The file's architecture, refused (naming it) if transformers cannot load it or it is not `expected`."""
    arch = gguf_architecture(path)
    if expected is not None and arch != expected:
        raise ModelSourceError(f"{path}: GGUF architecture is {arch!r}, expected {expected!r}")
    if arch not in supported_architectures():
        raise ModelSourceError(f"{path}: GGUF architecture {arch!r} cannot be loaded by transformers "
                               f"(supported: {', '.join(supported_architectures())})")
    return arch


def is_prepared(folder: Path) -> bool:
    """A cache entry counts only once its info file (written last) and its weights exist."""
    return (folder / MODEL_INFO).is_file() and any(folder.glob("*.safetensors"))


def dequantise(gguf: Path, out: Path, progress: Progress) -> dict:
    """Load `gguf` with transformers (dequantised to fp32) and save it as a plain folder in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"dequantising {gguf.name} to fp32 with transformers (about half a minute for 135M parameters)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.generation_config = _generation_config(model, tokenizer)
    progress(f"saving {sum(p.numel() for p in model.parameters()):,} parameters (fp32 safetensors) to the cache")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"architecture": config.model_type, "parameters": sum(p.numel() for p in model.parameters()),
            "chat_template": bool(tokenizer.chat_template)}


def _generation_config(model, tokenizer):
    """Greedy by default, stopping at the tokenizer's end-of-turn token (a GGUF carries no generation config)."""
    config = model.generation_config
    if tokenizer.eos_token_id is not None:
        config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return config


def gguf_folder(gguf: Path, *, name: str | None = None, expected_architecture: str | None = None,
                sha256: str | None = None, cache_dir: Path | None = None, source: str = "",
                progress: Progress | None = None) -> Path:
    """A cached transformers folder holding the dequantised weights and tokenizer of `gguf`.

    `sha256` (if given) must match the file; the folder is named `<name>-<sha256[:12]>` under
    `<cache>/models/`, so a second call with the same file is a cache hit that does not read the weights.
    """
    say = progress or (lambda _m: None)
    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise ModelSourceError(f"GGUF file not found: {gguf}")
    arch = check_architecture(gguf, expected_architecture)
    say(f"checking the SHA-256 of {gguf.name}")
    digest = sha256_of(gguf)
    if sha256 is not None and digest != sha256:
        raise ModelSourceError(f"{gguf}: SHA-256 {digest} does not match the expected {sha256}; "
                               "the file is corrupt or not the expected release (delete it and fetch it again)")
    models = Path(cache_dir).expanduser() if cache_dir else cache_root() / "models"
    check_writable(models, "model")
    folder = models / f"{name or gguf.stem}-{digest[:12]}"
    with one_builder(folder):
        if is_prepared(folder):
            say(f"found in the cache: {folder}")
            return folder
        size_mb = gguf.stat().st_size / 2**20
        with building(folder, f"the dequantised {gguf.name}", needs=f"{size_mb * 6:.0f} MB") as tmp:
            info = dequantise(gguf, tmp, say)
            info.update(source=source or str(gguf), gguf_sha256=digest, gguf_architecture=arch)
            (tmp / MODEL_INFO).write_text(json.dumps(info, indent=1))
    say(f"ready: {folder}")
    return folder
