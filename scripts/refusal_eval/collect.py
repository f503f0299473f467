"""Collect real model completions for the refusal evaluation set (tests/data/refusal_eval/, issue #14).

Greedy completions of a chat model on the project's own prompts (the real-model world's evaluation sets
and its XSTest-shaped file, seed 0) plus ``extra_prompts.txt`` (premise, privacy, capability, definition
and false-premise questions). Writes one JSONL row per completion, unlabelled::

    OMP_NUM_THREADS=1 python scripts/refusal_eval/collect.py MODEL_DIR SOURCE_NAME OUT.jsonl [--max-new-tokens 96]

Labels are added afterwards by reading each completion (tests/data/refusal_eval/PROTOCOL.md).
The prompt selection is a pure function of the seed, so every model answers the same prompts.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
# How many prompts to take from each of the world's files (seed-0 data), by (file, label filter).
TAKE = {"eval/harmful.jsonl": 40, "eval/harmful_far.jsonl": 20, "eval/over_refusal.jsonl": 38,
        "eval/benign.jsonl": 12, "hub/xstest.jsonl": 80}


def extra_prompts() -> list[dict]:
    rows = []
    for line in (HERE / "extra_prompts.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            kind, prompt = line.split("\t")
            rows.append({"prompt": prompt, "prompt_type": kind})
    return rows


def world_prompts(seed: int = 0) -> list[dict]:
    from safety_tradeoff.realworld import world_data

    data = world_data().data_dir
    rng = random.Random(seed)
    rows: list[dict] = []
    for name, n in TAKE.items():
        items = [json.loads(x) for x in (data / name).read_text(encoding="utf-8").splitlines() if x.strip()]
        for item in rng.sample(items, min(n, len(items))):
            kind = item.get("type") or item.get("category") or ""
            rows.append({"prompt": item["prompt"], "prompt_type": f"{name.split('/')[-1][:-6]}:{kind}"})
    return rows


def prompts(seed: int = 0) -> list[dict]:
    seen: set[str] = set()
    out = []
    for row in world_prompts(seed) + extra_prompts():
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--limit", type=int, default=0, help="only the first N prompts (0: all)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safety_tradeoff.toyworld.evaluate import greedy_generate

    torch.set_num_threads(1)
    rows = prompts()
    if args.limit:
        rows = rows[:args.limit]
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    texts = greedy_generate(model, tok, [r["prompt"] for r in rows], max_new_tokens=args.max_new_tokens,
                            batch_size=16)
    with open(args.out, "w", encoding="utf-8") as f:
        for r, t in zip(rows, texts):
            f.write(json.dumps({"source": args.source, **r, "response": t}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} completions to {args.out}")


if __name__ == "__main__":
    main()
