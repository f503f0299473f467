"""Sweeps: config validation before training, the results store, kill-and-resume, submitit, the demo's claims."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from safety_tradeoff.results import ResultsStore, RunRecord
from safety_tradeoff.sweep_config import SweepConfig, SweepConfigError

TOY_TRAINING = dict(max_steps=150, learning_rate=1e-3, per_device_train_batch_size=32, lr_scheduler_type="cosine",
                    warmup_steps=0.05, adam_beta2=0.98, weight_decay=0.0, max_length=128, use_cpu=True, bf16=False,
                    dataloader_num_workers=0, align_batch_size=16, disable_tqdm=True)


def sweep_dict(**overrides):
    values = dict(base_model="toyworld:aligned", task_dataset="toyworld:task_high_overlap",
                  proxies={"near": "toyworld:proxy_near", "far": "toyworld:proxy_far"}, seeds=[0],
                  training=dict(TOY_TRAINING), eval={"tasks": ["safety_tradeoff_toy"], "batch_size": 128},
                  methods=[{"method": "case1", "proxy": "near", "align_lambda": [0.1, 1.0]}])
    values.update(overrides)
    return values


@pytest.fixture
def toy_env(toy_world, toy_cache, monkeypatch):
    """`toyworld:` names resolve to the session's toy world."""
    monkeypatch.setenv("SAFETY_TRADEOFF_CACHE", toy_cache)
    return toy_world


@pytest.mark.parametrize("change, message", [
    ({"methods": [{"method": "case9", "align_lambda": 1}]}, "methods[0].method: unknown method 'case9'"),
    ({"methods": [{"method": "case1", "proxy": "near", "align_lambda": []}]}, "methods[0].align_lambda: empty list"),
    ({"methods": [{"method": "case1", "proxy": "near", "align_lamda": [1]}]}, "align_lamda"),
    ({"methods": [{"method": "case1", "align_lambda": [1]}]}, "methods[0].proxy: Case I needs a proxy"),
    ({"methods": [{"method": "case1", "proxy": "nearby", "align_lambda": 1}]}, "unknown proxy 'nearby'"),
    ({"methods": [{"method": "case2"}]}, "needs 'anchor_lambda'"),
    ({"methods": [{"method": "ema", "ema_beta": 0.9, "proxy": "near"}]}, "does not use a proxy"),
    ({"trainig": {}}, "unknown key(s) trainig"),
    ({"training": {"max_stepz": 3}}, "training: unknown setting(s) max_stepz"),
    ({"eval": {"taskz": []}}, "eval.taskz"),
    ({"seeds": []}, "'seeds'"),
    ({"task_dataset": None}, "'task_dataset' is required"),
])
def test_bad_config_is_rejected_by_key(change, message):
    with pytest.raises(SweepConfigError) as err:
        SweepConfig.from_dict(sweep_dict(**change))
    assert message in str(err.value)


def test_expansion_includes_references_and_names_runs():
    config = SweepConfig.from_dict(sweep_dict(seeds=[0, 1], methods=[
        {"method": "case1", "proxy": ["near", "far"], "align_lambda": [0.1, 1.0]},
        {"method": "ema", "ema_beta": [0.99], "learning_rate": [1e-3, 2e-3]}]))
    runs = config.expand()
    names = [r.name for r in runs if r.seed == 0]
    assert names[:2] == ["aligned θ₀", "plain SFT"]
    assert "Case I near λ=0.1" in names and "Case I far λ=1" in names
    assert "EMA β=0.99 (lr=0.002)" in names
    assert len(runs) == 2 * (2 + 4 + 2)
    ids = [r.run_id(config) for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids == [r.run_id(config) for r in SweepConfig.from_dict(sweep_dict(seeds=[0, 1], methods=[
        {"method": "case1", "proxy": ["near", "far"], "align_lambda": [0.1, 1.0]},
        {"method": "ema", "ema_beta": [0.99], "learning_rate": [1e-3, 2e-3]}])).expand()]


def test_runs_differing_in_a_fixed_setting_get_their_own_names():
    """A regime sweep written as separate entries (Kim et al.: batch size, steps) must not merge into one
    "plain SFT" row: an unnamed entry's fixed settings are part of its runs' names; a named entry keeps its name."""
    config = SweepConfig.from_dict(sweep_dict(methods=[
        {"method": "sft", "per_device_train_batch_size": 8}, {"method": "sft", "max_steps": 50},
        {"method": "sft", "learning_rate": [5e-4]}, {"method": "case2", "anchor_lambda": [0.1], "anchor_mode": "decoupled"},
        {"method": "sft", "name": "short run", "max_steps": 20}]))
    names = [r.name for r in config.expand()]
    assert names == ["aligned θ₀", "plain SFT", "plain SFT (bs=8)", "plain SFT (steps=50)", "plain SFT (lr=0.0005)",
                     "Case II λ=0.1 (anchor_mode=decoupled)", "short run"]


def test_results_store_keeps_latest_and_survives_a_cut_line(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(RunRecord(run_id="a", name="x", method="sft", seed=0, status="failed", error="boom"))
    store.append(RunRecord(run_id="b", name="y", method="sft", seed=0, metrics={"harmful_rate": 0.5}))
    assert store.finished() == {"b"}
    store.append(RunRecord(run_id="a", name="x", method="sft", seed=0))
    assert store.finished() == {"a", "b"}
    with store.path.open("a") as f:
        f.write('{"run_id": "c", "na')  # a crash mid-write
    assert store.finished() == {"a", "b"}


def cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "safety_tradeoff.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_bad_tasks_and_datasets_are_rejected_before_training(tmp_path, toy_env, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(eval={"tasks": ["safety_tradeoff_toy", "no_such_task"]})))
    out = cli("sweep", str(path), "--results", str(tmp_path / "r.jsonl"), env=dict(os.environ))
    assert out.returncode == 2 and "no_such_task" in out.stderr, out.stderr[-2000:]
    from safety_tradeoff.cli import main  # the same command in-process: a second interpreter start costs ~30 s

    path.write_text(yaml.safe_dump(sweep_dict(task_dataset=str(tmp_path / "missing.jsonl"))))
    assert main(["sweep", str(path), "--results", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "task_dataset" in err and "missing.jsonl" in err, err
    assert not (tmp_path / "r.jsonl").exists(), "nothing may train or be recorded"


def test_kill_and_rerun_skips_finished_runs(tmp_path, toy_env):
    """A sweep interrupted mid-run (Ctrl-C, two runs at a time) completes on re-run without redoing finished runs;
    failures are recorded."""
    training = {**TOY_TRAINING, "max_steps": 10}
    methods = [{"method": "case2", "anchor_lambda": [0.1, 1.0]}, {"method": "case2_ball", "anchor_radius": -1.0}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(training=training, methods=methods)))
    results = tmp_path / "r.jsonl"
    env = {**os.environ, "SAFETY_TRADEOFF_CACHE": os.environ["SAFETY_TRADEOFF_CACHE"]}
    import signal
    import time

    # SIGINT's default action restored in the child: a shell's background job (`pytest &`) starts with SIGINT
    # ignored, and Python keeps an ignored SIGINT ignored, so Ctrl-C would never reach the sweep
    proc = subprocess.Popen([sys.executable, "-m", "safety_tradeoff.cli", "sweep", str(path), "--results",
                             str(results), "--jobs", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:  # Ctrl-C as soon as a run is recorded

        deadline = time.time() + 600
        while time.time() < deadline and (not results.exists() or not results.read_text().strip()):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "interrupted; finished runs are kept" in err, err[-2000:]
    done_before = ResultsStore(results).finished()
    assert 1 <= len(done_before) < 5
    out = cli("sweep", str(path), "--results", str(results), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    latest = ResultsStore(results).latest()
    assert len(latest) == 5  # aligned, plain SFT, 2 × Case II, the failing ball run
    lines = [line for line in results.read_text().splitlines() if line.strip()]
    assert len(lines) == 5, "finished runs must not be redone"
    failed = [r for r in latest.values() if not r.ok]
    assert len(failed) == 1 and "anchor_radius" in failed[0].error
    assert all("harmful_rate" in r.metrics and "task_accuracy" in r.metrics for r in latest.values() if r.ok)


def test_plan_shares_plain_sfts_trajectory_with_its_ema_runs_only():
    """Plain SFT and the EMA runs that differ from it only in β train once; an EMA run with another learning rate,
    another EMA setting or fp16 (whose skipped steps the EMA does not count) trains on its own, as do Case I runs."""
    from safety_tradeoff.sweep_shared import plan

    config = SweepConfig.from_dict(sweep_dict(methods=[
        {"method": "ema", "ema_beta": [0.9, 0.7]}, {"method": "ema", "ema_beta": 0.9, "learning_rate": 2e-3},
        {"method": "ema", "ema_beta": 0.8, "ema_update_every": 2},
        {"method": "case1", "proxy": "near", "align_lambda": 0.1}]))
    trajectories = plan(config.expand(), config)
    shared = [t for t in trajectories if t.companions]
    assert len(shared) == 1 and shared[0].head.name == "plain SFT"
    assert [r.settings["ema_beta"] for r in shared[0].companions] == [0.9, 0.7]
    assert sum(len(t.runs) for t in trajectories) == len(config.expand())  # every run once
    assert {r.name for t in trajectories if not t.companions for r in t.runs} >= {
        "EMA β=0.9 (lr=0.002)", "EMA β=0.8 (ema_update_every=2)", "Case I near λ=0.1"}
    # without plain SFT still to do (recorded earlier), the EMA runs share a trajectory of their own
    (only_ema,) = [t for t in plan([r for r in config.expand() if r.name != "plain SFT"], config) if t.companions]
    assert only_ema.head is None and only_ema.trained.method == "sft" and "ema_beta" not in only_ema.trained.settings
    fp16 = SweepConfig.from_dict(sweep_dict(training={**TOY_TRAINING, "fp16": True},
                                            methods=[{"method": "ema", "ema_beta": [0.9, 0.7]}]))
    assert not any(t.companions for t in plan(fp16.expand(), fp16))
    # a sweep-wide ema_beta makes plain SFT an EMA run that would save its own θ̄ over the companions'
    wide = SweepConfig.from_dict(sweep_dict(training={**TOY_TRAINING, "ema_beta": 0.99},
                                            methods=[{"method": "ema", "ema_beta": [0.9, 0.7]}]))
    assert not any(t.companions for t in plan(wide.expand(), wide))
    assert sum(len(t.runs) for t in plan(wide.expand(), wide)) == len(wide.expand())
    off = SweepConfig.from_dict({**sweep_dict(methods=[{"method": "ema", "ema_beta": [0.9, 0.7]}]),
                                 "share_trajectories": False})
    assert not any(t.companions for t in plan(off.expand(), off))
    with pytest.raises(SweepConfigError, match="'share_trajectories' must be true or false"):
        SweepConfig.from_dict({**sweep_dict(), "share_trajectories": "no"})


def test_shared_trajectory_gives_each_ema_run_its_own_weights_bit_for_bit(tmp_path, toy_env):
    """θ̄ kept beside plain SFT's run (`EMACompanions`) are, bit for bit, the θ̄ of EMA runs trained on their own
    (`EMASFTTrainer`), and plain SFT's weights are those of a plain run; so are their pilot read-outs of G_s."""
    from safetensors.torch import load_file

    from safety_tradeoff.sweep_run import train_run
    from safety_tradeoff.sweep_shared import plan

    config = SweepConfig.from_dict(sweep_dict(
        training={**TOY_TRAINING, "max_steps": 12}, methods=[{"method": "ema", "ema_beta": [0.9, 0.6]}],
        diagnostics={"safety_dataset": "toyworld:eval/alignment", "max_examples": 24, "bootstrap": 20}))
    (shared,) = [t for t in plan(config.expand(), config) if t.companions]
    folders = [tmp_path / "shared" / str(i) for i in range(3)]
    together = train_run(shared.trained, config, folders[0], list(zip(shared.companions, folders[1:])))
    for run, (folder, metrics) in zip(shared.runs, together):
        alone, alone_metrics = train_run(run, config, tmp_path / "alone" / run.name)[0]
        mine, theirs = load_file(Path(folder) / "model.safetensors"), load_file(Path(alone) / "model.safetensors")
        assert mine.keys() == theirs.keys()
        assert all(torch_equal(mine[k], theirs[k]) for k in mine), run.name
        for key in ("pilot_gap", "final_gap"):
            assert metrics[key] == alone_metrics[key], (run.name, key)
    weights = [load_file(Path(folder) / "model.safetensors") for folder, _ in together]
    assert not all(torch_equal(weights[1][k], weights[2][k]) for k in weights[1])  # β matters


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_jobs_must_be_positive(tmp_path):
    from safety_tradeoff.sweep import run_sweep

    with pytest.raises(ValueError, match="jobs must be a positive integer, got 0"):
        run_sweep(SweepConfig.from_dict(sweep_dict()), tmp_path / "r.jsonl", jobs=0, log=lambda m: None)
    assert not (tmp_path / "r.jsonl").exists()


def test_submitit_local_executor(tmp_path, toy_env):
    pytest.importorskip("submitit")
    from safety_tradeoff.sweep import run_sweep

    config = SweepConfig.from_dict(sweep_dict(training={**TOY_TRAINING, "max_steps": 5},
                                              methods=[{"method": "ema", "ema_beta": 0.9}]))
    records = run_sweep(config, tmp_path / "r.jsonl", executor="submitit",
                        executor_options={"cluster": "local", "timeout_min": 20}, log=lambda m: None)
    assert [r.ok for r in records] == [True, True, True], [r.error for r in records]
    assert ResultsStore(tmp_path / "r.jsonl").finished() == {r.run_id for r in records}


@pytest.mark.slow
def test_small_demo_shows_the_tradeoffs_and_the_theory_predicts_them(tmp_path, toy_env):
    """The demo's claims, on a small version of it (world seed 0, 150 steps), two runs at a time as the demo
    runs them (worker processes, one thread each); and the theory check on the same runs: near < far proxy and
    low < high overlap in G_s, as the diagnostics at θ₀ predict, and the Case II bound (one sweep serves both:
    it is the suite's most expensive test)."""
    from safety_tradeoff.diagnostics.check import check
    from safety_tradeoff.report import build_report
    from safety_tradeoff.sweep import run_sweep

    config = SweepConfig.from_dict(sweep_dict(
        diagnostics={"safety_dataset": "toyworld:eval/alignment", "fit_steps": 30, "fit_learning_rate": 1e-3,
                     "bootstrap": 50},
        methods=[{"method": "sft", "task_dataset": "toyworld:task_low_overlap"},
                 {"method": "case1", "proxy": ["near", "far"], "align_lambda": 0.1},
                 {"method": "case2", "anchor_lambda": [0.01, 3.0]}, {"method": "case2_ball", "anchor_radius": 1.0},
                 {"method": "ema", "ema_beta": [0.98, 0.995]}]))
    runs = run_sweep(config, tmp_path / "r.jsonl", log=lambda m: None, jobs=2)
    assert all(r.ok for r in runs), [r.error for r in runs if not r.ok]
    records = {r.name: r.metrics for r in runs}
    assert len(ResultsStore(tmp_path / "r.jsonl").finished()) == len(records) == 11  # 10 runs + diagnostics
    aligned, sft = records["aligned θ₀"], records["plain SFT"]
    near, far = records["Case I near λ=0.1"], records["Case I far λ=0.1"]
    assert sft["harmful_rate"] >= aligned["harmful_rate"] + 0.1, (aligned, sft)  # claim (a)'s +10 points: the world build is not bit-reproducible across machines (thread counts), and its damage varies (38-63% here)
    assert near["harmful_rate"] <= 0.1 and near["task_accuracy"] >= 0.9, near
    assert near["harmful_rate"] < far["harmful_rate"] and near["alignment_nll"] < far["alignment_nll"]
    for weak, strong in (("Case II λ=0.01", "Case II λ=3"), ("EMA β=0.98", "EMA β=0.995")):
        w, s = records[weak], records[strong]
        assert s["harmful_rate"] <= w["harmful_rate"] and s["task_accuracy"] <= w["task_accuracy"], (w, s)
        assert s["alignment_nll"] < w["alignment_nll"], (w, s)
    assert records["Case II λ=3"]["dist_to_theta0"] < records["Case II λ=0.01"]["dist_to_theta0"]

    result = check(runs)
    diag_loss, lm_eval_loss = result.loss_mismatch[0]
    assert diag_loss == pytest.approx(lm_eval_loss, rel=1e-3), "diagnose and lm-eval must score the same L_s"
    summary = result.summary()
    assert summary["case2_runs"] == 3 and summary["case2_bound_holds"] == 3
    assert summary["proxy_comparisons"] == 1 and summary["proxy_order_matches"] == 1
    # the overlap order: prompt similarity at θ₀ does not predict it on every world (docs/diagnostics.md, 0/3 on
    # the worlds rebuilt 2026-12-04); the runs' pilot read-outs do
    assert summary["task_comparisons"] == 1
    assert summary["pilot_task_comparisons"] == 1 and summary["pilot_task_order_matches"] == 1
    assert summary["pilot_proxy_comparisons"] == 1 and summary["pilot_proxy_order_matches"] == 1
    ball = next(b for b in result.bounds if b.method == "case2_ball")
    assert ball.radius <= 1.0 + 1e-4  # the hard constraint held on the evaluated weights
    report = build_report(runs, tmp_path / "report")
    text = (tmp_path / "report" / "theory_check.md").read_text()
    assert "holds on 3/3 Case II runs" in text and "matches the measured one in 1/1" in text
    # every fine-tuned run read G_s a third of the way through (the pilot read-out; EMA runs at θ̄), and the
    # report sets it against the final G_s
    assert {p.name for p in result.pilots} == {n for n in records if n not in ("aligned θ₀", "diagnostics")}
    assert all(p.step == 50 for p in result.pilots) and "### Pilot read-out" in text
    # Case II penalty runs also predict their equilibrium (the ball and every other method do not)
    assert {p.name for p in result.pilots if p.equilibrium is not None} == {"Case II λ=0.01", "Case II λ=3"}
    assert records["Case II λ=3"]["pilot_eq_radius"] < records["Case II λ=0.01"]["pilot_eq_radius"]
    assert "Case II equilibrium predicted at the pilot step" in text
    # λ = 0.01 has under one e-fold of relaxation left at the pilot step (the ray); λ = 3 has many (the rows)
    models = {p.name: (p.eq_from, p.efolds) for p in result.pilots if p.equilibrium is not None}
    assert models["Case II λ=0.01"][0] == "ray" and models["Case II λ=0.01"][1] < 1
    assert models["Case II λ=3"][0] == "rows" and models["Case II λ=3"][1] >= 1
    assert (tmp_path / "report" / "case2_prediction.png").is_file()
    # the pilot's end-of-run G_s (the measured side's interval in rankings) is lm-eval's alignment_nll gap
    aligned = records["aligned θ₀"]["alignment_nll"]
    for name, metrics in records.items():
        if name not in ("aligned θ₀", "diagnostics"):
            assert metrics["final_gap"] == pytest.approx(metrics["alignment_nll"] - aligned, abs=1e-5), name
            assert metrics["final_gap_low"] < metrics["final_gap"] < metrics["final_gap_high"], name
    assert "Predicted vs measured" in report.summary and "## Claims of the papers" in report.summary
    claims = {c.key: c for c in report.claims}
    assert claims["c"].verdict == "holds", claims["c"]  # near < far at λ = 0.1, asserted above on the metrics
    assert claims["g"].verdict == "not measured"  # one optimiser regime


def test_base_model_without_chat_template_is_refused_before_training(tmp_path):
    """The safety tasks run chat models through their template: a template-less base model is refused up front,
    naming the setting, not after the first run's training."""
    import torch
    from tiny_models import build_tokenizer, tiny_llama_config
    from transformers import LlamaForCausalLM

    from safety_tradeoff.sweep import run_sweep

    base = tmp_path / "plain-lm"
    tok = build_tokenizer(chat_template=None)
    tok.save_pretrained(base)
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tok)).save_pretrained(base)
    config = SweepConfig.from_dict(sweep_dict(base_model=str(base), methods=[{"method": "ema", "ema_beta": 0.9}]))
    with pytest.raises(SweepConfigError, match=r"eval.apply_chat_template: the tokenizer of base_model .*plain-lm has "
                                               r"no chat template"):
        run_sweep(config, tmp_path / "r.jsonl", log=lambda m: None)
    assert not (tmp_path / "r.jsonl").exists()
