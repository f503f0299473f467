"""How `LmEvalCallback` logs: its records go through the Trainer's logging without taking SFTTrainer's pending train
metrics, and without cancelling the training log of the step it runs at. (The evaluation itself, lm-eval on the
toy world, is tested in tests/test_lm_eval_callback.py; here it is replaced by fixed values.)"""

from __future__ import annotations

import pytest
from tiny_models import EXACT_ARGS, load_tiny, make_args, task_messages, tiny_model_dir

from safety_tradeoff.trainer import EMAConfig, EMASFTTrainer, LmEvalCallback

TRAIN_KEYS = ("loss", "entropy", "mean_token_accuracy", "num_tokens", "task_loss")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


class FixedEval(LmEvalCallback):
    def _evaluate(self) -> dict[str, float]:
        return {"task/metric,none": 0.25}


def run(tiny, output_dir, with_callback):
    model, tok = load_tiny(tiny)
    args = make_args(EMAConfig, output_dir, max_steps=4, logging_steps=2, ema_beta=0.5,
                     **{**EXACT_ARGS, "learning_rate": 0.3})
    trainer = EMASFTTrainer(model=model, args=args, train_dataset=task_messages(), processing_class=tok)
    if with_callback:
        trainer.add_callback(FixedEval(trainer, tasks=["safety_tradeoff_toy_harmful"], every_n_steps=1))
    trainer.train()
    return trainer


def test_lm_eval_logs_leave_the_training_logs_alone(tiny, tmp_path):
    reference = run(tiny, str(tmp_path / "a"), with_callback=False)
    trainer = run(tiny, str(tmp_path / "b"), with_callback=True)
    evals = [r for r in trainer.state.log_history if "lm_eval/task/metric,none" in r]
    assert [r["step"] for r in evals] == [1, 2, 3, 4]  # every step, and at the end of training
    assert all("lm_eval_ema/task/metric,none" in r for r in evals)
    for record in evals:
        assert not set(TRAIN_KEYS) & set(record), record  # SFTTrainer's pending train metrics stay where they were
    train = [r for r in trainer.state.log_history if "loss" in r]
    expected = [r for r in reference.state.log_history if "loss" in r]
    assert [r["step"] for r in train] == [r["step"] for r in expected] == [2, 4]
    for got, want in zip(train, expected, strict=True):
        for key in TRAIN_KEYS:
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
