"""Numbers, settings and durations as the run pages print them (training/templatetags/numbers.py)."""
from __future__ import annotations

import pytest
from django.template import Context, Template

from training.templatetags.numbers import (
    format_duration,
    format_number,
    format_rough_duration,
    format_setting,
    format_share,
    setting_rows,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-0.06400000000000006, "\u22120.064"),
        (0.1 + 0.2, "0.3"),
        (5e-05, "5e-5"),
        (0.0001, "1e-4"),
        (1.5e-4, "1.5e-4"),
        (0.001, "0.001"),
        (0.93, "0.93"),
        (0.93333333, "0.933"),
        (1.0, "1"),
        (-80.1, "\u221280.1"),
        (123.456, "123"),
        (999.7, "1000"),
        (12345.6, "12346"),
        (2.5e7, "2.5e7"),
        (0, "0"),
        (0.0, "0"),
        (-1, "\u22121"),
        (42, "42"),
        (None, "\u2014"),
        (True, "yes"),
        (False, "no"),
        (float("nan"), "not a number"),
        (float("-inf"), "\u2212\u221e"),
        ("sigmoid", "sigmoid"),
    ],
)
def test_it_formats_numbers_for_people(value, expected):
    assert format_number(value) == expected


def test_it_takes_fewer_digits_when_asked():
    assert format_number(0.72345, 2) == "0.72"


@pytest.mark.parametrize(("value", "expected"), [(0.925, "93%"), (1.0, "100%"), (0.5, "50%"), (0, "0%"), (None, "\u2014")])
def test_it_formats_shares_as_whole_percentages(value, expected):
    assert format_share(value) == expected


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (["q_proj", "k_proj", "v_proj", "o_proj"], "", "q_proj, k_proj, v_proj, o_proj"),
        ([], "", "\u2014"),
        (True, "", "yes"),
        (False, "precompute_ref_log_probs", "no"),
        (None, "", "\u2014"),
        (None, "loss_type", "default for the method"),
        (-1, "max_steps", "no limit (the epochs decide)"),
        (200, "max_steps", "200"),
        (5e-05, "learning_rate", "5e-5"),
        ({"r": 16, "dropout": 0.05}, "", "r 16; dropout 0.05"),
    ],
)
def test_it_formats_settings(value, key, expected):
    assert format_setting(value, key) == expected


def test_a_nested_setting_becomes_one_row_per_entry():
    rows = setting_rows({"learning_rate": 5e-05, "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}, "seed": 42})

    assert rows == [("learning rate", "5e-5"), ("lora r", "16"), ("lora target modules", "q_proj, v_proj"), ("seed", "42")]


def test_setting_rows_follow_the_given_order_then_the_alphabet():
    rows = setting_rows({"seed": 1, "zeta": 2, "alpha": 3, "method": "dpo"}, order=["method", "seed"])

    assert [label for label, _ in rows] == ["method", "seed", "alpha", "zeta"]


@pytest.mark.parametrize(
    ("seconds", "expected"), [(None, "\u2014"), (42.4, "42 s"), (60, "1 min"), (323, "5 min 23 s"), (3900, "1 h 5 min")]
)
def test_it_formats_elapsed_time(seconds, expected):
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(4, "a few seconds"), (44, "about 40 s"), (225, "about 4 min"), (250, "about 4 min"), (4500, "about 1 h 15 min")],
)
def test_it_rounds_forecasts(seconds, expected):
    assert format_rough_duration(seconds) == expected


def test_the_filters_work_in_templates():
    template = Template(
        "{% load numbers %}{{ lr|human_number }}|{{ acc|human_share }}|{{ mods|human_setting }}|"
        "{{ steps|human_setting:'max_steps' }}|{{ secs|rough_duration }}|{{ secs|human_duration }}|"
        "{% for label, text in settings|setting_rows %}{{ label }}={{ text }};{% endfor %}"
    )

    html = template.render(Context({
        "lr": 5e-05, "acc": 0.81, "mods": ["q_proj", "v_proj"], "steps": -1, "secs": 338,
        "settings": {"precompute_ref_log_probs": False, "desirable_weight": None},
    }))

    assert html == (
        "5e-5|81%|q_proj, v_proj|no limit (the epochs decide)|about 6 min|5 min 38 s|"
        "desirable weight=balanced from the data;precompute ref log probs=no;"
    )


def test_a_path_wraps_between_folders_and_stays_escaped():
    from training.templatetags.paths import path_breaks

    assert path_breaks("/var/runs/8f3c2a71/attempt-1/adapter") == "/<wbr>var/<wbr>runs/<wbr>8f3c2a71/<wbr>attempt-1/<wbr>adapter"
    assert path_breaks('/m/<img src=x onerror="a()">') == "/<wbr>m/<wbr>&lt;img src=x onerror=&quot;a()&quot;&gt;"
    assert path_breaks(None) == ""

