"""The real-model tier: SmolLM2-135M-Instruct, prepared offline from its GGUF release, through every path the toy
world covers: every trainer mode, exact resume, gradient accumulation, the lm-eval command line on local copies in
the Hub datasets' column shapes, the diagnostics with a LoRA-restricted Hessian, the GPU recipes' CPU twins and the
real-model world's build. fp32 on the CPU, a few optimizer steps each."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny_models import StopAt, max_abs_diff, snapshot, trainable_params
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]

CPU = dict(report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False, max_length=96, seed=0,
           data_seed=0, disable_tqdm=True, logging_steps=1, save_strategy="no", dataloader_num_workers=0,
           per_device_train_batch_size=2, max_steps=2, learning_rate=1e-4, lr_scheduler_type="constant",
           warmup_steps=0)


@pytest.fixture(scope="module")
def world(real_world_data, toy_cache, monkeypatch_module):
    monkeypatch_module.setenv("SAFETY_TRADEOFF_CACHE", toy_cache)  # `smollm2:...` specs resolve into the test cache
    return real_world_data


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def rows(world, split: str, n: int) -> Dataset:
    return world.dataset(split).select(range(n))


def load(smollm2_dir):
    return (AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32),
            AutoTokenizer.from_pretrained(smollm2_dir))


def build(smollm2_dir, world, out, proxy=True, peft_config=None, callbacks=None, task_rows=8, **settings):
    model, tok = load(smollm2_dir)
    return SafeSFTTrainer(model=model, args=SafetySFTConfig(output_dir=str(out), **{**CPU, **settings}),
                          train_dataset=rows(world, "task_high_overlap", task_rows),
                          align_dataset=rows(world, "proxy_near", 8) if proxy else None,
                          processing_class=tok, peft_config=peft_config, callbacks=callbacks)


def logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ----------------------------------------------------------------------------------------------------------------------
def test_smollm2_is_a_real_chat_model_prepared_once(smollm2_dir, toy_cache):
    """A transformers folder with the real BPE tokenizer and ChatML template (default system prompt, no generation
    markers), tied embeddings, 134.5M parameters; asking again is a cache hit that fetches nothing."""
    from safety_tradeoff.named_models import model_folder

    info = json.loads((Path(smollm2_dir) / "safety_tradeoff_model.json").read_text())
    assert info["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert info["architecture"] == "llama" and info["parameters"] == 134_515_008
    model, tok = load(smollm2_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>assistant\n") and "{% generation %}" not in tok.chat_template
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    messages: list[str] = []
    again, source = model_folder("smollm2", source="gguf", cache_dir=Path(toy_cache) / "models", progress=messages.append)
    assert str(again) == smollm2_dir and source == "gguf" and messages == []


def test_greedy_generation_answers_in_english(smollm2_dir):
    from safety_tradeoff.toyworld.evaluate import greedy_generate

    model, tok = load(smollm2_dir)
    out = greedy_generate(model, tok, ["What is the capital of France?"], max_new_tokens=16)
    assert "Paris" in out[0], out


# ----------------------------------------------------------------------------------------------------------------------
MODES = {
    "case1_penalty": dict(align_lambda=0.5),
    "case1_constraint": dict(align_mode="constraint", align_lambda=0.5, align_epsilon=0.01, align_dual_lr=1.0),
    "case2_grad": dict(anchor_lambda=1.0, anchor_mode="grad"),
    "case2_loss_ball": dict(anchor_lambda=1.0, anchor_mode="loss", anchor_radius=0.05),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_full_finetuning_mode_trains_smollm2(mode, smollm2_dir, world, tmp_path):
    trainer = build(smollm2_dir, world, tmp_path, proxy=mode.startswith("case1"), **MODES[mode])
    before = trainable_params(trainer)
    trainer.train()
    after = trainable_params(trainer)
    assert max_abs_diff(before, after) > 0
    assert all(math.isfinite(v) for v in logged(trainer, "loss"))
    if mode.startswith("case1"):
        assert all(math.isfinite(v) for v in logged(trainer, "align_loss"))
    if mode == "case1_constraint":  # ε below any reachable loss: dual ascent must raise λ at every step
        lambdas = logged(trainer, "align_lambda")
        assert lambdas[-1] > MODES[mode]["align_lambda"], lambdas
    if mode.startswith("case2"):  # the distance, recomputed here from the weights
        dist = math.sqrt(sum(float((after[k] - before[k]).pow(2).sum()) for k in after))
        assert dist > 0
        if "anchor_radius" in MODES[mode]:
            assert dist <= MODES[mode]["anchor_radius"] * (1 + 1e-5), dist


def test_lora_merged_delta_ball_on_smollm2(smollm2_dir, world, tmp_path):
    """Case II on the merged LoRA delta: Σ‖get_delta_weight()‖² recomputed by peft stays inside the ball."""
    from peft import LoraConfig

    radius = 0.02
    trainer = build(smollm2_dir, world, tmp_path, proxy=False, learning_rate=1e-2, anchor_lambda=0.1,
                    anchor_mode="loss", anchor_radius=radius,
                    peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainer.train()
    sq = 0.0
    for module in trainer.model.modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "lora_A") and "default" in module.lora_A:
            sq += float(module.get_delta_weight("default").double().pow(2).sum())
    assert 0 < math.sqrt(sq) <= radius * (1 + 1e-4), math.sqrt(sq)


class Record(TrainerCallback):
    """The live weights after every optimizer step (for an independent EMA recurrence)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})


@pytest.mark.parametrize("ema_save", ["ema", "live", "both"])
def test_ema_saves_what_ema_save_says_on_smollm2(ema_save, smollm2_dir, world, tmp_path):
    """θ̄ after two steps is β²θ₀ + β(1−β)θ₁ + (1−β)θ₂ (β = 0.7, computed here from the recorded weights), and the
    saved folders hold θ̄ and/or θ exactly as `ema_save` says."""
    beta, record = 0.7, Record()
    trainer = build(smollm2_dir, world, tmp_path / "run", proxy=False, ema_beta=beta, ema_save=ema_save,
                    callbacks=[record])
    theta0 = trainable_params(trainer)
    trainer.train()
    t1, t2 = record.steps
    expected = {k: beta**2 * theta0[k] + beta * (1 - beta) * t1[k] + (1 - beta) * t2[k] for k in theta0}
    shadow = trainer.ema_state_dict()
    assert max_abs_diff({k: shadow[k] for k in expected}, expected) < 1e-6
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    saved = load_file(out / "model.safetensors")
    want_main = shadow if ema_save in ("ema", "both") else t2
    names = [k for k in expected if k in saved]
    assert names and max_abs_diff({k: saved[k] for k in names}, {k: want_main[k].to(saved[k].dtype) for k in names}) == 0
    assert (out / "live").exists() == (ema_save == "both")
    if ema_save == "both":
        live = load_file(out / "live" / "model.safetensors")
        assert max_abs_diff({k: live[k] for k in names}, {k: t2[k] for k in names}) == 0


# ----------------------------------------------------------------------------------------------------------------------
ALL = dict(align_mode="constraint", align_lambda=0.5, align_epsilon=0.5, align_dual_lr=0.5, anchor_lambda=0.5,
           anchor_radius=0.5, ema_beta=0.7)


def test_resume_is_bit_identical_on_smollm2(smollm2_dir, world, tmp_path):
    """Every mechanism at once, AdamW: stopped after step 2, resumed from checkpoint-2, ends exactly where the
    uninterrupted 3-step run ends (weights, θ₀, θ̄, dual λ, proxy-loader position)."""
    settings = dict(ALL, max_steps=3, save_strategy="steps", save_steps=2, optim="adamw_torch")
    full = build(smollm2_dir, world, tmp_path / "full", **{**settings, "save_strategy": "no"})
    full.train()
    want = snapshot(full)
    del full
    first = build(smollm2_dir, world, tmp_path / "cut", callbacks=[StopAt(2)], **settings)
    first.train()
    del first
    resumed = build(smollm2_dir, world, tmp_path / "cut", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-2"))
    got = snapshot(resumed)
    for key in ("params", "theta0", "ema"):
        assert max_abs_diff(got[key], want[key]) == 0.0, key
    assert got["align_lambda"] == want["align_lambda"] and got["align_position"] == want["align_position"]


def test_gradient_accumulation_matches_a_larger_batch_on_smollm2(smollm2_dir, world, tmp_path):
    """GA = 1 at batch 4 and GA = 2 at batch 2 take the same steps (SGD, no clipping: errors show 1:1), every
    mechanism on; they differ only by fp32 summation order."""
    exact = dict(ALL, optim="sgd", learning_rate=0.05, max_grad_norm=0.0)  # proxy batch = task batch
    one = build(smollm2_dir, world, tmp_path / "ga1", per_device_train_batch_size=4, gradient_accumulation_steps=1,
                **exact)
    one.train()
    two = build(smollm2_dir, world, tmp_path / "ga2", per_device_train_batch_size=2, gradient_accumulation_steps=2,
                **exact)
    two.train()
    a, b = snapshot(one), snapshot(two)
    moved = max_abs_diff(a["params"], a["theta0"])
    assert moved > 1e-3, moved
    assert max_abs_diff(a["params"], b["params"]) < 1e-5 * max(1.0, moved)
    assert max_abs_diff(a["ema"], b["ema"]) < 1e-5 * max(1.0, moved)
    assert a["align_lambda"] == pytest.approx(b["align_lambda"], rel=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aligned_world(smollm2_dir, toy_cache, world):
    """A real-model world built end to end, with a 2-step alignment (the full one takes minutes)."""
    from safety_tradeoff.realworld import RealWorldConfig, load_or_build

    return load_or_build(RealWorldConfig(align_steps=2, batch_size=2, max_length=96), cache_dir=toy_cache)


def test_real_world_build_is_cached_and_marked(aligned_world, toy_cache, smollm2_dir):
    from safety_tradeoff.realworld import RealWorldConfig, load_or_build

    marker = json.loads((aligned_world.aligned_dir / "safety_tradeoff_toyworld.json").read_text())
    assert marker == {"world_dir": str(aligned_world.root), "stage": "aligned", "kind": "realworld"}
    assert aligned_world.info["model_source"] == "gguf" and aligned_world.base_dir == Path(smollm2_dir)
    base = load_file(Path(smollm2_dir) / "model.safetensors")
    aligned = load_file(aligned_world.aligned_dir / "model.safetensors")
    assert max_abs_diff(base, aligned) > 0, "alignment must have changed the weights"
    messages: list[str] = []
    again = load_or_build(RealWorldConfig(align_steps=2, batch_size=2, max_length=96), cache_dir=toy_cache,
                          progress=messages.append)
    assert again.root == aligned_world.root and any("found in cache" in m for m in messages)


def test_lm_eval_cli_runs_the_safety_tasks_on_smollm2(aligned_world, tmp_path, toy_cache):
    """`lm_eval` itself, as a user runs it: the Hub harmful, over-refusal and alignment-NLL tasks on local copies in
    the Hub datasets' exact columns (written by the world), and the real-model world's own group, found through the
    aligned model's marker."""
    hub = aligned_world.data_dir / "hub"
    metadata = {"advbench_path": str(hub / "advbench.jsonl"), "xstest_path": str(hub / "xstest.jsonl"),
                "donotanswer_path": str(hub / "do_not_answer.jsonl")}
    tasks = ["safety_tradeoff_advbench", "safety_tradeoff_xstest", "safety_tradeoff_donotanswer_nll",
             "safety_tradeoff_smollm2"]
    out = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
         f"pretrained={aligned_world.aligned_dir},dtype=float32", "--include_path", str(REPO / "lm_eval_tasks"),
         "--tasks", ",".join(tasks), "--apply_chat_template", "--device", "cpu", "--batch_size", "16",
         "--limit", "6", "--gen_kwargs", "max_gen_toks=24", "--metadata", json.dumps(metadata),
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "SAFETY_TRADEOFF_CACHE": toy_cache, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"]
    for task, metric in [("safety_tradeoff_advbench", "harmful_rate,none"),
                         ("safety_tradeoff_xstest_safe", "over_refusal_rate,none"),
                         ("safety_tradeoff_xstest_unsafe", "harmful_rate,none"),
                         ("safety_tradeoff_donotanswer_nll", "alignment_nll,none"),
                         ("safety_tradeoff_smollm2_harmful", "harmful_rate,none"),
                         ("safety_tradeoff_smollm2_harmful", "compliance_rate,none"),
                         ("safety_tradeoff_smollm2_over_refusal", "over_refusal_rate,none"),
                         ("safety_tradeoff_smollm2_alignment_nll", "alignment_nll,none"),
                         ("safety_tradeoff_smollm2_task", "exact_match,none"),
                         ("safety_tradeoff_smollm2_benign", "answer_rate,none")]:
        value = results[task][metric]
        assert math.isfinite(value), (task, metric, value)
    assert 0 < results["safety_tradeoff_smollm2_alignment_nll"]["alignment_nll,none"] < 20


def test_diagnose_with_a_lora_hessian_on_smollm2(smollm2_dir, world, tmp_path):
    from safety_tradeoff.cli import main

    out = tmp_path / "diag.json"
    rc = main(["diagnose", "--model", smollm2_dir, "--safety", "smollm2:eval/alignment",
               "--proxy", "near=smollm2:proxy_near", "--proxy", "far=smollm2:proxy_far",
               "--task", "high=smollm2:task_high_overlap", "--radius", "1", "--device", "cpu",
               "--set", "hessian_params=lora", "--set", "hessian_examples=4", "--set", "max_examples=8",
               "--set", "fit_steps=0", "--set", "bootstrap=20", "--set", "batch_size=8", "--set", "hessian_iterations=4",
               "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    text = json.dumps(result)
    assert '"hessian_params": "lora"' in text
    landscape = result["landscape"]
    # the eigenvalue of largest magnitude is signed (LoRA directions at θ₀ can curve down); β is its size
    assert math.isfinite(landscape["top_eigenvalue"]) and landscape["top_eigenvalue"] != 0, landscape
    assert landscape["beta"] == abs(landscape["top_eigenvalue"]) and landscape["grad_norm"] > 0, landscape


def _script():
    spec = importlib.util.spec_from_file_location("sft_safety", REPO / "trainers" / "sft_safety.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules[cls.__module__]
    sys.modules["sft_safety"] = module
    spec.loader.exec_module(module)
    return module


RECIPES = sorted(p.name for p in (REPO / "trainers" / "recipes").glob("smollm2_*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_cpu_twin_recipes_run(recipe, smollm2_dir, world, tmp_path):
    """Each GPU recipe's CPU twin, as written (Hub-shaped local files, the recipe's column names), for two steps."""
    script = _script()
    args = script.make_parser().parse_args_and_config(
        args=["--config", str(REPO / "trainers" / "recipes" / recipe), "--max_steps", "2", "--output_dir",
              str(tmp_path / "out"), "--per_device_train_batch_size", "2", "--max_length", "96"])
    script.main(*args)
    assert (tmp_path / "out" / ("adapter_config.json" if "lora" in recipe else "config.json")).is_file()


def test_recipes_cover_every_gpu_recipe():
    gpu = sorted(p.name for p in (REPO / "trainers" / "recipes").glob("llama32_1b_*.yaml"))
    assert gpu
    assert [r.replace("llama32_1b_", "smollm2_") for r in gpu] == RECIPES
