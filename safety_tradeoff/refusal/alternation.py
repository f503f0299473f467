"""Fast alternations for Python's ``re``: the refusal scorer's word lists, grouped letter by letter.

Python's regular-expression engine has no trie: ``\\b(?:harm|hurt|help|...)`` tries every alternative at
every word start. The scorer's cue lists run to hundreds of alternatives over every sentence of every
response, and that was most of its time (issue #14: 10,000 responses in 5 s on one core). Grouping the
alternatives under shared first characters (``\\b(?:h(?:arm|urt|elp))``) gives the same matches for a
fraction of the comparisons. Nothing here knows about refusals; :mod:`.cues` and :mod:`.cues_implicit`
use it.
"""
from __future__ import annotations

import re
from collections.abc import Iterator


def _structure(pattern: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, group depth) of the characters that shape a regular expression: escapes and the
    insides of character classes are skipped; a ``)`` is reported at the depth it closes to."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]" or pattern[i - 1] == "["
        elif c == "[":
            in_class = True
        else:
            depth += {"(": 1, ")": -1}.get(c, 0)
            yield i, c, depth
        i += 1


def split_alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regular expression (escapes, groups and character classes respected)."""
    cuts = [i for i, c, depth in _structure(pattern) if c == "|" and depth == 0]
    return [pattern[a + 1:b] for a, b in zip([-1] + cuts, cuts + [len(pattern)])]


_LITERAL_START = re.compile(r"[a-z0-9' -](?![?*+{])")  # a plain character, not repeated or optional


def _distribute(alternative: str) -> list[str]:
    r"""``\b(?:a|b)rest`` -> ``\barest``, ``\bbrest``: the same matches in the same order of preference
    (the regex engine tries ``a`` then ``rest``, then ``b`` then ``rest``), now each with a first letter."""
    if not alternative.startswith("\\b(?:"):
        return [alternative]
    end = next(i for i, c, depth in _structure(alternative) if c == ")" and depth == 0)
    inner, rest = alternative[5:end], alternative[end + 1:]
    if rest[:1] in ("?", "*", "+", "{"):
        return [alternative]
    return [f"\\b{a}{rest}" for a in split_alternatives(inner)]


def _trie(alternatives: list[str]) -> str:
    """Alternatives that open with the same literal character, grouped under it, recursively; an alternative
    that opens otherwise (a group, a class, an assertion, nothing) stays in place and splits the groups."""
    out: list[str] = []
    groups: dict[str, list[str]] = {}

    def flush() -> None:
        for char, rests in groups.items():
            out.append(char + (rests[0] if len(rests) == 1 else f"(?:{_trie(rests)})"))
        groups.clear()

    for a in alternatives:
        if _LITERAL_START.match(a):
            groups.setdefault(a[0], []).append(a[1:])
        else:
            flush()
            out.append(a)
    flush()
    return "|".join(out)


def fast_alternation(*patterns: str, keep_order: bool = True) -> str:
    r"""One alternation of ``patterns``, with the alternatives that open with a word (``\bharm``, or a bare
    ``counsel``) grouped letter by letter: ``\b(?:h(?:arm\w*|urt\w*)|c(?:r(?:uel\w*|ime)))``.

    Python's ``re`` tries every alternative at every word start, so a list of 200 words costs 200
    comparisons a word; grouped, a few dozen (the zone gate runs about 5x faster, the whole default scorer
    about 2x). The matches are the same, spans included: grouping only moves an alternative past others
    that open with a different character (which cannot match where it does), never past one that opens
    otherwise (a lookbehind, ``^``, a group), which stays where it was and splits the groups around it.

    ``keep_order=False`` groups across those too, for patterns that are only ever asked *whether* they
    match: the positions where some alternative matches do not depend on the order, only which
    alternative (and so the span) wins at a position does.
    """
    alternatives = [a for p in patterns for alt in split_alternatives(p) for a in _distribute(alt)]
    out: list[str] = []
    runs: dict[str, list[str]] = {}  # r"\b" + a word, or a bare word -> consecutive alternatives of that kind
    for a in alternatives:
        kind = ("\\b" if a.startswith("\\b") and _LITERAL_START.match(a[2:]) else
                "" if _LITERAL_START.match(a) else None)
        if keep_order and (kind is None or kind not in runs):
            out.extend(_flush(runs))
        if kind is None:
            out.append(a)
        else:
            runs.setdefault(kind, []).append(a[len(kind):])
    return "|".join(_flush(runs) + out if not keep_order else out + _flush(runs))


def _flush(runs: dict[str, list[str]]) -> list[str]:
    """The grouped runs of :func:`fast_alternation` as alternatives (and empties ``runs``)."""
    out = [f"{kind}(?:{_trie(words)})" for kind, words in runs.items()]
    runs.clear()
    return out


def any_of(*patterns: str, flags: int = 0, keep_order: bool = True) -> re.Pattern[str]:
    """One compiled alternation of ``patterns`` (:func:`fast_alternation`): the cue lists are written one
    alternative per line, so each can be read alone, and compiled grouped, so they run fast.
    ``keep_order=False`` for patterns whose match spans are never used."""
    return re.compile(fast_alternation(*patterns, keep_order=keep_order), flags)
