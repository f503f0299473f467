"""Refusal scoring speed: 10,000 responses on one core, per scorer (issue #14 asks <= 5 s for the default).

    OMP_NUM_THREADS=1 python bench/bench_refusal.py [--n 10000] [--repeats 3]

The responses are the project's labelled ones (tests/data/refusal_eval and refusal_labelled.jsonl, cycled
to --n; mean length printed), and the same responses joined 4, 6 and 12 at a time: about 730 characters,
about 1,100 (a 256-token answer, the length the Hub benchmark tasks generate) and past the 2,000 characters
the default scorer reads (HarmBench's 512 tokens). Prints the best of --repeats runs per scorer, wall and CPU
time of this process. Run it on a quiet machine; on a busy one the CPU time is the closer estimate of one
free core.
"""
from __future__ import annotations

import argparse
import statistics
import time
from itertools import cycle, islice
from pathlib import Path

from safety_tradeoff.refusal import SCORERS, load_labelled

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FILES = (DATA / "refusal_eval" / "test.jsonl", DATA / "refusal_eval" / "dev.jsonl", DATA / "refusal_labelled.jsonl")


def responses(n: int, join: int = 1) -> list[str]:
    texts = [r["response"] for f in FILES for r in load_labelled(f) if r["response"].strip()]
    joined = ["\n\n".join(texts[i:i + join]) for i in range(0, len(texts) - join + 1, join)]
    return list(islice(cycle(joined), n))


def best_time(fn, texts: list[str], repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process), best of ``repeats``; on a busy machine the CPU time is
    the better estimate of what one free core would take."""
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for t in texts:
            fn(t)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    SCORERS["default"]("warm-up: loads the classifier weights once")
    for label, join in (("labelled responses", 1), ("long responses (4 joined)", 4),
                        ("256-token answers (6 joined)", 6), ("past the 2,000-character cap (12 joined)", 12)):
        texts = responses(args.n, join)
        print(f"{label}: {len(texts)} responses, mean {statistics.fmean(map(len, texts)):.0f} characters")
        times = {name: best_time(fn, texts, args.repeats) for name, fn in SCORERS.items()}
        for name, (wall, cpu) in times.items():
            per = cpu / len(texts) * 1e3
            print(f"  {name:8s} wall {wall:7.2f} s, CPU {cpu:7.2f} s  ({per:.3f} ms CPU per response)")
        per_10k = times["default"][1] * 10_000 / len(texts)
        print(f"  default: {per_10k:.2f} s CPU per 10,000 responses "
              f"({'within' if per_10k <= 5 else 'OVER'} the 5 s budget)")


if __name__ == "__main__":
    main()
