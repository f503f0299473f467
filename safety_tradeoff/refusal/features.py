"""What the classifier sees of a response: the rules' cue counts and the response's word n-grams.

One pass of text preparation (:func:`.text.prepare`) serves both the rules and the classifier, so the
default scorer reads each response once. Everything here is pure Python and standard library.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .cues import CODE, SOFT, SUPPORT
from .cues_implicit import (
    CONSEQUENCE, DEFINITION, INFORMATIVE, NEGATION, NORMATIVE, PREMISE, REDIRECT, SECOND_PERSON, ZONE, ZONE_WORDS,
)
from .published import is_refusal_xstest
from .text import ITEM

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+|[?!:]")
_AFFIRMATIVE = re.compile(r"^(?:sure|certainly|of course|absolutely|yes|yeah|great|good question|here|okay|ok)\b")
HEAD_TOKENS = 12  # n-grams among the first tokens also count separately: openings carry most of the signal
LEAD = 2  # sentences that count as the opening for the cue features


@dataclass
class Reading:
    """A prepared response: its text, sentences, cue counts and n-grams (computed once, used by rules and model)."""
    text: str
    sents: list[str]
    dense: dict[str, float] = field(default_factory=dict)
    ngrams: set[str] = field(default_factory=set)


def _count(pattern: re.Pattern[str], sents: Sequence[str], gate: Sequence[bool]) -> tuple[int, int]:
    """(sentences with the cue, of which in the opening); sentences outside ``gate`` cannot match."""
    hits = [g and bool(pattern.search(s)) for s, g in zip(sents, gate)]
    return sum(hits), sum(hits[:LEAD])


def ngrams(tokens: Sequence[str]) -> set[str]:
    """Unigrams and bigrams, plus the same marked ``^`` for the opening tokens."""
    grams = set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:])}
    head = tokens[:HEAD_TOKENS]
    grams |= {f"^{g}" for g in head} | {f"^{a} {b}" for a, b in zip(head, head[1:])}
    return grams


def zone_hits(sents: Sequence[str]) -> list[bool]:
    """Which sentences carry a cue of the implicit zone (rule 5: ``ZONE``, the union of the four cue lists).

    The cue patterns only run on sentences that hold a zone word (every cue match contains one)."""
    return [bool(ZONE_WORDS.search(s)) and bool(ZONE.search(s)) for s in sents]


def dense_features(sents: Sequence[str], text: str, hits: Sequence[bool] | None = None,
                   normative: int | None = None) -> dict[str, float]:
    """Cue counts (log-scaled), densities and shape: the hand-written part of the classifier's input.

    ``hits`` (:func:`zone_hits`) and ``normative`` (lecture words in ``text``) when the caller has them: the
    four cue lists only run on the sentences that ``hits`` marks."""
    words = max(1, len(text.split()))
    out: dict[str, float] = {}
    hits = zone_hits(sents) if hits is None else hits
    for name, pattern in (("soft", SOFT), ("premise", PREMISE), ("redirect", REDIRECT), ("support", SUPPORT)):
        n, lead = _count(pattern, sents, hits)
        out[name] = math.log1p(n)
        out[f"{name}_lead"] = float(lead > 0)
    normative = len(NORMATIVE.findall(text)) if normative is None else normative
    informative = len(INFORMATIVE.findall(text))
    out["normative"] = math.log1p(normative)
    out["normative_density"] = 10 * normative / words
    out["informative"] = math.log1p(informative)
    out["informative_density"] = 10 * informative / words
    lead = " ".join(sents[:1])
    out["negation_lead"] = float(bool(NEGATION.search(lead)))
    out["negation_density"] = 10 * len(NEGATION.findall(text)) / words
    out["consequence"] = math.log1p(len(CONSEQUENCE.findall(text)))
    out["you_density"] = 10 * len(SECOND_PERSON.findall(text)) / words
    out["definition_start"] = float(bool(DEFINITION.match(lead)))
    out["items"] = math.log1p(sum(bool(ITEM.match(s)) for s in sents))
    out["code"] = float(any(CODE.search(s) for s in sents))
    out["sentences"] = math.log1p(len(sents))
    out["words"] = math.log1p(words)
    out["affirmative_start"] = float(bool(_AFFIRMATIVE.match(text)))
    out["xstest_prefix"] = float(is_refusal_xstest(text))
    out["question"] = float("?" in text)
    return out


def read(text: str, sents: list[str], hits: Sequence[bool] | None = None, normative: int | None = None) -> Reading:
    """The classifier's view of a prepared text split into ``sents`` (``hits``, ``normative``: see
    :func:`dense_features`)."""
    tokens = _TOKEN.findall(text)
    return Reading(text, sents, dense_features(sents, text, hits, normative), ngrams(tokens))
