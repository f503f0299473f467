"""Step time and extra memory of the safety trainers relative to plain `SFTTrainer`, measured side by side in one run.

    OMP_NUM_THREADS=1 python bench/bench_trainers.py [--steps 12] [--rounds 1] [--hidden 512] [--layers 8] [--cuda]

Model: a random Llama (default hidden 512, 8 layers, ~30M parameters) with the tests' tiny tokenizer, batch 4, GA 2,
~20-30-token examples, CPU, one thread, full fine-tuning and LoRA r16 on all linear layers. Each variant trains
`--steps` steps per round, the variants one after the other, in alternating order over `--rounds` rounds; a step's
time is the interval between consecutive `on_step_end` events (so it includes fetching the proxy batches and every
hook) in CPU time of the process (one thread: the work done, whatever else runs on the machine; `--clock wall` for
wall-clock time), the first step of each run dropped. The table gives the minimum (and median) step time relative to
plain `SFTTrainer`, and a paired in-run estimate that is robust to a noisy machine: the same trainer run with its
mechanisms switched on and off on alternate steps, the median of t_on / t_off over adjacent steps (it measures the
per-step cost of the mechanism, not effects that persist across steps), and the CPU time spent in the trainers'
per-step hooks (gradient-side penalty, dual update, projection, EMA), the exact cost of the mechanisms that act
outside forward/backward (Case II loss mode and Case I act inside them). glibc is told to keep freed memory (see
`tune_malloc`), which removes part of the run-to-run noise on CPU.

Memory options (full fine-tuning only): θ₀ and/or θ̄ kept in host memory (`anchor_offload`, `ema_offload`) and θ̄
updated every 4 steps (`ema_update_every=4`). Memory column, relative to plain SFTTrainer's: with `--cuda`, the peak
allocated accelerator memory of the run (`torch.cuda.max_memory_allocated`, reset before training; step times are
then wall-clock, synchronised); on CPU, the largest resident set size at a step end minus the one before training, in
a fresh process that trains that variant alone with glibc's default allocator settings (full fine-tuning; in the
main process RSS says nothing once the allocator keeps freed memory). On CPU the
host copies stay where they were (there is no accelerator memory to save): the column shows what each option holds,
the step time what its staged code path costs.

Targets (issues 4, 12): Case II grad mode, ball and EMA per-step hook cost ≤ 1.03× plain at full fine-tuning
(issue 12 measured grad 1.026, ball 1.035, EMA 1.015 before its changes), ≈ 1.0× with LoRA;
Case I ≤ 1.1 × (1 + proxy tokens / task tokens). Extra memory: Case II one copy of the trainable parameters (θ₀),
EMA one fp32 copy, none of them on the accelerator with the host options.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]

import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from tiny_models import build_tokenizer, safety_prompt_completion, task_messages, tiny_llama_config  # noqa: E402
from transformers import LlamaForCausalLM, PrinterCallback, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from safety_tradeoff.trainer import (  # noqa: E402
    AlignmentLossSFTTrainer,
    EMASFTTrainer,
    ParamConstraintSFTTrainer,
    SafeSFTTrainer,
    SafetySFTConfig,
)

# name -> (trainer class, config overrides, uses the proxy set, also run with LoRA)
VARIANTS = {
    "plain SFTTrainer": (SFTTrainer, {}, False, True),
    "Case II grad": (ParamConstraintSFTTrainer, dict(anchor_lambda=1.0, anchor_mode="grad"), False, True),
    "Case II loss": (ParamConstraintSFTTrainer, dict(anchor_lambda=1.0, anchor_mode="loss"), False, True),
    "Case II decoupled": (ParamConstraintSFTTrainer, dict(anchor_lambda=1.0, anchor_mode="decoupled"), False, True),
    "ball only": (ParamConstraintSFTTrainer, dict(anchor_radius=1e-3), False, True),
    "EMA": (EMASFTTrainer, dict(ema_beta=0.99), False, True),
    "Case I separate": (AlignmentLossSFTTrainer, dict(align_lambda=1.0), True, True),
    "Case I concat": (AlignmentLossSFTTrainer, dict(align_lambda=1.0, align_forward="concat"), True, True),
    "all (I + II grad + ball + EMA)": (
        SafeSFTTrainer,
        dict(align_lambda=1.0, anchor_lambda=1.0, anchor_radius=1.0, ema_beta=0.99),
        True,
        True,
    ),
    # memory options
    "Case II grad, θ₀ on host": (ParamConstraintSFTTrainer, dict(anchor_lambda=1.0, anchor_offload=True), False, False),
    "EMA every 4": (EMASFTTrainer, dict(ema_beta=0.99, ema_update_every=4), False, False),
    "EMA on host": (EMASFTTrainer, dict(ema_beta=0.99, ema_offload=True), False, False),
    "EMA on host, every 4": (EMASFTTrainer, dict(ema_beta=0.99, ema_offload=True, ema_update_every=4), False, False),
    "II grad + EMA, both on host": (
        SafeSFTTrainer,
        dict(anchor_lambda=1.0, ema_beta=0.99, anchor_offload=True, ema_offload=True, ema_update_every=4),
        False,
        False,
    ),
}


def variants(use_lora):
    return [name for name, (*_, lora_too) in VARIANTS.items() if lora_too or not use_lora]


class StepTimer(TrainerCallback):
    """Interval between consecutive `on_step_end` events (includes fetching the proxy batches and every hook), in CPU
    time of the process (`--clock cpu`, the default: with one thread it measures the work done and ignores time taken
    by other processes or the hypervisor) or wall-clock time (`--clock wall`). Also samples the memory in use at every
    step end (`memory_now`) for the peak over the run."""

    def __init__(self, clock, memory_now):
        self.clock = clock
        self.memory_now = memory_now
        self.stamps = []
        self.memory = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.stamps = [self.clock()]

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(self.clock())
        self.memory.append(self.memory_now())

    def step_times(self):
        return [b - a for a, b in zip(self.stamps[1:], self.stamps[2:], strict=False)]  # drop the first (warm-up)


class Toggle(TrainerCallback):
    """Switches the variant's mechanisms on and off on alternate steps (the switch for step k+1 happens at the end of
    step k, before its batches are fetched), for the paired in-run overhead estimate."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.saved = dict(
            anchor_lambda=getattr(trainer, "anchor_lambda", None),
            anchor_radius=getattr(trainer, "anchor_radius", None),
            _ema_on=getattr(trainer, "_ema_on", None),
            _align_active=getattr(trainer, "_align_active", None),
        )
        self.flags = []
        self.on = True

    def apply(self, on):
        t, saved = self.trainer, self.saved
        if saved["anchor_lambda"] is not None:
            t.anchor_lambda = saved["anchor_lambda"] if on else 0.0
            t.anchor_radius = saved["anchor_radius"] if on else None
        if saved["_ema_on"] is not None:
            t._ema_on = saved["_ema_on"] and on
        if saved["_align_active"] is not None:
            t._align_active = saved["_align_active"] and on

    def on_train_begin(self, args, state, control, **kwargs):
        self.on = True
        self.apply(True)

    def on_step_end(self, args, state, control, **kwargs):
        self.flags.append(self.on)
        self.on = not self.on
        self.apply(self.on)


def paired_ratio(times, flags):
    """Median over adjacent (off, on) step pairs of t_on / t_off (the first step, a warm-up, is dropped)."""
    times, flags = times, flags[1:]  # step_times() already dropped the first step
    ratios = []
    for i in range(len(times) - 1):
        a, b = (i, i + 1)
        if flags[a] != flags[b]:
            on, off = (times[a], times[b]) if flags[a] else (times[b], times[a])
            ratios.append(on / off)
    return statistics.median(ratios) if ratios else float("nan")


def tune_malloc():
    """Keep freed memory in the process (glibc): without it, large temporaries are unmapped when freed and
    page-faulted in again at every step, which adds 10-20% noise between runs of the same configuration and would
    be charged to whichever variant happens to trigger it. Applies to every variant alike."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


class Memory:
    """Memory in use: peak allocated CUDA memory since `reset` with CUDA, the resident set size on CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def reset(self) -> int:
        if not self.cuda:
            gc.collect()
            return self.now()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()

    def now(self) -> int:
        if not self.cuda:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()


def rss_in_fresh_process(name: str, cli) -> int:
    """Largest RSS at a step end minus the RSS before training (bytes), in a new process that trains variant `name`
    (full fine-tuning) alone with glibc's default allocator settings."""
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-variant", name, "--steps", str(cli.steps), "--hidden",
           str(cli.hidden), "--layers", str(cli.layers), "--threads", str(cli.threads), "--no-malloc-tuning"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_growth"]


def build(name, use_lora, model_state, config, tok, datasets, steps, out_dir, clock, memory):
    trainer_cls, overrides, needs_align, _ = VARIANTS[name]
    model = LlamaForCausalLM(config)
    model.load_state_dict(model_state)
    config_cls = SFTConfig if trainer_cls is SFTTrainer else SafetySFTConfig
    args = config_cls(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        logging_steps=10_000, save_strategy="no", report_to="none", bf16=False, use_cpu=not memory.cuda,
        activation_checkpointing=False, max_length=64, seed=0, disable_tqdm=True, learning_rate=1e-4,
        assistant_only_loss=True, **overrides,
    )
    timer = StepTimer(clock, memory.now)
    kwargs = {"align_dataset": datasets["align"]} if needs_align else {}
    peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if use_lora else None
    trainer = trainer_cls(model=model, args=args, train_dataset=datasets["task"], processing_class=tok,
                          peft_config=peft, callbacks=[timer], **kwargs)
    trainer.remove_callback(PrinterCallback)
    # CPU time spent in the per-step hooks of the safety trainers (gradient-side penalty; dual update, projection,
    # EMA): the exact per-step cost of the mechanisms that act outside the forward/backward.
    timer.hook_times = []
    for attr in ("_after_backward_sync", "_on_optimizer_step"):
        if hasattr(trainer, attr):
            original = getattr(trainer, attr)

            def timed(original=original):
                start = clock()
                original()
                timer.hook_times.append(clock() - start)

            setattr(trainer, attr, timed)
    return trainer, timer


def extra_bytes(trainer):
    """(bytes of θ₀ and θ̄ beside the weights, bytes of them in host memory by the offload options)."""
    anchor, ema = getattr(trainer, "_anchor", None), getattr(trainer, "_ema", None)
    near = host = 0
    for copy in (anchor, ema):
        if copy is None:
            continue
        size = copy.num_bytes
        if copy.offload:
            host += size
        else:
            near += size
    return near, host


def padded_tokens_per_batch(dataloader, batches=64):
    """Mean number of (padded) token positions per micro-batch, as the model processes them."""
    total = n = 0
    while n < batches:
        for batch in dataloader:
            total += batch["input_ids"].numel()
            n += 1
            if n == batches:
                break
    return total / n


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--paired-steps", type=int, default=17, help="steps of each paired on/off run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--cuda", action="store_true", help="train on the GPU; memory = allocated CUDA memory")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time or wall-clock time")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's default allocator settings")
    parser.add_argument("--rss-variant", help=argparse.SUPPRESS)  # internal: one variant's peak RSS, as JSON
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    torch.set_num_threads(args.threads)
    tuned = False if args.no_malloc_tuning else tune_malloc()
    memory = Memory(args.cuda)
    if args.cuda:
        args.clock = "wall"

        def clock():
            torch.cuda.synchronize()
            return time.perf_counter()
    else:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter

    tok = build_tokenizer()
    config = tiny_llama_config(tok, hidden_size=args.hidden, num_hidden_layers=args.layers,
                               intermediate_size=int(args.hidden * 2.6875), num_attention_heads=8,
                               num_key_value_heads=4)
    torch.manual_seed(0)
    state = LlamaForCausalLM(config).state_dict()
    datasets = {"task": task_messages(256), "align": safety_prompt_completion(64)}
    settings = [False] if args.no_lora else [False, True]
    if args.rss_variant:
        with tempfile.TemporaryDirectory() as tmp:
            trainer, timer = build(args.rss_variant, False, state, config, tok, datasets, args.steps, tmp, clock,
                                   memory)
            before = memory.reset()
            trainer.train()
        print(json.dumps({"rss_growth": max(timer.memory) - before}))
        return

    times: dict[tuple[str, bool], list[float]] = {}
    info: dict[tuple[str, bool], dict] = {}
    paired: dict[tuple[str, bool], float] = {("plain SFTTrainer", False): 1.0, ("plain SFTTrainer", True): 1.0}
    hooks: dict[tuple[str, bool], list[float]] = {}
    peak: dict[tuple[str, bool], list[int]] = {}
    ratio = None
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for use_lora in settings:
                order = variants(use_lora) if rnd % 2 == 0 else variants(use_lora)[::-1]  # alternate: cancel drifts
                for name in order:
                    trainer, timer = build(name, use_lora, state, config, tok, datasets, args.steps, tmp, clock,
                                           memory)
                    before = memory.reset()
                    trainer.train()
                    times.setdefault((name, use_lora), []).extend(timer.step_times())
                    hooks.setdefault((name, use_lora), []).append(sum(timer.hook_times) / max(1, args.steps))
                    if args.cuda:  # on CPU: measured in fresh processes below
                        peak.setdefault((name, use_lora), []).append(max(timer.memory) - before)
                    trainable = sum(p.numel() * p.element_size() for p in trainer.model.parameters()
                                    if p.requires_grad)
                    near, host = extra_bytes(trainer)
                    info[(name, use_lora)] = dict(trainable=trainable, near=near, host=host)
                    if ratio is None and name == "Case I separate":
                        ratio = padded_tokens_per_batch(trainer.get_align_dataloader()) / (
                            padded_tokens_per_batch(trainer.get_train_dataloader()))
                    print(f"round {rnd + 1}/{args.rounds} {'LoRA' if use_lora else 'full'} {name}: min "
                          f"{min(timer.step_times()) * 1e3:.1f} ms, median "
                          f"{statistics.median(timer.step_times()) * 1e3:.1f} ms", file=sys.stderr, flush=True)
                    del trainer, timer
                    gc.collect()
        if not args.cuda:  # in fresh processes
            for name in variants(False):
                if not VARIANTS[name][2]:  # the Case I variants' memory is their activations: not measured here
                    peak[(name, False)] = [rss_in_fresh_process(name, args)]
                    print(f"RSS growth {name}: {peak[(name, False)][0] / 2**20:.1f} MiB", file=sys.stderr, flush=True)
        # Paired in-run estimate: the same trainer with its mechanisms on and off on alternate steps.
        for use_lora in settings:
            for name in variants(use_lora):
                if name == "plain SFTTrainer":
                    continue
                trainer, timer = build(name, use_lora, state, config, tok, datasets, args.paired_steps, tmp, clock,
                                       memory)
                toggle = Toggle(trainer)
                trainer.add_callback(toggle)
                trainer.train()
                paired[(name, use_lora)] = paired_ratio(timer.step_times(), toggle.flags)
                print(f"paired {'LoRA' if use_lora else 'full'} {name}: on/off {paired[(name, use_lora)]:.3f}",
                      file=sys.stderr, flush=True)
                del trainer, timer, toggle
                gc.collect()

    n_params = sum(t.numel() for t in state.values())
    print(f"\nRandom Llama hidden {args.hidden}, {args.layers} layers, {n_params / 1e6:.1f}M parameters, "
          f"batch 4 × GA 2, {'CUDA' if args.cuda else 'CPU'}, "
          f"{args.threads} thread(s), {args.rounds} round(s) × {args.steps - 1} timed steps per variant, "
          f"{args.clock} time, glibc malloc tuning {'on' if tuned else 'off'}.")
    print(f"Proxy tokens / task tokens (padded, per micro-batch, equal batch sizes): {ratio:.2f} → Case I bound "
          f"1.1 × (1 + ratio) = {1.1 * (1 + ratio):.2f}.\n")
    mem_name = "peak allocated CUDA memory" if args.cuda else "RSS growth in training"
    header = ("| variant | full FT step (min) | × plain side by side (min / median) | × plain on/off in-run | "
              "hooks ms/step (1 + hooks/plain) | θ₀ + θ̄ beside the weights / in host memory / trainable | "
              f"{mem_name} − plain's |")
    if not args.no_lora:
        header += (" LoRA r16 step (min) | × plain side by side (min / median) | × plain on/off in-run | "
                   "hooks ms/step (1 + hooks/plain) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    def cells(name, use_lora):
        if (name, use_lora) not in times:
            return " – | – | – | – |"
        own, base = times[(name, use_lora)], times[("plain SFTTrainer", use_lora)]
        hook = min(hooks[(name, use_lora)])
        return (f" {min(own) * 1e3:.1f} ms | {min(own) / min(base):.3f} / "
                f"{statistics.median(own) / statistics.median(base):.3f} | {paired[(name, use_lora)]:.3f} | "
                f"{hook * 1e3:.1f} ({1 + hook / min(base):.3f}) |")

    mib = 2**20
    for name in VARIANTS:
        i = info[(name, False)]
        row = f"| {name} |" + cells(name, False)
        row += f" {i['near'] / mib:.1f} / {i['host'] / mib:.1f} / {i['trainable'] / mib:.1f} MiB |"
        if (name, False) in peak:
            row += f" {(min(peak[(name, False)]) - min(peak[('plain SFTTrainer', False)])) / mib:+.1f} MiB |"
        else:
            row += " – |"
        if not args.no_lora:
            row += cells(name, True)
        print(row)
    print("\nPer-step hook cost of the mechanisms that act outside forward/backward (1 + hooks / plain step, full FT): "
          + ", ".join(f"{name} {1 + min(hooks[(name, False)]) / min(times[('plain SFTTrainer', False)]):.3f}"
                      for name in ("Case II grad", "ball only", "EMA", "Case II decoupled", "EMA every 4",
                                   "Case II grad, θ₀ on host", "EMA on host")))


if __name__ == "__main__":
    main()
