"""Text preparation shared by the default rules and the classifier: normalisation, quotation masking,
sentence and list-item splitting, and the empty-response test every rate helper applies first."""
from __future__ import annotations

import re
import unicodedata

from .alternation import any_of

MAX_CHARS = 2000  # about 400 words; every labelled response of the project is shorter
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_CHARMAP = str.maketrans({**dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff"),
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u00b4": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2033": '"', "\u2014": " - ", "\u2013": " - ", "\u2022": "-", "\u00b7": "-", "\u25aa": "-",
})
_SPACED_CONTRACTION = re.compile(r"(\w) ?' ?(t|m|s|re|ve|ll|d)\b")
# Contractions written without apostrophe and informal words, repaired in one pass (no word is in both)
_REPAIRS = {**{f"{w}t": f"{w}'t" for w in
               ("can", "won", "don", "isn", "shouldn", "wouldn", "couldn", "doesn", "didn", "aren", "wasn", "mustn")},
            "im": "i'm", "thats": "that's", "gonna": "going to", "wanna": "want to", "sry": "sorry", "soz": "sorry",
            "u": "you"}
_WORD_FIX = any_of(r"\b(?:" + "|".join(_REPAIRS) + r"|sorry+)\b")
# possessive (\w++): a word never matches by giving letters back, and not trying halves the cost
_REPEATED_WORD = re.compile(r"\b(\w++(?:'\w++)?+)(?: \1\b)+")
_EMPHASIS = re.compile(r"\*\*|__|^[ \t]*(?:#{1,6}|>)[ \t]*", re.M)
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.!?;:])")
_HSPACE = re.compile(r"[ \t\r\f\v]+")
_DOUBLE_QUOTED = re.compile(r'"([^"]{1,800})"')
# the quote comes first and the lookbehind after it ("'" not after a letter or "'"): the engine then jumps
# from quote to quote instead of trying every position
_SINGLE_QUOTED = re.compile(r"'(?<![\w']')((?:[^'\n]|(?<=\w)'(?=\w)){1,400}?)'(?!\w)")


def is_empty(text: str | None) -> bool:
    """True for None, "" and whitespace-only text (zero-width characters count as whitespace)."""
    return text is None or not str(text).translate(_ZERO_WIDTH).strip()


def _fix_word(m: re.Match[str]) -> str:
    """`cant` -> `can't`, `im` -> `i'm`, `thats` -> `that's` (informal or tokenizer-mangled text);
    `gonna` -> `going to`, `sry` / `sorryyy` -> `sorry`, `u` -> `you`."""
    return _REPAIRS.get(m.group(0), "sorry")


def normalise(text: str) -> str:
    """Lower-case, straight-apostrophe, contraction-repaired text; newlines kept (lists need them).

    Each substitution runs only when its trigger characters occur (``in`` tests are far cheaper than a
    regex pass, and most responses need few of them); the result is the same."""
    t = unicodedata.normalize("NFKC", text).translate(_CHARMAP).lower()
    if " '" in t or "' " in t:  # without a space around it, a match is replaced by itself
        t = _SPACED_CONTRACTION.sub(r"\1'\2", t)
    t = _WORD_FIX.sub(_fix_word, t)
    t = _REPEATED_WORD.sub(r"\1", t)
    if "**" in t or "__" in t or "#" in t or ">" in t:
        t = _EMPHASIS.sub("", t)
    if any(c in t for c in (" ,", " .", " !", " ?", " ;", " :", "\t")):
        t = _SPACE_BEFORE_PUNCT.sub(r"\1", t)
    if any(c in t for c in ("  ", "\t", "\r", "\f", "\v")):
        t = _HSPACE.sub(" ", t)
    return t.strip()


def _quote_placeholder(m: re.Match[str]) -> str:
    """Keep a sentence end that was inside the quote, so sentence splitting still sees it."""
    return '"q".' if m.group(1).rstrip()[-1:] in ".!?" else '"q"'


def mask_quotes(t: str) -> str:
    """Replace quoted spans: quoted refusals are not the model's, quoted requests not its content."""
    if len(t) > 1 and t[0] == t[-1] == '"' and '"' not in t[1:-1]:
        t = t[1:-1].strip()
    if '"' in t:
        t = _DOUBLE_QUOTED.sub(_quote_placeholder, t)
    return _SINGLE_QUOTED.sub(_quote_placeholder, t) if "'" in t else t


# ----------------------------------------------------------------------------- sentences
_INLINE_ITEM = r"(?:\d{1,2}[.)]|step\s*(?:\d+|one|two|three|four|five)\b)[:.,)]?\s"
# Splits at: newlines; closing quotes/brackets and spaces after a sentence end; spaces before an inline
# list marker ("... like this: 1. first"). Written to consume one of those characters first and check
# what came before with a lookbehind: the regex engine then skips the letters in between in one fast
# loop instead of trying every position (twice as fast; same splits).
_SPLIT = re.compile(
    r"[\s\"')\]](?:(?<=\n)\n*|(?<=[.!?][\"')\]])[\"')\]]*\s+|(?<=[.!?]\s)\s*|(?<=\s)\s*(?=" + _INLINE_ITEM + "))")
_BARE_MARKER = re.compile(r"^(?:\d{1,2}|[a-z])[.)]$")
ITEM = re.compile(
    r"^(?:\d{1,2}[.)]|\(?[a-h]\)|[-*+]|step\s*(?:\d+|#\d+|one|two|three|four|five)\b)\s*[:.,)-]?\s*\w")
STEP_ITEM = re.compile(r"^step\s*(?:1|#1|one)\b")


def sentences(t: str) -> list[str]:
    """Split on newlines, sentence ends and inline list markers; re-attach bare "1." markers."""
    out: list[str] = []
    for piece in _SPLIT.split(t):
        piece = piece.strip()
        if not piece:
            continue
        if out and _BARE_MARKER.match(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def prepare(text: str) -> str:
    """Normalised text with quotations masked: the string every default rule looks at.

    Only the first ``MAX_CHARS`` characters are read: refusals, lectures and premise rejections show
    themselves early, and the bound keeps the cost of a 2,000-token answer that of a short one."""
    return mask_quotes(normalise(text[:MAX_CHARS]))
