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
