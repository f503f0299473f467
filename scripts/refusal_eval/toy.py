"""Toy-world completions for the refusal evaluation set (issue #14): the aligned toy model, and the aligned
model after plain fine-tuning on the high- and low-overlap task mixes (refusals partly erased).

    OMP_NUM_THREADS=1 python scripts/refusal_eval/toy.py OUT.jsonl

Greedy, 24 new tokens (the toy tasks' length), on the toy world's harmful, far-harmful and over-refusal
evaluation prompts (seed 0); 20 prompts of each per model, chosen by a fixed seed.
"""
from __future__ import annotations

import json
import random
import sys

import torch

from safety_tradeoff.toyworld import ToyWorldConfig, load_or_build
from safety_tradeoff.toyworld.evaluate import greedy_generate, read_jsonl
from safety_tradeoff.toyworld.training import sft

PER_SET = 20
SETS = ("harmful", "harmful_far", "over_refusal")


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    world = load_or_build(ToyWorldConfig(seed=0))
    rng = random.Random(0)
    prompts = []
    for name in SETS:
        rows = read_jsonl(world.eval_file(name))
        prompts += [(f"toy_{name}", r["prompt"]) for r in rng.sample(rows, min(PER_SET, len(rows)))]
    with open(out, "w", encoding="utf-8") as f:
        for stage in ("aligned", "sft_high", "sft_low"):
            model, tok = world.load_aligned()
            if stage != "aligned":
                split = "task_high_overlap" if stage == "sft_high" else "task_low_overlap"
                sft(model.train(), tok, world.dataset(split), steps=150, lr=1e-3, batch_size=32, seed=0)
            texts = greedy_generate(model, tok, [p for _, p in prompts], max_new_tokens=24)
            for (kind, prompt), text in zip(prompts, texts):
                f.write(json.dumps({"source": f"toyworld-{stage}", "prompt": prompt, "prompt_type": kind,
                                    "response": text}, ensure_ascii=False) + "\n")
    print(f"wrote {3 * len(prompts)} completions to {out}")


if __name__ == "__main__":
    main()
