"""The papers' claims checked on results (safety_tradeoff/report/claims.py), on hand-made records whose
expected verdicts follow from the numbers written here."""
from __future__ import annotations

import itertools

import pytest
from scipy.stats import spearmanr

from safety_tradeoff.report import build_report
from safety_tradeoff.report.claims import FAILS, HOLDS, UNMEASURED, _spearman, check_claims
from safety_tradeoff.results import RunRecord

HIGH, LOW = "toyworld@{s}:task_high_overlap", "toyworld@{s}:task_low_overlap"
_ids = itertools.count()


def rec(name: str, method: str, seed: int, *, harmful: float, nll: float, task: float = 1.0,
        compliance: float | None = None, proxy: str | None = None, strength: float | None = None,
        task_data: str = HIGH, settings: dict | None = None) -> RunRecord:
    key = {"case1": "align_lambda", "case2": "anchor_lambda", "ema": "ema_beta"}.get(method)
    return RunRecord(
        run_id=f"r{next(_ids)}", name=name, method=method, seed=seed, group=name.split(" λ")[0].split(" β")[0],
        strength_key=key, strength=strength, proxy=proxy,
        config={"task_dataset": task_data.format(s=seed), "settings": settings or {},
                "training": {"learning_rate": 1e-3, "per_device_train_batch_size": 32, "max_steps": 150}},
        metrics={"harmful_rate": harmful, "alignment_nll": nll, "task_accuracy": task,
                 "compliance_rate": harmful if compliance is None else compliance})


def world(seed: int, sft_harmful: float = 0.6, **kw) -> list[RunRecord]:
    """One seed of a sweep where every claim holds unless a keyword changes a number."""
    return [
        rec("aligned θ₀", "aligned", seed, harmful=kw.get("aligned_harmful", 0.02), nll=0.50, task=0.0),
        rec("plain SFT", "sft", seed, harmful=sft_harmful, nll=1.50),
        rec("plain SFT (low)", "sft", seed, harmful=kw.get("low_harmful", 0.3), nll=kw.get("low_nll", 1.2),
            compliance=kw.get("low_compliance", 0.25), task_data=LOW),
        rec("Case I near λ=0.1", "case1", seed, harmful=0.2, nll=0.9, proxy="near", strength=0.1),
        rec("Case I near λ=1", "case1", seed, harmful=0.1, nll=0.7, task=0.98, proxy="near", strength=1.0),
        rec("Case I far λ=0.1", "case1", seed, harmful=0.4, nll=1.3, proxy="far", strength=0.1),
        rec("Case I far λ=1", "case1", seed, harmful=0.3, nll=kw.get("far_nll", 1.1), proxy="far", strength=1.0),
        rec("Case II λ=1", "case2", seed, harmful=kw.get("case2_harmful", 0.35), nll=1.0, task=0.7, strength=1.0),
        rec("EMA β=0.99", "ema", seed, harmful=kw.get("ema_harmful", 0.25), nll=0.9,
            task=kw.get("ema_task", 0.97), strength=0.99),
    ]


def verdicts(records: list[RunRecord]) -> dict[str, str]:
    return {c.key: c.verdict for c in check_claims(records)}


def test_every_claim_holds_where_the_numbers_say_so():
    got = verdicts(world(0) + world(1, sft_harmful=0.7))
    assert got == {"a": HOLDS, "b": HOLDS, "c": HOLDS, "d": HOLDS, "e": HOLDS, "f": HOLDS, "g": UNMEASURED}


@pytest.mark.parametrize("change, claim", [
    ({"sft_harmful": 0.97}, "a"),             # saturated: mean above 85%
    ({"aligned_harmful": 0.55}, "a"),         # a rise of 5 points, under the 10 required
    ({"far_nll": 1.6}, "b"),                  # far G_s rises from λ=0.1 (0.8) to λ=1 (1.1)
    ({"far_nll": 0.6}, "c"),                  # far below near at λ=1 (0.1 vs 0.2)
    ({"low_nll": 1.6}, "d"),                  # low overlap loses more alignment loss
    ({"low_harmful": 0.7}, "d"),              # low overlap more harmful
    ({"low_compliance": 0.1}, "d"),           # 20% of its outputs neither refuse nor comply: garble
    ({"case2_harmful": 0.05}, "e"),           # Case II safer than every Case I run: not dominated
    ({"ema_harmful": 0.31}, "f"),             # 0.31 > 0.6 / 2
    ({"ema_task": 0.94}, "f"),                # 6 points of task accuracy lost
])
def test_a_claim_fails_when_its_numbers_do(change, claim):
    got = verdicts(world(0, **change))
    assert got[claim] == FAILS, got
    assert all(v == HOLDS for k, v in got.items() if k not in (claim, "g")), got


def test_regime_claim_uses_rank_correlation_and_spread():
    """(g): four plain-SFT regimes; the harmful rate must rank like G_s (ρ ≥ 0.5) and move ≥ 20 points."""
    regimes = [(3e-4, 32), (3e-3, 32), (1e-3, 8), (3e-3, 8)]  # and the sweep's own (1e-3, 32): 0.6, G_s 1.0
    nlls = [1.0, 1.4, 1.2, 1.9]

    def sweep(harmfuls: list[float]) -> list[RunRecord]:
        out = world(0)
        for (lr, bs), nll, h in zip(regimes, nlls, harmfuls):
            out.append(rec(f"plain SFT lr={lr} bs={bs}", "sft", 0, harmful=h, nll=nll,
                           settings={"learning_rate": lr, "per_device_train_batch_size": bs}))
        return out

    follows = [0.2, 0.5, 0.3, 0.8]  # same order as G_s: ρ = 1, spread 60 points
    claim = next(c for c in check_claims(sweep(follows)) if c.key == "g")
    assert claim.verdict == HOLDS and "ρ(harmful, G_s) = 1.00" in claim.detail, claim
    flat = [0.50, 0.52, 0.51, 0.55]  # ranks agree but the rate hardly moves
    assert next(c for c in check_claims(sweep(flat)) if c.key == "g").verdict == FAILS
    reversed_ = [0.8, 0.3, 0.5, 0.2]
    assert next(c for c in check_claims(sweep(reversed_)) if c.key == "g").verdict == FAILS


@pytest.mark.parametrize("xs, ys", [([0.1, 0.5, 0.3, 0.9, 0.2], [1.0, 3.0, 2.0, 2.0, 0.5]),
                                    ([1, 1, 2, 3], [4, 3, 3, 1]), ([0.3, 0.1, 0.2], [0.1, 0.2, 0.3])])
def test_spearman_matches_scipy_with_ties(xs, ys):
    assert _spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic)


def test_claims_are_unmeasured_without_the_runs_they_compare():
    only = [rec("aligned θ₀", "aligned", 0, harmful=0.02, nll=0.5, task=0.0),
            rec("plain SFT", "sft", 0, harmful=0.5, nll=1.5)]
    got = verdicts(only)
    assert got["a"] == HOLDS and all(got[k] == UNMEASURED for k in "bcdefg"), got
    assert check_claims([rec("plain SFT", "sft", 0, harmful=0.5, nll=1.5)]) == []  # no aligned model


def test_the_report_summary_states_each_claim(tmp_path):
    report = build_report(world(0) + world(1), tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "## Claims of the papers" in text
    assert "**(a) holds**" in text and "seed 0: 2.0% → 60.0%" in text
    assert "**(g) not measured**" in text
    assert report.summary == text
    build_report([rec("ckpt", "sft", 0, harmful=0.5, nll=1.5)], tmp_path / "board")
    assert "Claims of the papers" not in (tmp_path / "board" / "summary.md").read_text()


def test_overlap_order_comes_from_the_diagnostics_when_names_do_not_say():
    """(d) with task mixes named neither high nor low: the diagnostics' predicted order (least similar to the
    safety data first) says which is the lower-overlap one; without diagnostics the claim is unmeasured."""
    records = [r for r in world(0) if r.method in ("aligned", "sft")]
    for r in records:
        r.config["task_dataset"] = r.config["task_dataset"].replace("task_high_overlap", "mix_a").replace(
            "task_low_overlap", "mix_b")
    assert verdicts(records)["d"] == UNMEASURED
    diag = RunRecord(run_id="d0", name="diagnostics", method="diagnostics", seed=0, config={"diagnostics": {
        "tasks": {"mix_a": {"spec": "toyworld@0:mix_a"}, "mix_b": {"spec": "toyworld@0:mix_b"}},
        "predicted": {"task_order": ["mix_b", "mix_a"], "proxy_order": []}}})
    claim = next(c for c in check_claims(records + [diag]) if c.key == "d")
    assert claim.verdict == HOLDS and "G_s +1.00 → +0.70" in claim.detail, claim


def test_a_rising_proxy_curve_is_explained_by_its_cross_loss_end_point():
    """far's G_s does not fall with λ (1.0 → 0.8 → 1.6 over λ = 0 (plain SFT), 0.1, 1) and its cross-loss gap at θ₀
    (mean over seeds (1.4 + 1.8) / 2 = 1.6) lies above plain SFT's G_s: claim (b) says why it cannot hold for far;
    near, which falls, gets no such note, nor does far without diagnostics."""
    def diag(seed, far_gap):
        proxies = {"near": {"cross_loss_gap": {"value": 0.01}}, "far": {"cross_loss_gap": {"value": far_gap}}}
        return RunRecord(run_id=f"d{seed}", name="diagnostics", method="diagnostics", seed=seed,
                         config={"diagnostics": {"proxies": proxies}}, metrics={})

    records = world(0, far_nll=2.1) + world(1, far_nll=2.1)
    (b,) = [c for c in check_claims(records) if c.key == "b"]
    assert b.verdict == FAILS and "end point" not in b.detail
    (b,) = [c for c in check_claims(records + [diag(0, 1.4), diag(1, 1.8)]) if c.key == "b"]
    assert "cross-loss gap +1.600" in b.detail and "drives G_s up towards it" in b.detail
    assert b.detail.count("end point") == 1 and b.detail.index("end point") < b.detail.index("near:")


@pytest.mark.parametrize("half_width, levels_off", [(0.015, True), (0.005, False)])
def test_a_flat_proxy_curve_is_said_to_level_off_only_where_the_runs_intervals_overlap(half_width, levels_off):
    """near's G_s falls from plain SFT's (1.0) to 0.4 at λ = 0.1, then rises to 0.42 at λ = 1: not a fall.
    Each run's G_s interval is ±half_width around it, so the two overlap iff 2·half_width ≥ 0.02: with ±0.015
    the rise is within noise and (b) says G_s levels off; with ±0.005 it is a measured rise and (b) says nothing."""
    records = world(0)
    for r in records:
        if r.proxy == "near" and r.strength == 1.0:
            r.metrics["alignment_nll"] = 0.92  # G_s 0.42 (aligned 0.50)
        if r.method != "aligned":
            gap = r.metrics["alignment_nll"] - 0.50
            # the pilot's own estimate sits off the evaluation's G_s; only the interval's width around it counts
            r.metrics.update(final_gap=gap + 0.1, final_gap_low=gap + 0.1 - half_width,
                             final_gap_high=gap + 0.1 + half_width)
    (b,) = [c for c in check_claims(records) if c.key == "b"]
    assert b.verdict == FAILS
    near = b.detail[b.detail.index("near:"):]
    assert "near: λ=0 +1.000, λ=0.1 +0.400, λ=1 +0.420 (does not fall" in near
    assert ("each of the 1 per-seed steps where it does not fall is within noise" in near) is levels_off, b.detail
    assert "levels off" not in b.detail[:b.detail.index("near:")]  # far falls: no note
