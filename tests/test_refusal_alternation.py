"""The scorer's speed rewrites match what they replaced.

Issue #14 asked for 10,000 responses in 5 s on one core; the default scorer got there by grouping its word
lists letter by letter (:mod:`safety_tradeoff.refusal.alternation`) and by rewriting a few text-preparation
patterns. Each rewrite is checked here against the plain form it replaced (written out below as the
reference), on the labelled responses and on random text built to hit the corner cases.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from safety_tradeoff.refusal import load_labelled
from safety_tradeoff.refusal import text as text_mod
from safety_tradeoff.refusal.alternation import any_of, fast_alternation, split_alternatives
from safety_tradeoff.refusal.cues import HARD, HARD_ANY
from safety_tradeoff.refusal.text import normalise, sentences

DATA = Path(__file__).parent / "data"
FILES = (DATA / "refusal_eval" / "test.jsonl", DATA / "refusal_eval" / "dev.jsonl", DATA / "refusal_labelled.jsonl")

# Alternatives that exercise every case of the grouping: shared prefixes, a word that is a prefix of another
# ("law", "laws", "lawful"), \w* tails, an optional tail, a group to distribute, classes holding "|" and ")",
# a quantifier right after the first letter, digits, bare words, and alternatives that cannot be grouped
# (a lookbehind, "^", a group) standing between groupable ones.
CASES = [
    (r"\b(?:law|laws|lawful|lab\w*|la)\b", r"\bkind(?:ness)?\b", r"\bharm\w*", r"\bhurt\w*|\bhelp(?:ing)?"),
    (r"\bno\b", r"(?<!not )\bsafe\w*", r"\bnot (?:now|never)", r"^no\w*", r"\bnone\b", r"\bnoon"),
    (r"\b(?:a|an|the) (?:\w+ )?(?:doctor|lawyer)", r"\ba?b\w*", r"\bab[|)]c", r"(?:\bcat|dog) \w+", r"\bca\w*"),
    (r"counsel", r"crisis", r"\b988\b", r"therap", r"\b9\d\d", r"crime\w*", r"\bcri", r"cr(?:y|ied)\b"),
    (r"\bi(?:'m| am)? (?:not |un)able to (?:help|do)\b", r"\bi (?:can't|cannot) help\b", r"\bi(?<!if i)'m sorry",
     r"\bi'?m?t{1,3} help", r"\bit(?:'s| is) not\b", r"\bi\b"),
]


def _plain(alternatives: tuple[str, ...]) -> re.Pattern[str]:
    """The reference: the alternatives joined as written, in order."""
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def _corpus() -> list[str]:
    """Labelled responses' sentences, plus random strings over the cases' words, spaces and punctuation."""
    texts = [s for f in FILES for r in load_labelled(f) for s in sentences(normalise(r["response"]))]
    words = re.findall(r"[a-z0-9'|)]+", " ".join("".join(c) for c in CASES)) + [
        "not", "if", "i", "i'm", "can't", "help", "doctor", "the", "a", "la", "laws", "kindness", "9", "88"]
    rng = random.Random(14)
    seps = [" ", " ", " ", ", ", ". ", "-", "'", ""]
    for _ in range(4000):
        texts.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 12))).strip())
    return texts


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _corpus()


@pytest.mark.parametrize("alternatives", CASES)
def test_grouped_alternation_matches_like_the_plain_one(alternatives, corpus):
    """Same matches, spans included, as the alternatives joined in order."""
    grouped = re.compile(fast_alternation(*alternatives))
    plain = _plain(alternatives)
    for s in corpus:
        assert [m.span() for m in grouped.finditer(s)] == [m.span() for m in plain.finditer(s)], (s, alternatives)


@pytest.mark.parametrize("alternatives", CASES)
def test_unordered_alternation_answers_whether_like_the_plain_one(alternatives, corpus):
    """keep_order=False: whether (and where first) some alternative matches is unchanged."""
    grouped = any_of(*alternatives, keep_order=False)
    plain = _plain(alternatives)
    for s in corpus:
        g, p = grouped.search(s), plain.search(s)
        assert (g is None) == (p is None), (s, alternatives)
        assert g is None or g.start() == p.start(), (s, alternatives)


def test_split_alternatives_respects_groups_classes_and_escapes():
    assert split_alternatives(r"a|b(?:c|d)|[|)]e|\|f|") == ["a", "b(?:c|d)", "[|)]e", r"\|f", ""]


def test_refusal_yes_no_pattern_agrees_with_the_ordered_one(corpus):
    """HARD_ANY is HARD's alternatives grouped across their order: it refuses exactly where HARD does."""
    prepared = [s for f in FILES for r in load_labelled(f) for s in sentences(text_mod.prepare(r["response"]))]
    for s in prepared + corpus:
        assert bool(HARD_ANY.search(s)) == bool(HARD.search(s)), s


# ----------------------------------------------------------------------------- text preparation
# The patterns as they were before the speed work: the references for the rewritten ones.
OLD_SPLIT = re.compile(r"\n+|(?<=[.!?])[\"')\]]*\s+"
                       r"|\s+(?=(?:\d{1,2}[.)]|step\s*(?:\d+|one|two|three|four|five)\b)[:.,)]?\s)")
OLD_BARE = re.compile(r"\b(can|won|don|isn|shouldn|wouldn|couldn|doesn|didn|aren|wasn|mustn)t\b|\b(i)(m)\b|"
                      r"\b(that)(s)\b")
OLD_INFORMAL = re.compile(r"\b(?:gonna|wanna|sry|soz|sorry+|u)\b")
OLD_REPEATED = re.compile(r"\b(\w+(?:'\w+)?)(?: \1\b)+")
OLD_SINGLE_QUOTED = re.compile(r"(?<![\w'])'((?:[^'\n]|(?<=\w)'(?=\w)){1,400}?)'(?!\w)")
INFORMAL = {"gonna": "going to", "wanna": "want to", "sry": "sorry", "soz": "sorry", "u": "you"}


def _old_word_fixes(t: str) -> str:
    t = OLD_BARE.sub(lambda m: m.group(1) + "'t" if m.group(1) else "i'm" if m.group(2) else "that's", t)
    return OLD_INFORMAL.sub(lambda m: "sorry" if m.group(0).startswith("sorr") else INFORMAL[m.group(0)], t)


def _random_texts(n: int) -> list[str]:
    """Strings dense in what the preparation patterns react to: sentence ends, quotes, brackets, list
    markers, contractions without apostrophes, informal and repeated words."""
    rng = random.Random(7)
    atoms = ["a", "b", "the", "the the", "i", "im", "cant", "dont", "thats", "u", "gonna", "sorryyy", "soz", "don't",
             "1.", "2)", "step", "one", "'", '"', ")", "]", ".", "!", "?", " ", " ", " ", "\n", "\t", "  ", "it's",
             "'q'", "x'y", "can 't", "1"]
    return ["".join(rng.choice(atoms) + rng.choice(["", " "]) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def test_sentence_split_is_unchanged():
    for t in _random_texts(6000) + [normalise(r["response"]) for f in FILES for r in load_labelled(f)]:
        assert text_mod._SPLIT.split(t) == OLD_SPLIT.split(t), repr(t)


def test_word_repairs_repeats_and_quote_masking_are_unchanged():
    for t in _random_texts(6000) + [r["response"].lower() for f in FILES for r in load_labelled(f)]:
        assert text_mod._WORD_FIX.sub(text_mod._fix_word, t) == _old_word_fixes(t), repr(t)
        assert text_mod._REPEATED_WORD.sub(r"\1", t) == OLD_REPEATED.sub(r"\1", t), repr(t)
        assert ([m.span() for m in text_mod._SINGLE_QUOTED.finditer(t)]
                == [m.span() for m in OLD_SINGLE_QUOTED.finditer(t)]), repr(t)
