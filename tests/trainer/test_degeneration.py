"""What counts as "not an answer" on the review page and in the alignment bench."""

from __future__ import annotations

import pytest

from training.trainer.degeneration import CHARACTER_LOOP, FRAGMENT, SYMBOLS, WORD_LOOP, degeneration


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Yes.", FRAGMENT),
        ("", FRAGMENT),
        ("### *** --- ((( ))) ### *** --- ((( ))) ### *** --- so we go on", SYMBOLS),
        ("Here is the plan. " + "go go go go more more " * 10, WORD_LOOP),
        ("Sure! " + "POPPI!" * 12, CHARACTER_LOOP),
    ],
)
def test_broken_outputs_are_named_by_how_they_broke(text, reason):
    assert degeneration(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "Paris is the capital of France.",
        "1. Preheat the oven.\n2. Mix flour, eggs and milk.\n3. Bake for twenty minutes.",
        "Rain falls when water vapour cools and condenses into droplets heavy enough to fall. " * 2,
    ],
)
def test_short_lists_and_plain_answers_are_answers(text):
    assert degeneration(text) is None
