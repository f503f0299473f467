"""2-process DDP on CPU (gloo, torchrun) equals one process with the same global batch (GA=2), to 1e-6: parameters,
θ₀, EMA shadow θ̄, dual λ, proxy-loader position and the logged metrics; both ranks hold identical state."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from ddp_worker import DDP_VARIANTS, run_variant
from tiny_models import max_abs_diff, tiny_model_dir

TOL = 1e-6
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tiny = tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "ddp_worker.py"), tiny, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return tiny, out


@pytest.mark.parametrize("name", list(DDP_VARIANTS))
def test_ddp_equals_single_process(ddp_results, tmp_path, name):
    tiny, out = ddp_results
    ranks = [torch.load(out / f"{name}-rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    single = run_variant(tiny, str(tmp_path / "single"), name, ddp=False)  # GA=2 in one process
    assert single["world_size"] == 1

    for key in ("params", "theta0", "ema"):
        assert max_abs_diff(ranks[0][key], ranks[1][key]) == 0.0, key  # replicas stay in lock-step
        assert max_abs_diff(ranks[0][key], single[key]) < TOL, key
    assert ranks[0]["ema"]  # EMA on in every variant
    assert abs(ranks[0]["align_lambda"] - single["align_lambda"]) < TOL
    assert ranks[0]["align_lambda"] == ranks[1]["align_lambda"]
    # each rank consumed one proxy batch per step (the single process two), over half the examples
    assert ranks[0]["align_position"] == ranks[1]["align_position"]

    assert len(ranks[0]["logs"]) == len(single["logs"]) == 3
    for logged_ddp, logged_single in zip(ranks[0]["logs"], single["logs"], strict=True):
        assert set(logged_ddp) == set(logged_single)
        for key, value in logged_single.items():
            assert abs(logged_ddp[key] - value) < 1e-5 * max(1.0, abs(value)), key


def test_ddp_details(tmp_path_factory):
    """Unused parameters with `ddp_find_unused_parameters` unset, host copies on the writing rank only, and a rank-0
    evaluation longer than the process-group timeout (tests/ddp_details_worker.py)."""
    tiny = tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))
    out = tmp_path_factory.mktemp("details")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "ddp_details_worker.py"), tiny, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [torch.load(out / f"details-rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["find_unused"] is None  # left to transformers, which turns it on without checkpointing
    assert max_abs_diff(ranks[0]["params"], ranks[1]["params"]) == 0.0
    assert "model.unused_tower.weight" in ranks[0]["params"]
    # 3 checkpoints: θ₀ and θ̄ copied to the host 3 times each on rank 0, never on rank 1
    assert ranks[0]["host_copies"] == {"ParameterAnchor": 3, "EMAShadow": 3}
    assert ranks[1]["host_copies"] == {}
    evals = [r for r in ranks[0]["log_history"] if "lm_eval/slow/metric" in r]
    assert [r["step"] for r in evals] == [1, 2, 3]
