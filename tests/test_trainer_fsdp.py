"""FSDP2 on 2 CPU processes (gloo, `accelerate launch` with an FSDP2 config; see tests/fsdp_worker.py for how FSDP is
made to run on CPU): Case II (gradient, loss and decoupled modes, ball), the EMA and every mechanism together equal
one process with the same global batch to 1e-5; θ₀ and θ̄ are shards like the parameters (each rank holds part of
every tensor); a run resumed from its sharded checkpoint ends bit-identical to the uninterrupted run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fsdp_worker import FSDP_VARIANTS, outcome, run
from tiny_models import max_abs_diff, tiny_model_dir

TOL = 1e-5
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fsdp_results(tmp_path_factory):
    tiny = tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    cmd = [accelerate, "launch", "--config_file", str(HERE / "accelerate_fsdp2_cpu.yaml"), "--main_process_port",
           "0", str(HERE / "fsdp_worker.py"), tiny, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return tiny, [torch.load(out / f"fsdp-rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.parametrize("name", list(FSDP_VARIANTS))
def test_fsdp2_equals_single_process(fsdp_results, tmp_path, name):
    tiny, ranks = fsdp_results
    got = ranks[0][name]
    assert got["fsdp"] and got["world_size"] == 2
    single = outcome(run(tiny, str(tmp_path / "single"), FSDP_VARIANTS[name], fsdp=False))
    for key in ("params", "theta0", "ema"):
        assert max_abs_diff(ranks[0][name][key], ranks[1][name][key]) == 0.0, key
        assert max_abs_diff(got[key], single[key]) < TOL, key
    assert got["align_lambda"] == pytest.approx(single["align_lambda"], abs=TOL)
    has_anchor, has_ema = bool(single["theta0"]), bool(single["ema"])
    assert has_anchor or has_ema
    # θ₀ and θ̄ are sharded like the parameters: every tensor split over the 2 ranks
    assert got["theta0_sharded"] == [True] * len(single["theta0"])
    assert got["ema_sharded"] == [True] * len(single["ema"])


def test_fsdp2_resume_is_bit_identical(fsdp_results):
    _, ranks = fsdp_results
    full, resumed = ranks[0]["resume-full"], ranks[0]["resumed"]
    for key in ("params", "theta0", "ema"):
        assert full[key] and max_abs_diff(full[key], resumed[key]) == 0.0, key
    assert full["align_lambda"] == resumed["align_lambda"]
    assert all(resumed["theta0_sharded"]) and all(resumed["ema_sharded"])
