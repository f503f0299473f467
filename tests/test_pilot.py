"""The pilot read-out (safety_tradeoff/diagnostics/pilot.py): G_s on D_s part-way through a real TRL run.

The recorded gap is checked against an independent measurement: the same run stopped at the pilot step, scored
with the model's own loss (transformers' token-mean cross-entropy over one batch holding all of D_s)."""
from __future__ import annotations

import pytest
import torch
from tiny_models import CPU_ARGS, EXACT_ARGS, load_tiny, safety_prompt_completion, task_messages, tiny_model_dir

from safety_tradeoff.diagnostics.examples import encode_pairs, make_batches, pad_id_of
from safety_tradeoff.diagnostics.pilot import SafetyGapCallback, pilot_step
from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


def _pairs() -> list[tuple[str, str]]:
    return [(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in safety_prompt_completion(n=8)]


def _trainer(tiny, tmp_path, steps, callbacks=None, **settings):
    model, tok = load_tiny(tiny)
    args = SafetySFTConfig(**{**CPU_ARGS, **EXACT_ARGS, "output_dir": str(tmp_path), "max_steps": steps,
                              "per_device_train_batch_size": 4, "learning_rate": 0.3, **settings})
    return SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(16), processing_class=tok,
                          callbacks=callbacks)


def _train(tiny, tmp_path, steps, callbacks=None):
    trainer = _trainer(tiny, tmp_path, steps, callbacks)
    trainer.train()
    return trainer.model, trainer.processing_class


def _hf_loss(model, tok) -> float:
    """Token-mean NLL of D_s's responses, by transformers itself on a single batch."""
    (batch,) = make_batches(encode_pairs(tok, _pairs(), 64), 64, pad_id_of(tok), "cpu")
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).loss)


def test_pilot_gap_equals_the_gap_of_the_run_stopped_there(tiny, tmp_path):
    _, tok = load_tiny(tiny)
    batches = make_batches(encode_pairs(tok, _pairs(), 64), 3, pad_id_of(tok), "cpu")  # several batches
    pilot = SafetyGapCallback(batches, fraction=0.5)
    full, _ = _train(tiny, tmp_path / "full", 6, [pilot])
    assert pilot.step == 3 and set(pilot.gaps) == {3}
    theta0, _ = load_tiny(tiny)
    stopped, _ = _train(tiny, tmp_path / "stopped", 3)  # constant learning rate: the same first 3 steps
    expected = _hf_loss(stopped, tok) - _hf_loss(theta0, tok)
    assert abs(expected) > 1e-3  # the run moved L_s: the comparison means something
    assert pilot.gaps[3] == pytest.approx(expected, abs=1e-5)
    low, high = pilot.intervals[3]  # a bootstrap interval around it, over D_s's 8 examples
    assert low < pilot.gaps[3] < high
    undisturbed, _ = _train(tiny, tmp_path / "plain", 6)  # scoring mid-run changes nothing in training
    for a, b in zip(full.parameters(), undisturbed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("max_steps, fraction, step", [(150, 1 / 3, 50), (10, 0.25, 2), (3, 0.9, 2), (2, 0.1, 1),
                                                       (150, 0.0, None), (1, 0.5, None)])
def test_pilot_step(max_steps, fraction, step):
    assert pilot_step(max_steps, fraction) == step


def test_ema_runs_are_read_at_the_averaged_weights(tiny, tmp_path):
    """With the trainer's ``ema_weights`` the pilot scores θ̄ (what an EMA run is evaluated at), not θ."""
    _, tok = load_tiny(tiny)
    batches = make_batches(encode_pairs(tok, _pairs(), 64), 3, pad_id_of(tok), "cpu")
    pilot = SafetyGapCallback(batches, fraction=0.5)
    trainer = _trainer(tiny, tmp_path / "full", 6, [pilot], ema_beta=0.7)
    pilot.weights = trainer.ema_weights
    trainer.train()
    theta0, _ = load_tiny(tiny)
    stopped = _trainer(tiny, tmp_path / "stopped", 3, ema_beta=0.7)
    stopped.train()
    live = _hf_loss(stopped.model, tok)
    with stopped.ema_weights():
        averaged = _hf_loss(stopped.model, tok)
    assert abs(averaged - live) > 1e-4  # θ̄ and θ differ: the check tells them apart
    assert pilot.gaps[3] == pytest.approx(averaged - _hf_loss(theta0, tok), abs=1e-5)


def _task_pairs() -> list[tuple[str, str]]:
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in task_messages(16)]


def test_case2_equilibrium_is_the_objective_minimum_along_the_pilot_ray(tiny, tmp_path):
    """A Case II run (λ = 0.5) predicts its equilibrium at the pilot step: recomputed here by hand from the same
    run stopped there, with transformers' own loss for L_task (one batch holding all the task pairs) and for L_s,
    and the distance from torch's norm of the flattened difference. Training is not disturbed by the scan."""
    lam = 0.5
    _, tok = load_tiny(tiny)
    safety = make_batches(encode_pairs(tok, _pairs(), 64), 3, pad_id_of(tok), "cpu")
    task = make_batches(encode_pairs(tok, _task_pairs(), 64), 5, pad_id_of(tok), "cpu")
    pilot = SafetyGapCallback(safety, fraction=0.5)
    pilot.predict_equilibrium(lam, task)
    trainer = _trainer(tiny, tmp_path / "full", 6, [pilot], anchor_lambda=lam)
    trainer.train()
    (eq,) = pilot.equilibria.values()

    theta0, _ = load_tiny(tiny)
    stopped = _trainer(tiny, tmp_path / "stopped", 3, anchor_lambda=lam)  # constant learning rate: the same 3 steps
    stopped.train()
    model = stopped.model
    start = [p.detach().clone() for p in theta0.parameters()]
    end = [p.detach().clone() for p in model.parameters()]
    r = torch.cat([(b - a).flatten() for a, b in zip(start, end)]).double().norm().item()
    (task_batch,) = make_batches(encode_pairs(tok, _task_pairs(), 64), 64, pad_id_of(tok), "cpu")

    def at(t):
        with torch.no_grad():
            for p, a, b in zip(model.parameters(), start, end):
                p.copy_(a + t * (b - a))
        model.eval()
        with torch.no_grad():
            task_loss = float(model(input_ids=task_batch["input_ids"], attention_mask=task_batch["attention_mask"],
                                    labels=task_batch["labels"]).loss)
        return task_loss + lam / 2 * (t * r) ** 2, _hf_loss(model, tok)

    grid = [1.5 * i / 30 for i in range(31)]
    values = {t: at(t) for t in grid}
    t_star = min(grid, key=lambda t: values[t][0])
    assert 0 < t_star < 1.5  # an interior minimum: the penalty and the task balance on the ray
    assert eq.t == pytest.approx(t_star) and eq.radius == pytest.approx(t_star * r, rel=1e-5)
    assert eq.gap == pytest.approx(values[t_star][1] - _hf_loss(theta0, tok), abs=1e-5)
    # SGD at a constant 0.3 for the 3 steps left: κ = λ·Σ lr = 0.5·0.9 < 1, so the ray is the prediction
    assert pilot.efolds[3] == pytest.approx(lam * 0.3 * 3) and pilot.rows == {}
    assert pilot.prediction(3) == (eq.gap, eq.radius)

    undisturbed = _trainer(tiny, tmp_path / "plain", 6, anchor_lambda=lam)
    undisturbed.train()
    for a, b in zip(trainer.model.parameters(), undisturbed.model.parameters()):
        assert torch.equal(a, b)


def test_equilibrium_needs_task_data():
    pilot = SafetyGapCallback([{"input_ids": torch.zeros(1, 2)}], fraction=0.5)
    with pytest.raises(ValueError, match="no task batches"):
        pilot.predict_equilibrium(0.1, [])


def test_no_equilibrium_for_a_lora_run(tiny, tmp_path, capsys):
    """With LoRA the penalty can act on the merged update, which the ray does not model: the pilot still reads
    G_s, and says why it predicts no equilibrium."""
    from peft import LoraConfig

    model, tok = load_tiny(tiny)
    safety = make_batches(encode_pairs(tok, _pairs(), 64), 3, pad_id_of(tok), "cpu")
    pilot = SafetyGapCallback(safety, fraction=0.5)
    pilot.predict_equilibrium(0.5, make_batches(encode_pairs(tok, _task_pairs(), 64), 5, pad_id_of(tok), "cpu"))
    args = SafetySFTConfig(**{**CPU_ARGS, **EXACT_ARGS, "output_dir": str(tmp_path), "max_steps": 4,
                              "per_device_train_batch_size": 4, "learning_rate": 0.3, "anchor_lambda": 0.5})
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(16), processing_class=tok,
                   peft_config=lora, callbacks=[pilot]).train()
    assert set(pilot.gaps) == {2} and pilot.equilibria == {}
    assert "no Case II equilibrium prediction for a PEFT model" in capsys.readouterr().out


def test_case2_row_equilibrium_minimises_the_objective_over_row_shares(tiny, tmp_path):
    """With a penalty that relaxes θ within the run (SGD at 0.3 for 3 more steps, λ = 2: κ = 1.8 ≥ 1) the pilot
    predicts from per-row shares of its displacement. Recomputed here independently of its chain rule: θ(s) =
    θ₀ + s⊙d built with torch.func.functional_call from the run stopped at the pilot step, transformers' own loss
    for L_task and L_s, torch's norm of the flattened difference for the penalty, and autograd for the gradient."""
    from torch.func import functional_call

    lam = 2.0
    _, tok = load_tiny(tiny)
    safety = make_batches(encode_pairs(tok, _pairs(), 64), 3, pad_id_of(tok), "cpu")
    task = make_batches(encode_pairs(tok, _task_pairs(), 64), 5, pad_id_of(tok), "cpu")
    pilot = SafetyGapCallback(safety, fraction=0.5)
    pilot.predict_equilibrium(lam, task)
    trainer = _trainer(tiny, tmp_path / "full", 6, [pilot], anchor_lambda=lam)
    trainer.train()
    assert pilot.efolds[3] == pytest.approx(lam * 0.3 * 3)
    rows = pilot.rows[3]

    theta0, _ = load_tiny(tiny)
    stopped = _trainer(tiny, tmp_path / "stopped", 3, anchor_lambda=lam)
    stopped.train()
    model = stopped.model.eval()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    start = dict(theta0.named_parameters())
    d = {n: (p.detach() - start[n].detach()) for n, p in model.named_parameters() if p.requires_grad}
    (task_batch,) = make_batches(encode_pairs(tok, _task_pairs(), 64), 64, pad_id_of(tok), "cpu")
    (safety_batch,) = make_batches(encode_pairs(tok, _pairs(), 64), 64, pad_id_of(tok), "cpu")

    def weights(shares):
        out = {}
        for n, s in zip(names, shares):
            x = d[n]
            scale = s.reshape(-1, *([1] * (x.dim() - 1))) if x.dim() > 1 else s
            out[n] = start[n].detach() + scale * x
        return out

    def objective(shares):
        w = weights(shares)
        loss = functional_call(model, w, args=(), kwargs={k: task_batch[k] for k in ("input_ids", "attention_mask",
                                                                                        "labels")}).loss
        sq = torch.cat([(w[n] - start[n].detach()).flatten() for n in names]).pow(2).sum()
        return loss + lam / 2 * sq

    found = [s.clone().requires_grad_(True) for s in rows.shares]
    ones = [torch.ones_like(s, requires_grad=True) for s in rows.shares]
    value, at_one = objective(found), objective(ones)
    assert float(value) == pytest.approx(rows.objective, rel=1e-5)
    ray_best = min(float(objective([torch.full_like(s, 1.5 * i / 30) for s in rows.shares])) for i in range(31))
    assert float(value) < min(float(at_one), ray_best)  # better than the pilot's weights and than the whole ray
    grad_found = torch.cat([g.flatten() for g in torch.autograd.grad(value, found)]).norm()
    grad_one = torch.cat([g.flatten() for g in torch.autograd.grad(at_one, ones)]).norm()
    assert grad_found < 0.05 * grad_one  # (near-)stationary in the shares

    with torch.no_grad():
        w = weights(rows.shares)
        radius = torch.cat([(w[n] - start[n]).flatten() for n in names]).double().norm().item()
        kwargs = {k: safety_batch[k] for k in ("input_ids", "attention_mask", "labels")}
        gap = float(functional_call(model, w, args=(), kwargs=kwargs).loss) - _hf_loss(theta0, tok)
    assert rows.radius == pytest.approx(radius, rel=1e-5) and rows.gap == pytest.approx(gap, abs=1e-5)

    undisturbed = _trainer(tiny, tmp_path / "plain", 6, anchor_lambda=lam)  # the scans change nothing in training
    undisturbed.train()
    for a, b in zip(trainer.model.parameters(), undisturbed.model.parameters()):
        assert torch.equal(a, b)


def _adamw_after(steps: int, beta2: float):
    """A real AdamW state after `steps` updates of two weights on a fixed quadratic, and a cosine schedule."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    opt = torch.optim.AdamW(params, lr=0.01, betas=(0.9, beta2), eps=1e-8)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=20)
    for i in range(steps):
        opt.zero_grad()
        sum(((p * (i + 1)) ** 2).sum() for p in params).backward()
        opt.step()
        sched.step()
    return params, opt, sched


def test_relaxation_efolds_through_adam_sgd_and_a_decoupled_pull():
    """κ = λ·Σ lr over the updates left, divided per weight by Adam's bias-corrected √v̂ (median), recomputed
    from the cosine formula and the optimizer's raw state; plain λ·Σ lr for a decoupled pull and for SGD."""
    import math

    from safety_tradeoff.diagnostics.equilibrium import relaxation_efolds, remaining_lr_sum

    lam, beta2, step, total = 0.3, 0.98, 6, 20
    params, opt, sched = _adamw_after(step, beta2)
    lr_left = sum(0.01 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(step, total))
    assert remaining_lr_sum(opt, sched, step, total) == pytest.approx(lr_left, rel=1e-9)
    v_hat = torch.cat([opt.state[p]["exp_avg_sq"].flatten() for p in params]) / (1 - beta2 ** step)
    expected = float((lam * lr_left / (v_hat.sqrt() + 1e-8)).median())
    assert relaxation_efolds(opt, sched, params, lam, step, total) == pytest.approx(expected, rel=1e-6)
    assert relaxation_efolds(opt, sched, params, lam, step, total, "decoupled") == pytest.approx(lam * lr_left)
    sgd = torch.optim.SGD(params, lr=0.02)
    assert relaxation_efolds(sgd, None, params, lam, step, total) == pytest.approx(lam * 0.02 * (total - step))
    fresh = torch.optim.AdamW(params, lr=0.01)  # no state yet: nothing to read, the ray is used
    assert relaxation_efolds(fresh, None, params, lam, 0, total) is None


@pytest.mark.parametrize("kappa, ray_gap, expected", [
    (0.5, 0.04, "ray"),     # under one e-fold of relaxation left: the ray (the rows are not computed then)
    (2.0, 0.04, "mean"),    # part-way relaxed: the geometric mean, here sqrt(0.01 · 0.04) = 0.02
    (2.0, -0.01, "rows"),   # ... unless a G_s is not positive (no geometric mean): the rows
    (6.0, 0.04, "rows"),    # relaxed: the rows
    (None, 0.04, "rows"),   # κ unread (optimizer state unknown) with rows given: the rows
])
def test_forecast_by_relaxation(kappa, ray_gap, expected):
    import math

    from safety_tradeoff.diagnostics.equilibrium import RayEquilibrium, RowEquilibrium, forecast

    ray = RayEquilibrium(t=0.9, radius=0.9, gap=ray_gap)
    rows = None if expected == "ray" else RowEquilibrium(radius=0.4, gap=0.01, objective=0.0)
    want = {"ray": (ray_gap, 0.9), "rows": (0.01, 0.4), "mean": (math.sqrt(0.01 * 0.04), math.sqrt(0.4 * 0.9))}
    assert forecast(ray, rows, kappa) == pytest.approx(want[expected])
    assert forecast(None, None, kappa) is None
