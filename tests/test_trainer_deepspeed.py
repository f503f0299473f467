"""DeepSpeed ZeRO-2 on 2 CPU processes (DeepSpeed's CPU accelerator, gloo; tests/deepspeed_worker.py): Case II in the
loss, the EMA, and Case I (concat forward, dual ascent) with both equal one process with the same global batch to
1e-5; the mechanisms DeepSpeed cannot run exactly are refused when the trainer is built.

Skipped when DeepSpeed is not installed (it is not a dependency: `pip install deepspeed`; the first run compiles
DeepSpeed's shared-memory communication op, a few minutes, cached in ~/.cache/torch_extensions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import max_abs_diff, tiny_model_dir

pytest.importorskip("deepspeed")

from deepspeed_worker import DS_VARIANTS, REFUSED, build, outcome  # noqa: E402

TOL = 1e-5
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ds_results(tmp_path_factory):
    tiny = tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))
    out = tmp_path_factory.mktemp("deepspeed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent),
                                                                              os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "deepspeed_worker.py"), tiny, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return tiny, [torch.load(out / f"deepspeed-rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.parametrize("name", list(DS_VARIANTS))
def test_zero2_equals_single_process(ds_results, tmp_path, name):
    tiny, ranks = ds_results
    got = ranks[0][name]
    assert got["deepspeed"] and got["world_size"] == 2
    overrides, align = DS_VARIANTS[name]
    single = build(tiny, str(tmp_path), overrides, align, deepspeed=False)
    single.train()
    expected = outcome(single)
    for key in ("params", "theta0", "ema"):
        assert max_abs_diff(ranks[0][name][key], ranks[1][name][key]) == 0.0, key
        assert max_abs_diff(got[key], expected[key]) < TOL, key
    if expected["align_lambda"] is not None:
        assert got["align_lambda"] == pytest.approx(expected["align_lambda"], abs=TOL)
        assert got["align_lambda"] != 0.5  # the dual variable moved


def test_zero2_refuses_what_it_cannot_run(ds_results):
    _, ranks = ds_results
    refusals = ranks[0]["refusals"]
    assert set(refusals) == set(REFUSED)
    assert "anchor_mode='grad'" in refusals["grad"] and "Use anchor_mode='loss'" in refusals["grad"]
    assert "ball projection" in refusals["ball"]
    assert "anchor_mode='decoupled'" in refusals["decoupled"]
