"""Two runs at a time with one thread each, or one at a time with all threads? (`sweep --jobs`, `demo`)

Times the same pair of short fine-tuning runs (TRL `SFTTrainer`, plain SFT on the world's high-overlap task
mix) both ways, side by side in one invocation, and prints the ratio. Run it on an otherwise idle machine:

    python bench/bench_parallel_runs.py --world smollm2 --steps 6      # SmolLM2-135M, batch 4
    python bench/bench_parallel_runs.py --world toy --steps 60         # the toy world's tiny Llama, batch 32
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORKER = r"""
import os, sys, tempfile, torch
torch.set_num_threads(int(sys.argv[1]))
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
from safety_tradeoff.data import load_dataset_spec, resolve_model
world, steps, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = resolve_model(f"{world}:aligned")
data = load_dataset_spec(f"{world}:task_high_overlap")
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
with tempfile.TemporaryDirectory() as out:
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, use_cpu=True, bf16=False,
                     report_to="none", save_strategy="no", disable_tqdm=True, activation_checkpointing=False,
                     logging_strategy="no", learning_rate=1e-4, max_length=256)
    SFTTrainer(model=model, args=args, train_dataset=data, processing_class=AutoTokenizer.from_pretrained(base)).train()
"""


def _run(threads: int, world: str, steps: int, batch: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(threads), world, str(steps), str(batch)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"worker failed:\n{err[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=["toy", "smollm2"], default="smollm2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (smollm2) / 32 (toy)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    world = "toyworld" if args.world == "toy" else "smollm2"
    batch = args.batch or (4 if args.world == "smollm2" else 32)
    cores = os.cpu_count() or 1
    _wait([_run(1, world, 1, batch)])  # builds/caches the world and warms the file cache; not timed
    serial, parallel = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(2):
            _wait([_run(cores, world, args.steps, batch)])
        serial.append(time.perf_counter() - start)
        start = time.perf_counter()
        _wait([_run(max(1, cores // 2), world, args.steps, batch) for _ in range(2)])
        parallel.append(time.perf_counter() - start)
    print(f"{args.world}: two runs of {args.steps} steps (batch {batch}), {cores} cores, {args.repeats} repeats")
    print(f"  one at a time, {cores} threads each : {min(serial):7.1f} s (best)  {serial}")
    print(f"  two at a time, {max(1, cores // 2)} thread(s) each : {min(parallel):7.1f} s (best)  {parallel}")
    print(f"  speed-up of two at a time: {min(serial) / min(parallel):.2f}x (process start-up included in both)")


if __name__ == "__main__":
    main()
