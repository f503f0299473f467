"""The EMA and the Hub / best-model paths: what `push_to_hub()`, the checkpoint pushes of `push_to_hub=True` and
`load_best_model_at_end` hand out is θ̄ (as `ema_save` says), never the live weights by accident.

No Hub access: `huggingface_hub.HfApi.create_repo`/`upload_folder`, the network boundary, are replaced by a recorder
that copies the folder it is asked to upload; everything above it (transformers, TRL) runs as is."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, RepoUrl
from safetensors.torch import load_file
from tiny_models import EXACT_ARGS, load_tiny, make_args, task_messages, tiny_model_dir, trainable_params

from safety_tradeoff.trainer import EMA_NAME, EMAConfig, EMASFTTrainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


class Uploads:
    """Records every upload as a copy of the folder at the time of the call."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[dict] = []

    def create_repo(self, api, repo_id, *args, **kwargs):
        return RepoUrl(f"https://huggingface.co/tester/{Path(repo_id).name}")

    def upload_folder(self, api, *, repo_id, folder_path, path_in_repo=None, run_as_future=False, **kwargs):
        copy = self.root / f"upload-{len(self.calls)}"
        shutil.copytree(folder_path, copy, ignore=shutil.ignore_patterns("_*", "checkpoint-*")
                        if path_in_repo is None else None)
        self.calls.append({"repo_id": repo_id, "path_in_repo": path_in_repo, "copy": copy, **kwargs})
        if not run_as_future:
            return None
        done = concurrent.futures.Future()
        done.set_result(None)
        return done


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    recorder = Uploads(tmp_path / "hub")
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *a, **k: recorder.create_repo(api, *a, **k))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, *a, **k: recorder.upload_folder(api, *a, **k))
    return recorder


def ema_trainer(tiny, output_dir, **overrides):
    model, tok = load_tiny(tiny)
    args = make_args(EMAConfig, output_dir, **{**EXACT_ARGS, "learning_rate": 0.1, "ema_beta": 0.5, **overrides})
    return EMASFTTrainer(model=model, args=args, train_dataset=task_messages(), eval_dataset=task_messages(8, seed=5),
                         processing_class=tok)


def weights_in(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same(saved: dict, expected: dict) -> bool:
    return set(expected) <= set(saved) and all(torch.equal(saved[k], v) for k, v in expected.items())


@pytest.mark.parametrize("ema_save", ["ema", "both"])
def test_push_to_hub_uploads_ema_weights(tiny, tmp_path, uploads, ema_save):
    trainer = ema_trainer(tiny, str(tmp_path / "out"), ema_save=ema_save)
    trainer.train()
    ema, live = trainer.ema_state_dict(), trainable_params(trainer)
    assert not same(ema, live)
    trainer.save_model()
    trainer.push_to_hub()
    (call,) = uploads.calls
    assert same(weights_in(call["copy"]), ema)
    if ema_save == "both":
        assert same(weights_in(call["copy"] / "live"), live)
    assert same(trainable_params(trainer), live)  # the live weights are back in the model


def test_save_model_with_push_to_hub_uploads_ema_weights(tiny, tmp_path, uploads):
    trainer = ema_trainer(tiny, str(tmp_path / "out"), push_to_hub=True, hub_model_id="tester/ema",
                          hub_strategy="end")
    trainer.train()
    trainer.save_model()
    assert len(uploads.calls) == 1
    assert same(weights_in(uploads.calls[0]["copy"]), trainer.ema_state_dict())


def test_checkpoint_pushes_upload_ema_weights_and_a_resumable_checkpoint(tiny, tmp_path, uploads):
    out = tmp_path / "out"
    trainer = ema_trainer(tiny, str(out), push_to_hub=True, hub_model_id="tester/ema", hub_strategy="checkpoint",
                          save_strategy="steps", save_steps=2, max_steps=4)
    trainer.train()
    roots = [c for c in uploads.calls if c["path_in_repo"] is None]
    checkpoints = [c for c in uploads.calls if c["path_in_repo"] == "last-checkpoint"]
    assert len(roots) == len(checkpoints) == 2
    for step, root, pushed in zip((2, 4), roots, checkpoints, strict=True):
        saved_ema = torch.load(out / f"checkpoint-{step}" / EMA_NAME, weights_only=True)
        saved_live = weights_in(out / f"checkpoint-{step}")
        assert not same(saved_ema, saved_live)
        assert same(weights_in(root["copy"]), saved_ema)  # the repository's model is θ̄ ...
        assert same(weights_in(pushed["copy"]), saved_live)  # ... its last-checkpoint the live weights to resume
        assert (pushed["copy"] / EMA_NAME).is_file()
        assert not any(p.name.startswith("_") for p in root["copy"].iterdir())


def test_load_best_model_at_end_restores_the_best_checkpoints_ema(tiny, tmp_path):
    out = tmp_path / "out"
    # greater_is_better on a loss: the best checkpoint is an early one, not the last (else nothing is tested)
    trainer = ema_trainer(tiny, str(out), max_steps=4, eval_strategy="steps", eval_steps=1, save_strategy="steps",
                          save_steps=1, load_best_model_at_end=True, metric_for_best_model="eval_loss",
                          greater_is_better=True)
    trainer.train()
    best = Path(trainer.state.best_model_checkpoint)
    assert best.name != "checkpoint-4"
    best_ema = torch.load(best / EMA_NAME, weights_only=True)
    assert same(trainer.ema_state_dict(), best_ema)
    assert same(weights_in(best), trainable_params(trainer))
    trainer.save_model(str(tmp_path / "final"))
    assert same(weights_in(tmp_path / "final"), best_ema)
    assert os.path.isdir(best)
