"""Cost of `safety-tradeoff diagnose` on the toy world, per part, against the issue's 30 s target.

    python bench/bench_diagnostics.py [--seeds 0 1 2] [--repeats 2] [--threads 1]

Runs the theory recipe's diagnostics (`trainers/recipes/sweep_toy_theory.yaml`: D_s, near and far proxy
with a 50-step cross-loss fit each, two task mixes, Lanczos on all 163k parameters) on each seed's
aligned model, in this process, and prints the time of each part and the total as a ratio to 30 s.
Also compares Lanczos with power iteration side by side (same sample, same tolerance).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from safety_tradeoff.diagnostics.config import DiagnosticsConfig  # noqa: E402
from safety_tradeoff.diagnostics.diagnose import diagnose, load_model  # noqa: E402
from safety_tradeoff.sweep_run import diagnostics_inputs  # noqa: E402
from safety_tradeoff.sweep_config import SweepConfig  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "trainers" / "recipes" / "sweep_toy_theory.yaml"
TARGET_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = SweepConfig.from_yaml(RECIPE)
    for seed in args.seeds:
        name, proxies, tasks = diagnostics_inputs(sweep, seed)
        config = DiagnosticsConfig.from_dict(sweep.diagnostics).with_seed(seed)
        start = time.perf_counter()
        model, tokenizer = load_model(name)
        load_s = time.perf_counter() - start
        totals: dict[str, list[float]] = {}
        for method in ("lanczos", "power"):
            cfg = dataclasses.replace(config, hessian_method=method)
            for _ in range(args.repeats):
                result = diagnose(model, tokenizer, cfg, proxies=proxies, tasks=tasks, model_name=name)
                for part, seconds in result["timings"].items():
                    totals.setdefault(f"{method}/{part}", []).append(seconds)
                land = result["landscape"]
            print(f"seed {seed} {method}: β_s {land['beta']:.4g} in {land['iterations']} iterations "
                  f"({'converged' if land['converged'] else 'NOT converged'})")
        print(f"seed {seed}: model load {load_s:.1f} s; median of {args.repeats} runs per part:")
        for part, values in totals.items():
            print(f"  {part:32s} {statistics.median(values):6.2f} s")
        for method in ("lanczos", "power"):
            total = statistics.median(totals[f"{method}/total_s"])
            print(f"  total with {method}: {total:.1f} s = {total / TARGET_S:.2f} × the {TARGET_S:g} s target")
        ratio = statistics.median(totals["power/landscape_s"]) / statistics.median(totals["lanczos/landscape_s"])
        print(f"  landscape time power / lanczos: {ratio:.2f}×")


if __name__ == "__main__":
    main()
