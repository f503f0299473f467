"""What the demo sweep saves by sharing plain SFT's trajectory with its EMA runs and by evaluating without
`simple_evaluate`'s environment report (`sweep_shared.py`, `evaluation.run_tasks`).

Side by side in one process, one CPU thread, on the toy world (built or loaded first, not timed):
  1. plain SFT and EMA at three β trained as four runs, then as one trajectory (`execute` vs `execute_trajectory`);
  2. the lm-eval evaluation of one model through `lm_eval.simple_evaluate` and through `run_tasks`.
Prints the seconds and the ratios. Run it on an otherwise idle machine:

    python bench/bench_demo_sweep.py [--steps 150] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3, help="evaluations timed each way")
    args = parser.parse_args()

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safety_tradeoff.data import resolve_model
    from safety_tradeoff.demo import demo_config
    from safety_tradeoff.evaluation import LmEvalEvaluator, _with_metadata, run_tasks
    from safety_tradeoff.sweep_run import execute, execute_trajectory
    from safety_tradeoff.sweep_shared import plan

    torch.set_num_threads(1)
    sweep, _ = demo_config("toy", 1, steps=args.steps)
    sweep.methods = [{"method": "ema", "ema_beta": [0.98, 0.99, 0.995]}]
    sweep.diagnostics = None
    base = resolve_model("toyworld@0:aligned")
    evaluator = LmEvalEvaluator(sweep.eval)
    (shared,) = [t for t in plan(sweep.expand(), sweep) if t.companions]
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        alone = [execute(run, sweep, Path(work), evaluator) for run in shared.runs]
        separate_s = time.perf_counter() - t
        t = time.perf_counter()
        together = execute_trajectory(shared, sweep, Path(work), evaluator)
        shared_s = time.perf_counter() - t
    assert all(a.metrics["harmful_rate"] == b.metrics["harmful_rate"] for a, b in zip(alone, together))
    print(f"plain SFT + 3 EMA ({args.steps} steps, trained and evaluated): as 4 runs {separate_s:.1f} s, "
          f"as one trajectory {shared_s:.1f} s: {separate_s / shared_s:.2f}x")

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    manager = _with_metadata(evaluator.manager, {"tokenizer": tokenizer, "pretrained": base,
                                                 "toy_world": str(Path(base).parent)})
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=sweep.eval.batch_size)
    tasks = list(sweep.eval.tasks)
    times = {"simple_evaluate": [], "run_tasks": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, apply_chat_template=True,
                                bootstrap_iters=0, log_samples=False)
        times["simple_evaluate"].append(time.perf_counter() - t)
        t = time.perf_counter()
        run_tasks(lm, manager, tasks, apply_chat_template=True, log_samples=False)
        times["run_tasks"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"one evaluation ({', '.join(tasks)}): simple_evaluate {best['simple_evaluate']:.2f} s, run_tasks "
          f"{best['run_tasks']:.2f} s: {best['simple_evaluate'] / best['run_tasks']:.2f}x (best of {args.repeats})")


if __name__ == "__main__":
    main()
