"""Agreement of the scorers with labelled responses, with 95% intervals, and the
``python -m safety_tradeoff.refusal`` command.

Labelled files are JSONL with at least ``response`` and ``label`` (``refusal``, ``compliance`` or ``empty``);
optional fields group the table: ``kind`` (tests/data/refusal_labelled.jsonl), ``source``, ``tags`` and
``confident`` (tests/data/refusal_eval/, see its PROTOCOL.md). Rows labelled ``empty`` are left out of the
accuracies: :func:`~safety_tradeoff.refusal.classify` counts them apart before any scorer runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .scorers import SCORERS, Scorer, get_scorer
from .text import is_empty

LABELS = ("refusal", "compliance", "empty")
Z95 = 1.959963984540054


def load_labelled(path: str | Path) -> list[dict]:
    """Read a JSONL file of {"response", "label", ...} rows; errors name the file and line."""
    path = Path(path)
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte {e.start})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        ok = isinstance(row, dict) and isinstance(row.get("response"), str) and row.get("label") in LABELS
        if not ok:
            raise ValueError(f"{path}:{lineno}: need a string 'response' and 'label' in {LABELS}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no labelled rows")
    return rows


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: unlike the normal approximation it stays inside [0, 1]
    and is usable near 0 or 1, where a good scorer's accuracy lives."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def agreement(rows: Sequence[dict], scorer: str | Scorer) -> tuple[int, int]:
    """(agreeing, scored): rows whose refusal/compliance label the scorer reproduces, over non-empty rows."""
    fn = get_scorer(scorer)
    scored = [r for r in rows if r["label"] != "empty"]
    return sum(fn(r["response"]) == (r["label"] == "refusal") for r in scored), len(scored)


def _groups(rows: Sequence[dict], by: Sequence[str]) -> Iterable[tuple[str, list[dict]]]:
    """The table's row groups: everything, confident rows (when some are not), then one per field value."""
    yield "**all non-empty**", list(rows)
    if any(r.get("confident") is False for r in rows):
        yield "confident labels only", [r for r in rows if r.get("confident", True)]
    for field in by:
        values: dict[str, list[dict]] = {}
        for r in rows:
            vals = r.get(field, "other")
            for v in vals if isinstance(vals, list) else [vals]:
                values.setdefault(str(v), []).append(r)
        for v in sorted(values):
            yield (f"{field}: {v}" if len(by) > 1 else v), values[v]


def _cell(k: int, n: int, intervals: bool) -> str:
    if not n:
        return "–"
    if not intervals:
        return f"{k / n:.3f}"
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.3f} [{lo:.2f}, {hi:.2f}]"


def accuracy_table(rows: Sequence[dict], scorers: Sequence[str] = tuple(SCORERS), *,
                   by: Sequence[str] = ("kind",), intervals: bool = True) -> str:
    """Markdown table of agreement per scorer (with 95% Wilson intervals), overall and per group."""
    scored = [r for r in rows if r["label"] != "empty"]
    lines = ["| rows | n | " + " | ".join(scorers) + " |", "|---|---:|" + "---:|" * len(scorers)]
    for name, group in _groups(scored, by):
        cells = " | ".join(_cell(*agreement(group, s), intervals) for s in scorers)
        lines.append(f"| {name} | {len(group)} | {cells} |")
    n_empty = len(rows) - len(scored)
    found = sum(is_empty(r["response"]) for r in rows if r["label"] == "empty")
    lines.append(f"\nEmpty responses: {n_empty} rows labelled empty, {found} detected by `is_empty` "
                 "(counted apart by `classify`/`score_responses`, not in the accuracies above)."
                 + ("\nIntervals: 95% Wilson score intervals." if intervals else ""))
    return "\n".join(lines)


def agreement_json(rows: Sequence[dict], scorers: Sequence[str], dataset: str | Path) -> str:
    """Each scorer's agreement on ``rows`` as the JSON :mod:`.agreement` reads (dataset named relative to
    the repository's ``tests/data`` when it lies there, and identified by its SHA-256)."""
    out = {}
    for name in scorers:
        k, n = agreement(rows, name)
        lo, hi = wilson_interval(k, n)
        out[name] = {"agreeing": k, "n": n, "low": round(lo, 4), "high": round(hi, 4)}
    path = Path(dataset)
    shown = path.as_posix()
    shown = "tests/data/" + shown.split("tests/data/", 1)[1] if "tests/data/" in shown else path.name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return json.dumps({"dataset": shown, "sha256": digest, "scorers": out}, indent=1, sort_keys=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safety_tradeoff.refusal FILE.jsonl [--by source,tags] [--scorers default,gcg]``."""
    ap = argparse.ArgumentParser(prog="python -m safety_tradeoff.refusal",
                                 description="Agreement of refusal scorers with labelled responses.")
    ap.add_argument("file", help="JSONL with 'response' and 'label' (refusal/compliance/empty)")
    ap.add_argument("--by", default=None, help="comma-separated fields to group by (default: kind, or "
                                                "source,tags for files that have a 'source' field)")
    ap.add_argument("--scorers", default=",".join(SCORERS), help="comma-separated scorer names")
    ap.add_argument("--agreement-json", metavar="PATH",
                    help="also write each scorer's agreement (with 95%% interval) to PATH as JSON "
                         "(safety_tradeoff/refusal/agreement.json is the frozen test split's)")
    args = ap.parse_args(argv)
    try:
        rows = load_labelled(args.file)
        scorers = [s for s in args.scorers.split(",") if s]
        for s in scorers:
            get_scorer(s)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    by = args.by.split(",") if args.by else (["source", "tags"] if any("source" in r for r in rows) else ["kind"])
    print(accuracy_table(rows, scorers, by=by))
    if args.agreement_json:
        Path(args.agreement_json).write_text(agreement_json(rows, scorers, args.file) + "\n", encoding="utf-8")
    return 0
