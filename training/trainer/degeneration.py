"""Is an output an answer at all? Loops, fragments and symbol soup, the ways a small model breaks when preference
tuning pushes it too far while its preference accuracy still rises. No Django here."""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z]{2,}")
_RUN = re.compile(r"(.{1,12}?)\1{8,}", re.DOTALL)

FRAGMENT = "fewer than three words"
SYMBOLS = "mostly symbols"
WORD_LOOP = "the same few words over and over"
CHARACTER_LOOP = "one short string repeated"


def degeneration(text: str) -> str | None:
    """Why `text` is not an answer (one of FRAGMENT, SYMBOLS, WORD_LOOP, CHARACTER_LOOP), or None.

    A loop is judged on the last 60% of the words: an answer may open with a repeated phrase and recover, while
    a looping one ends on the repeats (fewer than 30% distinct words over at least 20).
    """
    words = _WORD.findall(text)
    if len(words) < 3:
        return FRAGMENT
    visible = text.replace(" ", "").replace("\n", "")
    if sum(ch.isalnum() for ch in text) < 0.5 * len(visible):
        return SYMBOLS
    tail = [w.lower() for w in words[int(len(words) * 0.4) :]]
    if len(tail) >= 20 and len(set(tail)) / len(tail) < 0.3:
        return WORD_LOOP
    if _RUN.search(text):
        return CHARACTER_LOOP
    return None


def is_degenerate(text: str) -> bool:
    return degeneration(text) is not None
