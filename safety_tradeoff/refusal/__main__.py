"""``python -m safety_tradeoff.refusal FILE.jsonl``: the accuracy table of every scorer."""
from .evaluate import main

raise SystemExit(main())
