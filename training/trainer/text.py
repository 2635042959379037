"""How long an answer is, as a reader counts it: the one word counter the length rules, the pairing and the
length-controlled win rate share."""
from __future__ import annotations


def word_count(text: str) -> int:
    """Words separated by whitespace ("three  words here" is 3)."""
    return len(text.split())
