"""Theory diagnostics: the statistics, bad input, `safety-tradeoff diagnose` on the toy world, the report's
"predicted vs measured" section, and the papers' predictions on a small toy-world sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from safety_tradeoff.diagnostics.check import check
from safety_tradeoff.diagnostics.check_report import markdown, plot_predictions
from safety_tradeoff.diagnostics.config import DiagnosticsConfig
from safety_tradeoff.diagnostics.similarity import kernel_comparison, median_bandwidth, paired_loss_gap, weighted_loss
from safety_tradeoff.results import RunRecord
from safety_tradeoff.sweep_config import SweepConfig, SweepConfigError
from test_sweep import sweep_dict


# ----------------------------------------------------------------------------------------- statistics
def test_kernel_similarity_separates_same_from_shifted_distributions():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(150, 8, generator=gen), torch.randn(150, 8, generator=gen)
    sigma = median_bandwidth(x)
    same = kernel_comparison(x, y, sigma, n_boot=100)
    shifted = kernel_comparison(x, y + 2.0, sigma, n_boot=100)
    assert same["similarity"].value > 0.97 and abs(same["mmd2"].value) < 0.02
    assert shifted["similarity"].high < same["similarity"].low  # intervals apart
    assert shifted["mmd2"].low > same["mmd2"].high
    for stat in (*same.values(), *shifted.values()):
        assert stat.low <= stat.value <= stat.high  # resampled duplicates must not bias the intervals
    with pytest.raises(ValueError, match="at least 2 examples"):
        kernel_comparison(x[:1], y, sigma)


def test_losses_are_token_weighted_and_paired():
    sums, tokens = torch.tensor([2.0, 6.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 3.0, 4.0], dtype=torch.float64)
    loss = weighted_loss(sums, tokens, n_boot=50)
    assert loss.value == pytest.approx(9.0 / 8.0)
    after = sums + torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    gap = paired_loss_gap(after, sums, tokens, n_boot=50)
    assert gap.value == pytest.approx(3.0 / 8.0) and gap.low > 0  # every example got worse


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("values, message", [
    ({}, "safety_dataset: required"),
    ({"safety_dataset": "x", "fit_stepz": 3}, "fit_stepz: unknown setting"),
    ({"safety_dataset": "x", "fit_steps": -1}, "fit_steps: must be an integer >= 0"),
    ({"safety_dataset": "x", "hessian_params": "some"}, "hessian_params: must be 'all' or 'lora'"),
    ({"safety_dataset": "x", "hessian_method": "arnoldi"}, "hessian_method"),
    ({"safety_dataset": "x", "radii": [1, -2]}, "radii: must be numbers >= 0"),
    ({"safety_dataset": "x", "confidence": 1.5}, "confidence"),
    ({"safety_dataset": "x", "max_examples": 0}, "max_examples: must be a positive integer"),
    ({"safety_dataset": "x", "pilot_fraction": 1.0}, "pilot_fraction: must be in"),
    ({"safety_dataset": "x", "pilot_fraction": True}, "pilot_fraction: must be in"),
    ({"safety_dataset": "x", "pilot_equilibrium": "yes"}, "pilot_equilibrium: must be true or false"),
])
def test_config_errors_name_the_setting(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        DiagnosticsConfig.from_dict(values)


def test_sweep_diagnostics_block_is_validated_by_key():
    with pytest.raises(SweepConfigError, match=r"diagnostics\.fit_stepz: unknown setting"):
        SweepConfig.from_dict(sweep_dict(diagnostics={"safety_dataset": "toyworld:eval/alignment", "fit_stepz": 1}))
    with pytest.raises(SweepConfigError, match=r"methods\[0\]\.task_dataset"):
        SweepConfig.from_dict(sweep_dict(methods=[{"method": "sft", "task_dataset": []}]))


def test_entry_task_datasets_make_their_own_runs():
    config = SweepConfig.from_dict(sweep_dict(
        diagnostics={"safety_dataset": "toyworld@{seed}:eval/alignment"},
        methods=[{"method": "sft", "task_dataset": "toyworld:task_low_overlap"},
                 {"method": "case2", "anchor_lambda": 0.1, "task_dataset": ["toyworld:task_high_overlap",
                                                                            "toyworld:task_low_overlap"]}]))
    runs = config.expand()
    names = [r.name for r in runs]
    assert names[:3] == ["aligned θ₀", "diagnostics", "plain SFT"]
    assert "plain SFT (task=task_low_overlap)" in names and "Case II λ=0.1 (task=task_low_overlap)" in names
    assert config.task_datasets() == ["toyworld:task_high_overlap", "toyworld:task_low_overlap"]
    ids = [r.run_id(config) for r in runs]
    assert len(set(ids)) == len(ids)
    named = SweepConfig.from_dict(sweep_dict(methods=[
        {"method": "sft", "name": "mine", "task_dataset": ["a/v1/train.jsonl", "a/v2/train.jsonl"]},
        {"method": "sft", "task_dataset": "toyworld:task_high_overlap"}]))  # = the sweep's: no second run
    assert [r.name for r in named.expand()] == ["aligned θ₀", "plain SFT", "mine (task=a/v1/train.jsonl)",
                                                "mine (task=a/v2/train.jsonl)"]


def test_pairs_errors_name_the_dataset_and_columns(tmp_path):
    from safety_tradeoff.data import DataSpecError
    from safety_tradeoff.diagnostics.examples import DiagnosticsDataError, load_pairs

    path = tmp_path / "safety.jsonl"
    path.write_text(json.dumps({"question": "how do i x", "text": "no"}) + "\n")
    with pytest.raises(DiagnosticsDataError, match=r"no response column .*columns: question, text"):
        load_pairs(str(path))
    assert load_pairs(str(path), response_column="text") == [("how do i x", "no")]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises((DataSpecError, DiagnosticsDataError), match="empty"):
        load_pairs(str(empty))
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"prompt": "hi", "completion": " "}) + "\n")
    with pytest.raises(DiagnosticsDataError, match="no example with a non-empty prompt and response"):
        load_pairs(str(blank))


def test_tokenizer_without_chat_template_is_refused():
    from safety_tradeoff.diagnostics.examples import DiagnosticsDataError, encode_pairs
    from tiny_models import build_tokenizer

    with pytest.raises(DiagnosticsDataError, match="has no chat template"):
        encode_pairs(build_tokenizer(chat_template=None), [("how do i x", "no")], 64)


# ------------------------------------------------------------------------------- the report's section
def _record(name, method, seed, nll, dist=None, proxy=None, task="toyworld:task_high_overlap", settings=None,
            diagnostics=None):
    metrics = {"alignment_nll": nll} if nll is not None else {}
    if dist is not None:
        metrics["dist_to_theta0"] = dist
    config = {"settings": settings or {}, "task_dataset": task}
    if diagnostics is not None:
        config["diagnostics"] = diagnostics
    return RunRecord(run_id=f"{name}-{seed}", name=name, method=method, seed=seed, proxy=proxy, config=config,
                     metrics=metrics)


def _interval(value, half=0.05):
    return {"value": value, "low": value - half, "high": value + half}


def _diag(grad_norm, beta, proxy_order, task_order):
    """Separate intervals in the predicted orders: proxies by falling response similarity, tasks by rising prompt
    similarity (what `predictions` sorts by)."""
    return {"safety": {"loss": _interval(0.5)}, "landscape": {"grad_norm": grad_norm, "beta": beta, "iterations": 5,
                                                              "converged": True},
            "proxies": {p: {"similarity": _interval(0.9 - 0.3 * i)} for i, p in enumerate(proxy_order)},
            "tasks": {t: {"spec": f"toyworld:{t}", "similarity": _interval(0.3 + 0.3 * i)}
                      for i, t in enumerate(task_order)},
            "predicted": {"proxy_order": proxy_order, "task_order": task_order}}


def test_check_reports_bound_failures_and_order_mismatches(tmp_path):
    from safety_tradeoff.report import build_report

    diag = _diag(grad_norm=0.1, beta=1.0, proxy_order=["near", "far"], task_order=["low", "high"])
    records = [
        _record("aligned θ₀", "aligned", 0, 0.5), _record("diagnostics", "diagnostics", 0, None, diagnostics=diag),
        # r = 1: bound 0.1 + 0.5 = 0.6; G_s 0.2 holds, G_s 1.0 does not
        _record("Case II λ=1", "case2", 0, 0.7, dist=1.0, settings={"anchor_lambda": 1.0}),
        _record("Case II λ=0.1", "case2", 0, 1.5, dist=1.0, settings={"anchor_lambda": 0.1}),
        # measured far < near: the prediction near < far fails
        _record("Case I near λ=1", "case1", 0, 0.9, proxy="near", settings={"align_lambda": 1.0}),
        _record("Case I far λ=1", "case1", 0, 0.6, proxy="far", settings={"align_lambda": 1.0}),
        _record("plain SFT", "sft", 0, 1.4, task="toyworld:high"),
        _record("plain SFT low", "sft", 0, 1.1, task="toyworld:low"),
    ]
    result = check(records)
    summary = result.summary()
    assert (summary["case2_bound_holds"], summary["case2_runs"]) == (1, 2)
    assert (summary["proxy_order_matches"], summary["proxy_comparisons"]) == (0, 1)
    assert (summary["task_order_matches"], summary["task_comparisons"]) == (1, 1)
    text = markdown(result)
    assert "holds on 1/2 Case II runs" in text and "**no**" in text and "Where it fails" in text
    assert "Case II λ=0.1 seed 0 (G_s 1.000 > 0.600)" in text
    report = build_report(records, tmp_path / "report")
    assert "Predicted vs measured" in report.summary and (tmp_path / "report" / "case2_bound.png").is_file()
    assert not (tmp_path / "report" / "case2_prediction.png").exists()  # no run here predicted its equilibrium
    assert "diagnostics" not in [r.name for r in report.rows], "the diagnostics record is not a leaderboard row"
    assert check([r for r in records if r.method != "diagnostics"]) is None
    # runs of a seed without diagnostics, LoRA-based landscapes, duplicate runs and failed diagnostics are
    # reported, never silently dropped or mixed
    lora = {**diag, "landscape": {**diag["landscape"], "params": "lora"}}
    more = [_record("aligned θ₀", "aligned", 1, 0.5), _record("Case II λ=1", "case2", 1, 0.7, dist=1.0),
            _record("aligned θ₀", "aligned", 2, 0.5), _record("Case II λ=1", "case2", 2, 0.7, dist=1.0),
            _record("diagnostics", "diagnostics", 2, None, diagnostics=lora),
            _record("Case I far λ=1", "case1", 0, 0.8, proxy="far", settings={"align_lambda": 1.0}),
            RunRecord(run_id="d3", name="diagnostics", method="diagnostics", seed=3, status="failed",
                      error="ValueError: the cross-loss fit diverged")]
    result = check(records + more)
    assert result.summary()["case2_runs"] == 2 and result.summary()["proxy_comparisons"] == 0
    text = markdown(result)
    assert "1 run(s) not checked: no diagnostics" in text and "LoRA parameters" in text
    assert "proxy comparison(s) skipped" in text and "diagnostics failed, seed 3: ValueError" in text
    plain = build_report([r for r in records if r.method != "diagnostics"], tmp_path / "plain")
    assert "Predicted vs measured" not in plain.summary and not (tmp_path / "plain" / "case2_bound.png").exists()


def test_pilot_read_out_is_set_against_the_final_gap(tmp_path):
    """Each run's pilot G_s against its final one (alignment NLL − the aligned model's): the ratio, within 2x or
    not, Case II counted apart; runs whose final G_s is not positive have no factor (–)."""
    diag = _diag(grad_norm=0.1, beta=1.0, proxy_order=["near", "far"], task_order=["low", "high"])

    def run(name, method, nll, pilot, eq=None, kappa=None):
        r = _record(name, method, 0, nll, dist=1.0, settings={"anchor_lambda": 1.0})
        r.metrics.update(pilot_gap=pilot, pilot_step=50.0, **({} if eq is None else {"pilot_eq_gap": eq}))
        if kappa is not None:  # the pilot's relaxation κ; rows from 4 on, their geometric mean with the ray from 1
            rows = {} if kappa < 1 else {"pilot_rows_gap": eq} if kappa >= 4 else {"pilot_rows_gap": eq / 2,
                                                                                  "pilot_ray_gap": eq * 2}
            r.metrics.update(pilot_relax_efolds=kappa, **rows)
        return r

    records = [_record("aligned θ₀", "aligned", 0, 0.5), _record("diagnostics", "diagnostics", 0, None,
                                                                diagnostics=diag),
               run("Case II λ=1", "case2", 0.54, 0.07, 0.09, 2.0),  # final 0.04: 1.75x, within; eq. 2.25x
               run("Case II λ=0.1", "case2", 0.60, 0.26, 0.06, 6.3),  # final 0.10: 2.6x, not within; eq. 0.6x
               run("Case II λ=3", "case2", 0.51, 0.004, 0.006, 0.4),  # final 0.01: 0.4x, not within; eq. 0.6x
               run("plain SFT", "sft", 0.80, 0.20),          # final 0.30: 0.667x, within
               run("Case I near λ=1", "case1", 0.49, 0.01)]  # final -0.01: no factor
    result = check(records)
    rows = {p.name: p for p in result.pilots}
    assert rows["Case II λ=1"].ratio == pytest.approx(0.07 / 0.04)
    assert [rows[n].within_2x for n in ("Case II λ=1", "Case II λ=0.1", "Case II λ=3", "plain SFT",
                                        "Case I near λ=1")] == [True, False, False, True, None]
    summary = result.summary()
    assert (summary["case2_pilot_within_2x"], summary["case2_pilots"]) == (1, 3)
    assert [rows[n].eq_within_2x for n in ("Case II λ=1", "Case II λ=0.1", "Case II λ=3", "plain SFT")] == \
        [False, True, True, None]
    assert rows["Case II λ=0.1"].eq_ratio == pytest.approx(0.06 / 0.10)
    assert (summary["case2_equilibrium_within_2x"], summary["case2_equilibria"]) == (2, 3)
    text = markdown(result)
    assert "within 2x of the final G_s on 1/3 Case II runs (2/4 over all runs with a positive G_s)" in text
    assert "Case II equilibrium predicted at the pilot step: within 2x of the final G_s on 2/3 Case II runs" in text
    assert [(rows[n].eq_from, rows[n].efolds, rows[n].part_relaxed) for n in ("Case II λ=1", "Case II λ=0.1",
                                                                             "Case II λ=3")] == \
        [("rows·ray", 2.0, True), ("rows", 6.3, False), ("ray", 0.4, False)]
    assert "| Case II λ=0.1 | 0 | 50 | +0.2600 | +0.1000 | 2.6 | **no** | rows (6.3) | +0.0600 | 0.6 | yes |" in text
    assert "| Case II λ=3 | 0 | 50 | +0.0040 | +0.0100 | 0.4 | **no** | ray (0.4) | +0.0060 | 0.6 | yes |" in text
    assert "| rows·ray (2 ⚠) | +0.0900 | 2.25 | **no** |" in text and "⚠ κ between 1 and 4" in text
    assert plot_predictions(result, tmp_path / "p.png") is None and (tmp_path / "p.png").stat().st_size > 0
    no_eq = check([r for r in records if r.name not in ("Case II λ=1", "Case II λ=0.1", "Case II λ=3")])
    assert "skipped: no Case II run" in plot_predictions(no_eq, tmp_path / "q.png")
    assert not (tmp_path / "q.png").exists()
    assert "| Case I near λ=1 | 0 | 50 | +0.0100 | -0.0100 | nan | – | – | – | – | – |" in text


def test_an_order_the_diagnostics_cannot_resolve_is_a_tie_not_a_miss():
    """near and mid with overlapping cross-loss intervals: the prediction orders only far after both, so
    measured mid < near < far agrees with it; far before mid does not."""
    diag = _diag(grad_norm=0.1, beta=1.0, proxy_order=["mid", "near", "far"], task_order=["low", "high"])
    diag["proxies"] = {"near": {"cross_loss_gap": _interval(-0.30, 0.02)},
                       "mid": {"cross_loss_gap": _interval(-0.31, 0.02)}, "far": {"cross_loss_gap": _interval(1.8)}}

    def records(far_nll):
        return [_record("aligned θ₀", "aligned", 0, 0.5), _record("diagnostics", "diagnostics", 0, None, diagnostics=diag),
                _record("Case I near λ=1", "case1", 0, 0.30, proxy="near", settings={"align_lambda": 1.0}),
                _record("Case I mid λ=1", "case1", 0, 0.35, proxy="mid", settings={"align_lambda": 1.0}),
                _record("Case I far λ=1", "case1", 0, far_nll, proxy="far", settings={"align_lambda": 1.0})]

    (ok,) = check(records(far_nll=2.0)).proxies
    assert ok.measured == ["near", "mid", "far"] and ok.matches and ok.predicted_text() == "mid ≈ near < far"
    assert "mid ≈ near < far" in markdown(check(records(far_nll=2.0))) and "intervals overlap" in markdown(
        check(records(far_nll=2.0)))
    (miss,) = check(records(far_nll=0.32)).proxies
    assert miss.measured == ["near", "far", "mid"] and not miss.matches


# -------------------------------------------------------------------------------------- on the toy world
@pytest.fixture
def toy_env(toy_world, toy_cache, monkeypatch):
    monkeypatch.setenv("SAFETY_TRADEOFF_CACHE", toy_cache)
    return toy_world


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "safety_tradeoff.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def test_diagnose_command_on_the_toy_world(tmp_path, toy_env):
    out = tmp_path / "diag.json"
    proc = _cli("diagnose", "--model", "toyworld:aligned", "--safety", "toyworld:eval/alignment",
                "--proxy", "near=toyworld:proxy_near", "--proxy", "far=toyworld:proxy_far",
                "--task", "high=toyworld:task_high_overlap", "--task", "low=toyworld:task_low_overlap",
                "--radius", "1", "--set", "bootstrap=50", "--set", "fit_steps=30", "--set", "fit_learning_rate=1e-3",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    diag = json.loads(out.read_text())
    near, far = diag["proxies"]["near"], diag["proxies"]["far"]
    assert near["cross_loss_gap"]["high"] < far["cross_loss_gap"]["low"]
    assert near["similarity"]["value"] > far["similarity"]["value"]
    assert diag["tasks"]["high"]["similarity"]["value"] > diag["tasks"]["low"]["similarity"]["value"]
    assert diag["predicted"]["proxy_order"] == ["near", "far"] and diag["predicted"]["task_order"] == ["low", "high"]
    land = diag["landscape"]
    assert land["converged"] and land["grad_norm"] > 0 and land["beta"] > 0
    assert diag["predicted"]["bounds"]["1"] == pytest.approx(land["grad_norm"] + land["beta"] / 2)
    assert "Case II bound" in proc.stdout and "cross-loss gap" in proc.stdout

    bad = _cli("diagnose", "--model", "toyworld:aligned", "--safety", "toyworld:eval/alignment", "--proxy", "near")
    assert bad.returncode == 2 and "--proxy expects NAME=DATASET" in bad.stderr
    bad = _cli("diagnose", "--model", "toyworld:aligned", "--safety", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("diagnose", "--model", str(tmp_path), "--safety", "toyworld:eval/alignment")
    assert bad.returncode == 2 and "not a model folder" in bad.stderr
    bad = _cli("diagnose", "--model", "toyworld:aligned", "--safety", "toyworld:eval/alignment", "--set", "seed=x")
    assert bad.returncode == 2 and "seed: must be an integer" in bad.stderr



def test_runs_ranked_by_their_pilots_with_overlapping_pilot_intervals_tied():
    """The pilot read-outs order the same comparisons as the diagnostics: near and mid pilots whose intervals
    overlap are tied (either final order agrees), far is separated; the low-overlap pilot is clearly below the
    high-overlap one, so a final G_s the other way round is a miss. Runs without a pilot are not ranked."""
    diag = _diag(grad_norm=0.1, beta=1.0, proxy_order=["near", "mid", "far"], task_order=["low", "high"])

    def run(name, method, nll, pilot, half, **kw):
        r = _record(name, method, 0, nll, **kw)
        r.metrics.update(pilot_gap=pilot, pilot_gap_low=pilot - half, pilot_gap_high=pilot + half, pilot_step=50.0)
        return r

    lam = {"align_lambda": 1.0}
    records = [_record("aligned θ₀", "aligned", 0, 0.5), _record("diagnostics", "diagnostics", 0, None, diagnostics=diag),
               run("Case I near λ=1", "case1", 0.52, 0.015, 0.01, proxy="near", settings=lam),  # [0.005, 0.025]
               run("Case I mid λ=1", "case1", 0.51, 0.010, 0.01, proxy="mid", settings=lam),   # [0.000, 0.020]
               run("Case I far λ=1", "case1", 0.90, 0.300, 0.05, proxy="far", settings=lam),
               run("plain SFT", "sft", 0.83, 0.30, 0.02, task="toyworld:high"),
               run("plain SFT low", "sft", 0.90, 0.20, 0.02, task="toyworld:low")]
    result = check(records)
    (proxy,) = result.pilot_proxies
    assert proxy.predicted_text() == "mid ≈ near < far" and proxy.measured == ["mid", "near", "far"] and proxy.matches
    (task,) = result.pilot_tasks
    assert task.predicted == ["low", "high"] and not task.tied and task.measured == ["high", "low"]
    assert not task.matches
    summary = result.summary()
    assert (summary["pilot_proxy_order_matches"], summary["pilot_proxy_comparisons"]) == (1, 1)
    assert (summary["pilot_task_order_matches"], summary["pilot_task_comparisons"]) == (0, 1)
    text = markdown(result)
    assert "Context-overlap ordering, pilot read-out: predicted order matches the measured one in 0/1" in text
    records[-1].metrics.pop("pilot_gap")  # one run without a pilot: that comparison has no pilot prediction
    assert check(records).pilot_tasks == [] and len(check(records).tasks) == 1


def test_measured_differences_within_noise_are_ties_not_misses():
    """A pilot order against final G_s that differ by less than their noise: the end-of-run intervals (placed
    around the evaluation's G_s) overlap, so the measured order is a tie and the prediction is not a miss; the
    strict count, every difference at face value, still calls it one. Separated intervals keep the miss."""
    diag = _diag(grad_norm=0.1, beta=1.0, proxy_order=["near", "mid"], task_order=["low", "high"])

    def run(name, nll, pilot, final_half, proxy):
        r = _record(name, "case1", 0, nll, proxy=proxy, settings={"align_lambda": 0.1})
        # the pilot's own end-of-run G_s is 0.001 off the evaluation's: the interval is placed around the latter
        r.metrics.update(pilot_gap=pilot, pilot_gap_low=pilot - 0.001, pilot_gap_high=pilot + 0.001, pilot_step=50.0,
                         final_gap=nll - 0.5 + 0.001, final_gap_low=nll - 0.5 + 0.001 - final_half,
                         final_gap_high=nll - 0.5 + 0.001 + final_half)
        return r

    def pilot_order(half):
        records = [_record("aligned θ₀", "aligned", 0, 0.5),
                   _record("diagnostics", "diagnostics", 0, None, diagnostics=diag),
                   run("Case I near λ=0.1", 0.505, 0.020, half, "near"),   # final +0.005, pilot above mid's
                   run("Case I mid λ=0.1", 0.506, 0.010, half, "mid")]     # final +0.006
        (order,) = check(records).pilot_proxies
        return order, check(records)

    order, result = pilot_order(0.003)  # [0.002, 0.008] and [0.003, 0.009]: overlapping
    assert order.predicted == ["mid", "near"] and order.measured == ["near", "mid"]
    assert order.measured_tied == {frozenset(("near", "mid"))} and order.measured_text() == "near ≈ mid"
    assert order.matches and not order.matches_strict
    summary = result.summary()
    assert (summary["pilot_proxy_order_matches"], summary["pilot_proxy_order_matches_strict"]) == (1, 0)
    text = markdown(result)
    assert "matches the measured one in 1/1 comparisons; 0/1 taking every measured difference at face value" in text
    assert "| near ≈ mid |" in text
    order, _ = pilot_order(0.0003)  # [0.0047, 0.0053] and [0.0057, 0.0063]: apart, the miss stands
    assert not order.measured_tied and not order.matches
