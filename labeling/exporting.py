"""Turning votes and ratings into TRL training rows: plain functions over plain data, no database.

The rules, in one place:

- A pair's outcome is the admin's adjudication if there is one; otherwise the choice that a strict
  majority (more than half) of its votes picked; otherwise it is a *disagreement*.
- DPO: each pair won by a or b gives one row, the winner chosen and the loser rejected. If any
  winning vote carried an edit, the earliest such edit is the chosen text (an edit replaces the
  chosen side). Ties, both-bad and disagreements give no row and are counted.
- KTO: a pair won by a or b labels the winner True and the loser False (the winner's text being
  the earliest edit, as in DPO); both-bad labels both False; a thumbs majority labels its
  completion True (up) or False (down), and an even split is a disagreement. A text that gets
  both labels (say, chosen in one pair of a ranking and rejected in another) is left out and
  counted as conflicting. Each (prompt, text) appears at most once.
- Only tasks that are complete, or adjudicated by an admin, are used; open ones are counted as
  incomplete.
- A pair whose winner and loser are the same text (say, a blind battle between two versions that wrote
  the same answer) carries no preference: it gives no DPO row and is counted as identical.
- ``min_agreement`` (DPO): a pair whose winning side got less than this share of its votes is left out
  and counted as low-agreement (1.0 keeps only unanimous pairs); adjudicated pairs are always kept.
- DPO: a pair whose chosen answer was cut off at the generation token limit (and not replaced by an edit) is
  left out and counted as ``cut_off_chosen``, unless ``keep_cut_off_chosen``. Between two cut-off answers
  the one a reader prefers is often only the denser one (a list, numbers, symbols fill the same token budget
  with fewer words), and training on it teaches the model to write answers that never end: on the alignment
  bench 38 of 127 length-rule rows were such pairs, and the tuned model's answers looped as lists and symbols.

TRL's conversational format: the prompt is the list of chat messages, and each answer is a list
holding one assistant message.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

OUTCOMES = ("a", "b", "tie", "both_bad", "disagreement")


@dataclass(frozen=True)
class VoteData:
    choice: str
    edited_text: str = ""


@dataclass(frozen=True)
class PairData:
    """One pair task. ``votes`` in the order they were cast (the earliest edit wins)."""

    task_id: int
    prompt_id: int
    messages: list[dict[str, str]]
    text_a: str
    text_b: str
    votes: Sequence[VoteData] = ()
    adjudicated: str = ""
    complete: bool = True
    cut_off_a: bool = False  # the answer hit the token limit when it was generated
    cut_off_b: bool = False


@dataclass(frozen=True)
class RateData:
    """One thumbs task: its completion and the ratings given ("up" or "down")."""

    task_id: int
    prompt_id: int
    messages: list[dict[str, str]]
    text: str
    ratings: Sequence[str] = ()
    complete: bool = True


@dataclass
class ExportSummary:
    """What an export used and what it left out, and why.

    ``considered`` counts the tasks used (complete or adjudicated); ``rows`` the rows written;
    ``ties``, ``both_bad`` and ``disagreements`` count tasks that gave no preference (for KTO,
    both-bad pairs do give two False rows and are still counted here); ``conflicting`` counts KTO
    texts left out for having both labels; ``incomplete`` counts open tasks; ``edited`` counts rows
    whose chosen text is an annotator's edit; ``identical`` counts pairs of two identical texts;
    ``low_agreement`` pairs below ``min_agreement``; ``cut_off_chosen`` pairs whose chosen answer was cut off
    at the token limit; ``heldout`` the complete tasks on held-out prompts left out of training (see
    ``labeling.selectors.project_export``).
    """

    considered: int = 0
    rows: int = 0
    ties: int = 0
    both_bad: int = 0
    disagreements: int = 0
    conflicting: int = 0
    incomplete: int = 0
    edited: int = 0
    identical: int = 0
    low_agreement: int = 0
    cut_off_chosen: int = 0
    heldout: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Label:
    messages: list[dict[str, str]]
    text: str
    labels: set[bool] = field(default_factory=set)
    edited: bool = False


def pair_outcome(votes: list[str], adjudicated: str = "") -> str:
    """'a', 'b', 'tie', 'both_bad', or 'disagreement' when no choice has more than half of ``votes``."""
    if adjudicated:
        if adjudicated not in OUTCOMES[:4]:
            raise ValueError(f"Unknown adjudicated choice {adjudicated!r}")
        return adjudicated
    for choice in OUTCOMES[:4]:
        if votes.count(choice) * 2 > len(votes):
            return choice
    return "disagreement"


def rating_outcome(ratings: list[str]) -> str:
    """'up', 'down', or 'disagreement' when neither has more than half of ``ratings``."""
    for value in ("up", "down"):
        if ratings.count(value) * 2 > len(ratings):
            return value
    return "disagreement"


def _winner_text(pair: PairData, outcome: str) -> tuple[str, bool]:
    """The chosen side's text: the earliest edit among the votes for the winner, else the original."""
    for vote in pair.votes:
        if vote.choice == outcome and vote.edited_text.strip():
            return vote.edited_text, True
    return (pair.text_a if outcome == "a" else pair.text_b), False


def _rewrite(pair: PairData, outcome: str) -> str:
    """On a tie or both-bad outcome, the earliest answer written by a voter for that outcome; else ""."""
    if outcome not in ("tie", "both_bad"):
        return ""
    return next((vote.edited_text for vote in pair.votes if vote.choice == outcome and vote.edited_text.strip()), "")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _used(task: PairData | RateData, summary: ExportSummary) -> bool:
    adjudicated = isinstance(task, PairData) and bool(task.adjudicated)
    if not task.complete and not adjudicated:
        summary.incomplete += 1
        return False
    summary.considered += 1
    return True


def _count_no_preference(outcome: str, summary: ExportSummary) -> None:
    if outcome == "tie":
        summary.ties += 1
    elif outcome == "both_bad":
        summary.both_bad += 1
    elif outcome == "disagreement":
        summary.disagreements += 1


def vote_share(votes: Sequence[VoteData], outcome: str) -> float:
    """The share of ``votes`` that picked ``outcome`` (1.0 when there are none, as for an adjudicated pair)."""
    return sum(1 for vote in votes if vote.choice == outcome) / len(votes) if votes else 1.0


def dpo_rows(
    pairs: Sequence[PairData], *, min_agreement: float = 0.0, keep_cut_off_chosen: bool = False
) -> tuple[list[dict], ExportSummary]:
    """One {"prompt", "chosen", "rejected"} row per pair won by a or b, in the order given."""
    summary = ExportSummary()
    rows: list[dict] = []
    for pair in pairs:
        if not _used(pair, summary):
            continue
        outcome = pair_outcome([vote.choice for vote in pair.votes], pair.adjudicated)
        rewrite = _rewrite(pair, outcome)
        if rewrite:
            # Neither answer did what the guideline asks and an annotator wrote one that does: it is preferred
            # to both, so it teaches what the model rarely says on its own.
            for shown in dict.fromkeys((pair.text_a, pair.text_b)):
                if shown.strip() != rewrite.strip():
                    rows.append({"prompt": pair.messages, "chosen": _assistant(rewrite), "rejected": _assistant(shown)})
                    summary.edited += 1
            continue
        if outcome not in ("a", "b"):
            _count_no_preference(outcome, summary)
            continue
        if not pair.adjudicated and vote_share(pair.votes, outcome) < min_agreement:
            summary.low_agreement += 1
            continue
        chosen, edited = _winner_text(pair, outcome)
        rejected = pair.text_b if outcome == "a" else pair.text_a
        if chosen.strip() == rejected.strip():
            summary.identical += 1
            continue
        if not edited and not keep_cut_off_chosen and (pair.cut_off_a if outcome == "a" else pair.cut_off_b):
            summary.cut_off_chosen += 1
            continue
        summary.edited += edited
        rows.append({"prompt": pair.messages, "chosen": _assistant(chosen), "rejected": _assistant(rejected)})
    summary.rows = len(rows)
    return rows, summary


def kto_rows(pairs: Sequence[PairData], rates: Sequence[RateData] = ()) -> tuple[list[dict], ExportSummary]:
    """One {"prompt", "completion", "label"} row per (prompt, text) with a single label, in first-seen order."""
    summary = ExportSummary()
    labels: dict[tuple[int, str], _Label] = {}

    def label(prompt_id: int, messages: list[dict[str, str]], text: str, value: bool, *, edited: bool = False) -> None:
        entry = labels.setdefault((prompt_id, text), _Label(messages, text))
        entry.labels.add(value)
        entry.edited = entry.edited or edited

    for pair in pairs:
        if not _used(pair, summary):
            continue
        outcome = pair_outcome([vote.choice for vote in pair.votes], pair.adjudicated)
        if outcome in ("a", "b"):
            chosen, edited = _winner_text(pair, outcome)
            label(pair.prompt_id, pair.messages, chosen, True, edited=edited)
            label(pair.prompt_id, pair.messages, pair.text_b if outcome == "a" else pair.text_a, False)
            continue
        _count_no_preference(outcome, summary)
        if outcome == "both_bad":
            label(pair.prompt_id, pair.messages, pair.text_a, False)
            label(pair.prompt_id, pair.messages, pair.text_b, False)

    for rate in rates:
        if not _used(rate, summary):
            continue
        outcome = rating_outcome(list(rate.ratings))
        if outcome == "disagreement":
            summary.disagreements += 1
            continue
        label(rate.prompt_id, rate.messages, rate.text, outcome == "up")

    rows: list[dict] = []
    for entry in labels.values():
        if len(entry.labels) != 1:
            summary.conflicting += 1
            continue
        summary.edited += entry.edited
        rows.append({"prompt": entry.messages, "completion": _assistant(entry.text), "label": next(iter(entry.labels))})
    summary.rows = len(rows)
    return rows, summary
