"""GPU checks of the safety trainers that CPU CI cannot run (bf16 on CUDA, FSDP2 through `Trainer`). Not part of CI.

    python bench/gpu_check_trainers.py single --out DIR
    torchrun --nproc_per_node N bench/gpu_check_trainers.py fsdp --out DIR   # after `single` (reads its references)

`single` (one GPU, no distributed):
  - bf16 model, all mechanisms (Case I constraint, Case II grad + ball, fp32 EMA, bf16 θ₀): 6 steps vs 3 steps +
    resume from the checkpoint (expected: identical);
  - fp32 (TF32 off), SGD, 3 steps: GA=1 at batch 8 vs GA=2 at batch 4 for plain SFT and each mechanism. On a GPU the
    kernels differ with the batch shape, so even plain SFT differs (the platform's own baseline, ~1e-3 here); the
    mechanisms should stay within that baseline;
  - saves the GA=2 runs as references for `fsdp`.
`fsdp`: FSDP2 (`fsdp_config={"version": 2}`) through the Trainer: each variant against its single-GPU reference
(θ₀ and θ̄ must be DTensor shards taken after sharding), then exact resume of all mechanisms under FSDP2 (AdamW).
Prints one `CHECK {json}` line per check (max abs differences).

Seen on one H100 (torch 2.11, world size 1): bf16 resume 0.0; GA1 vs GA2 plain 6.8e-4, mechanisms 1.3e-4-7.4e-4;
FSDP2 vs single plain 1.1e-3, mechanisms 4.6e-4-2.3e-3 (dual λ 1.5e-3-3.1e-3); FSDP2 resume 0.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]

import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from tiny_models import StopAt, build_tiny_model, safety_prompt_completion, task_messages  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from safety_tradeoff.trainer import SafeSFTTrainer, SafetySFTConfig  # noqa: E402
from safety_tradeoff.trainer.placement import to_full_tensor  # noqa: E402

MECHANISMS = dict(
    align_mode="constraint", align_lambda=0.5, align_epsilon=5.0, align_dual_lr=0.3,
    anchor_lambda=0.5, anchor_radius=0.5, ema_beta=0.7,
)
# name -> config overrides (all run through SafeSFTTrainer; "plain" has every mechanism off and no proxy set)
VARIANTS = {
    "plain": {},
    "case I constraint": dict(align_mode="constraint", align_lambda=0.5, align_epsilon=5.0, align_dual_lr=0.3),
    "case II grad": dict(anchor_lambda=0.5),
    "case II loss": dict(anchor_lambda=0.5, anchor_mode="loss"),
    "ball": dict(anchor_radius=0.5),
    "EMA": dict(ema_beta=0.7),
    "all": MECHANISMS,
}
COMMON = dict(
    report_to="none", max_length=64, seed=0, disable_tqdm=True, logging_steps=1, assistant_only_loss=True,
    activation_checkpointing=False, dataloader_num_workers=0,
)
EXACT = dict(optim="sgd", learning_rate=0.2, max_grad_norm=0.0, lr_scheduler_type="constant", max_steps=3)




def outcome(trainer):
    full = {}
    for name, p in trainer.model.named_parameters():
        if p.requires_grad:
            full[name.replace("_fsdp_wrapped_module.", "").replace("module.", "")] = to_full_tensor(
                p.detach()).float().cpu()
    anchor = trainer._anchor
    return {
        "params": full,
        "theta0": anchor.state_dict() if anchor is not None else {},
        "ema": trainer.ema_state_dict(),
        "align_lambda": trainer.align_lambda,
        "theta0_is_dtensor": anchor is not None and any(
            type(t).__name__ == "DTensor" for t in anchor.theta0.values()),
        "ema_is_dtensor": any(type(t).__name__ == "DTensor" for t in (trainer._ema_shadow or [])),
        "logs": [{k: v for k, v in r.items() if k in ("dist_to_theta0", "ema_dist_to_theta0", "align_lambda",
                                                      "penalty")} for r in trainer.state.log_history if "loss" in r],
    }


def diff(a, b):
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in a), default=0.0)


def compare(name, a, b, **extra):
    result = {"check": name, "params": diff(a["params"], b["params"]), "theta0": diff(a["theta0"], b["theta0"]),
              "ema": diff(a["ema"], b["ema"]), "lambda": abs(a["align_lambda"] - b["align_lambda"]), **extra}
    if int(os.environ.get("RANK", "0")) == 0:
        print("CHECK " + json.dumps(result), flush=True)
    return result


def run(tiny, out_dir, dtype=torch.float32, lora=False, callbacks=None, resume=None, align=True, **overrides):
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(tiny)
    args = SafetySFTConfig(output_dir=out_dir, **{**COMMON, "max_steps": 6, "per_device_train_batch_size": 4,
                                                  **overrides})
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") if lora else None
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=task_messages(64), processing_class=tok,
                             align_dataset=safety_prompt_completion(16) if align else None, peft_config=peft,
                             callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def single(out):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tiny = build_tiny_model(os.path.join(out, "tiny"), hidden_size=64, num_hidden_layers=2, intermediate_size=128)
    # bf16 weights, bf16 autocast, fp32 EMA shadow, bf16 θ₀ (the parameter dtype): exact resume on GPU
    kw = dict(bf16=True, gradient_accumulation_steps=2, save_strategy="steps", save_steps=3, learning_rate=1e-3,
              **MECHANISMS)
    full = outcome(run(tiny, os.path.join(out, "bf16-full"), torch.bfloat16, **kw))
    run(tiny, os.path.join(out, "bf16-part"), torch.bfloat16, callbacks=[StopAt(3)], **kw)
    resumed = run(tiny, os.path.join(out, "bf16-part"), torch.bfloat16,
                  resume=os.path.join(out, "bf16-part", "checkpoint-3"), **kw)
    compare("bf16 resume vs uninterrupted", full, outcome(resumed),
            theta0_dtype=str(next(iter(resumed._anchor.theta0.values())).dtype),
            ema_dtype=str(resumed._ema_shadow[0].dtype), logs=full["logs"][-1])
    # fp32 gradient-accumulation invariance on the GPU, per mechanism (plain SFT is the platform's own baseline)
    references = {}
    for name, overrides in VARIANTS.items():
        for lora in (False, True) if name == "all" else (False,):
            common = dict(lora=lora, align=name != "plain", **EXACT, **overrides)
            one = outcome(run(tiny, os.path.join(out, "ga1"), per_device_train_batch_size=8,
                              gradient_accumulation_steps=1, **common))
            two = outcome(run(tiny, os.path.join(out, "ga2"), per_device_train_batch_size=4,
                              gradient_accumulation_steps=2, **common))
            compare(f"GA1 vs GA2 fp32 {name}{' LoRA' if lora else ''}", one, two)
            if not lora:
                references[name] = two
    torch.save({"tiny": tiny, "references": references}, os.path.join(out, "reference.pt"))


def fsdp(out):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    saved = torch.load(os.path.join(out, "reference.pt"), weights_only=False)
    tiny = saved["tiny"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    kw = dict(fsdp="full_shard", fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]},
              per_device_train_batch_size=4, gradient_accumulation_steps=max(1, 2 // world))
    for name, overrides in VARIANTS.items():
        got = outcome(run(tiny, os.path.join(out, "fsdp"), align=name != "plain", **kw, **EXACT, **overrides))
        compare(f"FSDP2 (world {world}) vs single GPU fp32 {name}", got, saved["references"][name],
                theta0_is_dtensor=got["theta0_is_dtensor"], ema_is_dtensor=got["ema_is_dtensor"])
    # exact resume under FSDP2 (AdamW: FSDP optimizer-state loading needs a non-empty state)
    kw.update(save_strategy="steps", save_steps=3, learning_rate=1e-3, **MECHANISMS)
    full = outcome(run(tiny, os.path.join(out, "fsdp-full"), **kw))
    run(tiny, os.path.join(out, "fsdp-part"), callbacks=[StopAt(3)], **kw)
    resumed = run(tiny, os.path.join(out, "fsdp-part"), resume=os.path.join(out, "fsdp-part", "checkpoint-3"), **kw)
    compare("FSDP2 resume vs uninterrupted", full, outcome(resumed))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["single", "fsdp"])
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    warnings.simplefilter("ignore")
    (single if cli.mode == "single" else fsdp)(cli.out)
