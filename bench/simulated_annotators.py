"""Simulated annotators for the alignment benches: each prefers answers by one hidden rule, and can flip a
share of its votes at random (annotator noise).

A rule scores one answer (higher is preferred); comparing two scores gives a vote, equal scores a tie. The
rules are of different kinds on purpose: a length preference, a format, a word to avoid, and a tone.

Every simulated annotator, like a person, first rejects an answer that is not an answer at all: fewer than
three real words, a loop that repeats itself, or mostly symbols (`is_degenerate`). Without that, "fewer words"
is won by a string of emoji, which has no spaces and so counts as one word.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

_LIST_LINE = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+\S")
_AVOIDED = re.compile(r"\bimportan(?:t|tly|ce)\b", re.IGNORECASE)
_POLITE_OPENER = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|great question|good question|happy to|i'd be (?:happy|glad)|"
    r"glad you asked|thanks for asking|here(?:'s| is| are)|let's|let me)\b",
    re.IGNORECASE,
)


# One definition of "not an answer", the one the review page counts with, and one word counter.
from training.trainer.degeneration import is_degenerate  # noqa: E402
from training.trainer.text import word_count  # noqa: E402


def _shorter(text: str) -> float:
    return -word_count(text)


def _longer(text: str) -> float:
    return float(word_count(text))


def _bullets(text: str) -> float:
    # A list of at least two items wins; among answers without one, nothing to prefer.
    return 1.0 if len(_LIST_LINE.findall(text)) >= 2 else 0.0


def _avoids_word(text: str) -> float:
    return -float(len(_AVOIDED.findall(text)))


def _polite_opener(text: str) -> float:
    return 1.0 if _POLITE_OPENER.match(text) else 0.0


THOROUGH_WORDS = 120


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    description: str
    score: Callable[[str], float]
    # A difference a reader does not notice is a tie: for length, under this share of the longer answer's
    # words (two cut-off answers of 120 and 126 words are "the same length" to a person, a coin flip to a strict
    # rule, and such coin flips cap any model's validation accuracy far below what the rule itself allows).
    unnoticed_share: float = 0.0

    def tells_apart(self, first: float, second: float) -> bool:
        if first == second:
            return False
        return abs(first - second) >= self.unnoticed_share * max(abs(first), abs(second))

    def satisfied(self, text: str) -> bool:
        """For rules with a pass/fail reading: does the answer have the preferred property."""
        if self.name == "thorough":
            return word_count(text) >= THOROUGH_WORDS
        return self.score(text) > 0 if self.name in ("bullets", "polite") else self.score(text) == 0


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("length", "length", "prefers the answer with fewer words, when it is at least 10% shorter", _shorter,
             unnoticed_share=0.1),
        Rule("bullets", "format", "prefers an answer laid out as a list (two or more list items)", _bullets),
        Rule("avoid", "word to avoid", "prefers answers that do not say 'important' (fewer uses wins)", _avoids_word),
        # Deliberately hackable: a reward model fitted to it pays for length itself, which a policy can always
        # add more of (the online-RL bench's reward-hacking case).
        Rule("thorough", "length (hackable)", "prefers the answer with more words, when it is at least 10% longer",
             _longer, unnoticed_share=0.1),
        Rule("polite", "tone", "prefers an answer that opens politely ('Sure', 'Here are', 'Great question', ...)", _polite_opener),
    )
}


def judge(rule: Rule, first: str, second: str, *, rng: random.Random, noise: float = 0.0) -> str:
    """'a' if the rule prefers ``first``, 'b' for ``second``, 'tie' when it cannot tell, 'both_bad' when neither
    is an answer; a degenerate answer always loses to a real one. With probability ``noise`` a decided vote is
    flipped (a careless or disagreeing annotator)."""
    bad_a, bad_b = is_degenerate(first), is_degenerate(second)
    if bad_a and bad_b:
        return "both_bad"
    if bad_a != bad_b:
        choice = "b" if bad_a else "a"
    else:
        a, b = rule.score(first), rule.score(second)
        if not rule.tells_apart(a, b):
            return "tie"
        choice = "a" if a > b else "b"
    if noise and rng.random() < noise:
        choice = "b" if choice == "a" else "a"
    return choice


# A thumbs annotator sees one answer alone: under the length rule it gives a thumbs-up to answers of at most
# this many words (about the bundled model's median answer to the bench prompts), under the others when the
# answer has the preferred property.
THUMBS_UP_MAX_WORDS = 80


def thumbs(rule: Rule, text: str, *, rng: random.Random, noise: float = 0.0) -> bool:
    """True for a thumbs-up by ``rule``; flipped with probability ``noise``."""
    if is_degenerate(text):
        up = False
    else:
        up = word_count(text) <= THUMBS_UP_MAX_WORDS if rule.name == "length" else rule.satisfied(text)
    if noise and rng.random() < noise:
        up = not up
    return up


@dataclass(frozen=True)
class VoteDetails:
    """What a person adds to a pick: how sure they are, a short reason now and then, and the time it took."""

    strength: int | None
    rationale: str
    time_spent_ms: int


def vote_details(rule: Rule, first: str, second: str, choice: str, *, rng: random.Random) -> VoteDetails:
    """Strength from how far apart the two answers are by ``rule`` (decisive when one is not an answer), a
    rationale on about a third of the votes, and a reading time that grows with the words read."""
    words = word_count(first) + word_count(second)
    seconds = 4.0 + words / rng.uniform(4.0, 7.0) + rng.expovariate(1 / 3.0)
    if choice not in ("a", "b"):
        reason = "Neither is an answer." if choice == "both_bad" else "Can't tell them apart by the guideline."
        return VoteDetails(None, reason if rng.random() < 0.4 else "", int(seconds * 1000))
    chosen, other = (first, second) if choice == "a" else (second, first)
    if is_degenerate(other):
        strength, reason = 3, "The other one is not an answer (it loops or breaks off)."
    elif rule.name == "length":
        longer = max(word_count(chosen), word_count(other)) or 1
        gap = abs(word_count(other) - word_count(chosen)) / longer
        strength = 3 if gap >= 0.5 else 2 if gap >= 0.25 else 1
        reason = "Says the same in fewer words." if word_count(chosen) < word_count(other) else "Shorter, but less clear."
    else:
        strength, reason = 2, f"Closer to the guideline ({rule.description.split('(')[0].strip()})."
    return VoteDetails(strength, reason if rng.random() < 0.33 else "", int(seconds * 1000))


_AVOIDED_SWAPS = {"important": "key", "importantly": "notably", "importance": "value"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def rewrite(rule: Rule, text: str) -> str:
    """How a person fixes an answer that misses ``rule``: adds the polite opening, swaps the avoided word for
    another, lays the sentences out as a list, or keeps the first two sentences. Returns ``text`` unchanged
    when there is nothing to fix or nothing to fix it with (a loop, a fragment)."""
    if is_degenerate(text):
        return text
    body = text.strip()
    if rule.name == "polite":
        return body if _POLITE_OPENER.match(body) else f"Sure! {body[0].upper()}{body[1:]}" if body else body
    if rule.name == "avoid":
        def swap(match: re.Match[str]) -> str:
            word = _AVOIDED_SWAPS[match.group(0).lower()]
            return word.capitalize() if match.group(0)[0].isupper() else word
        return _AVOIDED.sub(swap, body)
    sentences = [s.strip() for s in _SENTENCE_END.split(body) if s.strip()]
    if rule.name == "bullets":
        if _bullets(body) or len(sentences) < 2:
            return body
        return "\n".join(f"- {sentence}" for sentence in sentences)
    return " ".join(sentences[:2]) if len(sentences) > 2 else body
