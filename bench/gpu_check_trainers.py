"""GPU checks of the safety trainers that CPU CI cannot run (bf16/fp16 on CUDA, host copies, FSDP2 and DeepSpeed on
GPUs). Not part of CI (CI runs FSDP2 and, when installed, DeepSpeed ZeRO-2 on 2 CPU processes).

    python bench/gpu_check_trainers.py single --out DIR
    torchrun --nproc_per_node N bench/gpu_check_trainers.py fsdp --out DIR        # after `single` (its references)
    torchrun --nproc_per_node N bench/gpu_check_trainers.py deepspeed --out DIR   # after `single`; needs deepspeed

`single` (one GPU, no distributed):
  - bf16 model, all mechanisms (Case I constraint, Case II grad + ball, fp32 EMA, bf16 θ₀): 6 steps vs 3 steps +
    resume from the checkpoint (expected: identical);
  - fp32 (TF32 off), SGD, 3 steps: GA=1 at batch 8 vs GA=2 at batch 4 for plain SFT and each mechanism. On a GPU the
    kernels differ with the batch shape, so even plain SFT differs (the platform's own baseline, ~1e-3 here); the
    mechanisms should stay within that baseline;
  - saves the GA=2 runs as references for `fsdp` and `deepspeed`;
  - fp16 mixed precision (a real CUDA GradScaler, 65536 at start): Case II in grad mode against loss mode (expected:
    within fp16 noise, far below the distance to the λ = 0 run, which grad mode matched before the loss scale was
    applied to its penalty);
  - θ₀ and θ̄ in host memory (pinned, staged in chunks) against beside the weights, bf16, every mechanism (expected:
    params and θ₀ 0.0; θ̄, averaged by the CPU instead of the GPU, within fp32 rounding), and a smoke run of the EMA
    updated every 4 steps from the host (its θ̄ differs from the every-step one by design).
`fsdp`: FSDP2 (`fsdp_config={"version": 2}`) through the Trainer: each variant against its single-GPU reference
(θ₀ and θ̄ must be DTensor shards taken after sharding), then exact resume of all mechanisms under FSDP2 (AdamW).
`deepspeed`: ZeRO-2 through the Trainer (DeepSpeed moves the model to the GPU inside `train()`, after the trainer is
built: θ₀ and θ̄ must follow): Case II loss mode, EMA and Case I against the single-GPU references (fp32), the same
mechanisms in bf16 and in fp16 (DeepSpeed's own loss scaling) resumed exactly; ZeRO-3: Case II and the EMA refused,
Case I alone against its reference.
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
DS_MECHANISMS = dict(align_mode="constraint", align_lambda=0.5, align_epsilon=5.0, align_dual_lr=0.3,
                     anchor_lambda=0.5, anchor_mode="loss", ema_beta=0.7)


def zero(stage: int) -> dict:
    return {"zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "train_batch_size": "auto", "gradient_clipping": "auto"}




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
    fp16_checks(tiny, out)
    host_copy_checks(tiny, out)


def fp16_checks(tiny, out):
    kw = dict(fp16=True, gradient_accumulation_steps=2, align=False, **EXACT)
    grad = outcome(run(tiny, os.path.join(out, "fp16"), anchor_lambda=1.0, **kw))
    loss = outcome(run(tiny, os.path.join(out, "fp16"), anchor_lambda=1.0, anchor_mode="loss", **kw))
    off = outcome(run(tiny, os.path.join(out, "fp16"), anchor_radius=1e3, **kw))  # λ = 0, anchor kept
    compare("fp16 Case II grad vs loss mode", grad, loss, grad_vs_lambda0=diff(grad["params"], off["params"]))


def host_copy_checks(tiny, out):
    kw = dict(bf16=True, gradient_accumulation_steps=2, learning_rate=1e-3, **MECHANISMS)
    near = outcome(run(tiny, os.path.join(out, "host"), torch.bfloat16, **kw))
    host = run(tiny, os.path.join(out, "host"), torch.bfloat16, anchor_offload=True, ema_offload=True, **kw)
    compare("bf16 θ₀ and θ̄ in host memory vs beside the weights", near, outcome(host),
            theta0_device=str(next(iter(host._anchor.theta0.values())).device),
            theta0_pinned=next(iter(host._anchor.theta0.values())).is_pinned(),
            ema_device=str(host._ema_shadow[0].device))
    every = run(tiny, os.path.join(out, "host"), torch.bfloat16, ema_update_every=4, ema_offload=True, **kw)
    compare("bf16 EMA every 4 steps (host) vs every step (smoke run: θ̄ differs by design)", near, outcome(every))


def deepspeed(out):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    saved = torch.load(os.path.join(out, "reference.pt"), weights_only=False)
    tiny = saved["tiny"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    kw = dict(per_device_train_batch_size=4, gradient_accumulation_steps=max(1, 2 // world))
    for name in ("case II loss", "EMA", "case I constraint"):
        got = outcome(run(tiny, os.path.join(out, "zero2"), align=name.startswith("case I"), deepspeed=zero(2),
                          **kw, **EXACT, **VARIANTS[name]))
        compare(f"ZeRO-2 (world {world}) vs single GPU fp32 {name}", got, saved["references"][name])
    for precision in ("bf16", "fp16"):
        resume_kw = dict(kw, deepspeed=zero(2), save_strategy="steps", save_steps=3, learning_rate=1e-3,
                         **{precision: True}, **DS_MECHANISMS)
        full = outcome(run(tiny, os.path.join(out, f"zero2-{precision}-full"), **resume_kw))
        run(tiny, os.path.join(out, f"zero2-{precision}-part"), callbacks=[StopAt(3)], **resume_kw)
        resumed = run(tiny, os.path.join(out, f"zero2-{precision}-part"),
                      resume=os.path.join(out, f"zero2-{precision}-part", "checkpoint-3"), **resume_kw)
        compare(f"ZeRO-2 {precision} resume vs uninterrupted (Case I + II loss + EMA)", full, outcome(resumed),
                theta0_device=str(next(iter(resumed._anchor.theta0.values())).device),
                ema_device=str(resumed._ema_shadow[0].device))
    for name in ("case II loss", "EMA"):
        try:
            run(tiny, os.path.join(out, "zero3"), align=False, deepspeed=zero(3), **kw, **EXACT, **VARIANTS[name])
            refused = "no (trained)"
        except NotImplementedError as err:
            refused = str(err)[:80]
        if int(os.environ.get("RANK", "0")) == 0:
            print("CHECK " + json.dumps({"check": f"ZeRO-3 {name} refused", "refused": refused}), flush=True)
    got = outcome(run(tiny, os.path.join(out, "zero3"), deepspeed=zero(3), **kw, **EXACT,
                      **VARIANTS["case I constraint"]))
    compare(f"ZeRO-3 (world {world}) vs single GPU fp32 case I constraint", got,
            saved["references"]["case I constraint"])


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
    parser.add_argument("mode", choices=["single", "fsdp", "deepspeed"])
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    warnings.simplefilter("ignore")
    {"single": single, "fsdp": fsdp, "deepspeed": deepspeed}[cli.mode](cli.out)
