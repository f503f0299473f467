"""Train the refusal classifier (:mod:`.classifier`) on labelled responses and write ``classifier.json``.

The default scorer asks the classifier only about responses in the implicit zone (no explicit refusal,
but lecture, premise or redirection cues: :func:`.rules.implicit_zone`), so it is trained on those rows:
5-fold cross-validation on the development data gave 0.861 agreement in the zone this way against 0.825
when trained on every row.

    python -m safety_tradeoff.refusal.train tests/data/refusal_eval/dev.jsonl tests/data/refusal_labelled.jsonl

Only development data: the frozen test split (tests/data/refusal_eval/test.jsonl) is refused, so its
agreement figures stay out-of-sample. L2-regularised logistic regression, full-batch gradient descent
with Adam in numpy (deterministic; a few seconds on a CPU); n-grams seen in fewer than ``min_df``
responses are dropped and tiny weights pruned, which keeps the shipped file small.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .classifier import WEIGHTS_FILE, LogisticModel
from .evaluate import load_labelled
from .features import Reading
from .rules import explicit_refusal, implicit_zone, reading_of

FROZEN = "refusal_eval/test.jsonl"


def _matrix(readings: Sequence[Reading], dense_names: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(readings), len(dense_names) + len(vocab)), dtype=np.float64)
    for i, r in enumerate(readings):
        x[i, :len(dense_names)] = [r.dense.get(k, 0.0) for k in dense_names]
        for g in r.ngrams:
            j = vocab.get(g)
            if j is not None:
                x[i, len(dense_names) + j] = 1.0
    return x


def fit(readings: Sequence[Reading], labels: Sequence[bool], *, l2: float = 1.0, min_df: int = 3,
        steps: int = 1500, lr: float = 0.05, prune: float = 1e-3, sources: Sequence[str] = ()) -> LogisticModel:
    """Logistic regression: minimise mean log-loss + l2/n * ||w||^2 / 2 (bias unpenalised)."""
    df = Counter(g for r in readings for g in r.ngrams)
    vocab = {g: j for j, g in enumerate(sorted(g for g, c in df.items() if c >= min_df))}
    dense_names = sorted(readings[0].dense)
    x = _matrix(readings, dense_names, vocab)
    y = np.asarray(labels, dtype=np.float64)
    n, d = x.shape
    w, b = np.zeros(d), 0.0
    m, v, mb, vb = np.zeros(d), np.zeros(d), 0.0, 0.0
    for t in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        gw = x.T @ (p - y) / n + l2 / n * w
        gb = float(np.mean(p - y))
        m, v = 0.9 * m + 0.1 * gw, 0.999 * v + 0.001 * gw * gw
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        b -= lr * (mb / (1 - 0.9 ** t)) / (np.sqrt(vb / (1 - 0.999 ** t)) + 1e-8)
    dense = {k: round(float(w[i]), 4) for i, k in enumerate(dense_names)}
    grams = {g: round(float(w[len(dense_names) + j]), 4) for g, j in vocab.items()
             if abs(w[len(dense_names) + j]) >= prune}
    return LogisticModel(round(b, 4), dense, grams, 0.5, tuple(sources))


def load_training(paths: Sequence[str | Path], *, zone_only: bool = True) -> tuple[list[Reading], list[bool]]:
    """Readings and labels of development rows (non-empty; by default only those in the implicit zone);
    the frozen test split is refused."""
    readings, labels = [], []
    for path in paths:
        if Path(path).as_posix().endswith(FROZEN):
            raise ValueError(f"{path} is the frozen test split: train on development data only")
        for row in load_labelled(path):
            if row["label"] == "empty":
                continue
            reading = reading_of(row["response"])
            if zone_only and (explicit_refusal(reading.sents) or not implicit_zone(reading.text, reading.sents)):
                continue
            readings.append(reading)
            labels.append(row["label"] == "refusal")
    return readings, labels


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m safety_tradeoff.refusal.train", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="labelled JSONL files (development data)")
    ap.add_argument("--out", default=str(WEIGHTS_FILE))
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--min-df", type=int, default=3)
    ap.add_argument("--all-rows", action="store_true", help="train on every row, not only the implicit zone")
    args = ap.parse_args(argv)
    try:
        readings, labels = load_training(args.files, zone_only=not args.all_rows)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    model = fit(readings, labels, l2=args.l2, min_df=args.min_df,
                sources=[Path(f).as_posix().split("tests/data/")[-1] for f in args.files])
    Path(args.out).write_text(model.to_json() + "\n", encoding="utf-8")
    print(f"trained on {len(labels)} responses ({sum(labels)} refusals): {len(model.ngrams)} n-gram weights, "
          f"{len(model.dense)} cue weights -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
