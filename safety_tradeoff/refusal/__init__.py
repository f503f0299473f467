"""Refusal scoring: the project's default detector and the published reference rules.

Scorers share one registry (``SCORERS``, ``get_scorer``); each maps a response to ``True`` (refusal) or
``False`` (not refused):

* ``default``: :func:`is_refusal`, the project's rules (:mod:`.rules`, vocabulary in :mod:`.cues` and
  :mod:`.cues_implicit`, compiled fast by :mod:`.alternation`) with a small shipped classifier for refusals
  that never say "I won't" (:mod:`.classifier`, :mod:`.features`, trained by :mod:`.train`);
* ``rules``: the same rules without the classifier, for comparison;
* ``gcg`` and ``xstest``: the published keyword rules, as published (:mod:`.published`).

Which scorer produced each metric, and each scorer's measured agreement with human labels:
:mod:`.agreement` (docs/refusal-scoring.md).

The rate helpers (:func:`classify`, :func:`score_responses`) never trust a scorer with an empty response:
``None``, ``""`` and whitespace-only text (zero-width spaces included) are counted as ``empty``, apart from
both refusals and compliance, whatever scorer is chosen.

Agreement with labelled responses (the frozen test split of tests/data/refusal_eval/)::

    python -m safety_tradeoff.refusal tests/data/refusal_eval/test.jsonl --by source,label,tags
"""
from .evaluate import accuracy_table, load_labelled, main
from .published import (
    GCG_PREFIXES, XSTEST_APOLOGY_PREFIXES, XSTEST_REFUSAL_PREFIXES, is_refusal_gcg, is_refusal_xstest,
)
from .rules import is_refusal, is_refusal_rules, partial_refusal
from .scorers import SCORERS, Scorer, classify, get_scorer, score_responses
from .text import is_empty

__all__ = [
    "GCG_PREFIXES", "XSTEST_APOLOGY_PREFIXES", "XSTEST_REFUSAL_PREFIXES", "SCORERS", "Scorer",
    "is_refusal", "is_refusal_rules", "is_refusal_gcg", "is_refusal_xstest", "partial_refusal", "is_empty",
    "get_scorer", "classify",
    "score_responses", "load_labelled", "accuracy_table", "main",
]
