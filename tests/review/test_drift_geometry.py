"""The quality-against-drift chart's geometry, without a database: data to SVG coordinates, ticks and labels."""
from __future__ import annotations

import math

import pytest

from training.review import drift_geometry
from training.review.drift_chart import method_name
from training.review.drift_geometry import PlotInput, chart_layout, nice_scale


def _point(key: str, kl: float, rate: float, low: float | None = None, high: float | None = None, name: str = "v") -> PlotInput:
    return PlotInput(key=key, name=name, method="DPO", kl=kl, rate=rate,
                     low=rate - 0.1 if low is None else low, high=rate + 0.1 if high is None else high)


def _label_box(point) -> tuple[float, float, float]:  # noqa: ANN001
    width = drift_geometry.text_width(point.label)
    x0 = point.label_x if point.anchor == "start" else point.label_x - width
    return x0, x0 + width, point.label_y - drift_geometry.FONT_SIZE / 3


@pytest.mark.parametrize("largest", [0.0, 1e-4, 0.0042, 0.042, 0.3, 1.0, 7.5, 120.0])
def test_nice_scale_ends_on_a_round_step_above_the_largest_value(largest):
    end, step = nice_scale(largest)

    assert end >= largest and end > 0
    assert 3 <= round(end / step) <= 6 and end <= 2 * max(largest, 0.01)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(mantissa == pytest.approx(m) for m in (1, 2, 2.5, 5))


def test_data_coordinates_map_onto_the_plot_box():
    layout = chart_layout([_point("a", 0.0, 0.5, 0.25, 0.75), _point("b", 0.05, 1.0, 0.9, 1.0)])
    a, b = layout.points

    assert layout.x_max == pytest.approx(0.06) and [t.value for t in layout.x_ticks] == pytest.approx([0, 0.02, 0.04, 0.06])
    assert (a.x, a.y) == (layout.left, layout.reference_y) == (layout.left, (layout.top + layout.bottom) / 2)
    assert a.y_low == pytest.approx(layout.bottom - 0.25 * (layout.bottom - layout.top))
    assert a.y_high == pytest.approx(layout.bottom - 0.75 * (layout.bottom - layout.top))
    assert b.x == pytest.approx(layout.left + (layout.right - layout.left) * 0.05 / 0.06) and b.y == layout.top
    assert [t.at for t in layout.y_ticks] == pytest.approx([layout.bottom, 256, 176, 96, layout.top])
    assert [p.key for p in layout.points] == ["a", "b"], "points come back in the order given"


def test_a_label_goes_left_of_a_point_with_no_room_on_its_right_and_stays_in_the_picture():
    long_name = "helpful-dpo-r3 beta 0.2, lr 1e-4, SFT weight 2 (length rule, 200 votes)"
    layout = chart_layout([_point("small", 0.001, 0.4, name=long_name), _point("large", 0.2, 0.7, name="far-right-version")])
    small, large = layout.points

    assert small.anchor == "start" and large.anchor == "end"
    assert small.label.endswith("\u2026 \u00b7 DPO") and len(small.label) <= drift_geometry.MAX_NAME_CHARS + len(" · DPO")
    for point in layout.points:
        x0, x1, _ = _label_box(point)
        assert x0 >= 0 and x1 <= layout.width


def test_labels_of_points_in_one_place_move_apart_with_a_leader_line():
    layout = chart_layout([_point(str(n), 0.02, 0.62, name=f"version {n}") for n in range(3)])
    boxes = [_label_box(p) for p in layout.points]

    for i, (x0, x1, middle) in enumerate(boxes):
        for other_x0, other_x1, other_middle in boxes[i + 1:]:
            assert not (x0 < other_x1 and other_x0 < x1 and abs(middle - other_middle) < drift_geometry.LINE_HEIGHT)
    assert sum(p.label_moved for p in layout.points) == 2


def test_a_label_keeps_off_the_50_percent_line_s_own_label():
    layout = chart_layout([_point("tie", 0.06, 0.5, name="x"), _point("edge", 0.001, 0.0, name="y")])
    tie = layout.points[0]

    assert tie.label_moved
    reference_middle = layout.reference_y - 5 - drift_geometry.FONT_SIZE / 3
    assert abs(_label_box(tie)[2] - reference_middle) >= drift_geometry.LINE_HEIGHT


def test_values_outside_the_axes_are_drawn_at_their_edge():
    layout = chart_layout([_point("a", -0.01, 1.2, -0.1, 1.5)])
    [a] = layout.points

    assert (a.x, a.y, a.y_low, a.y_high) == (layout.left, layout.top, layout.bottom, layout.top)


def test_a_method_is_named_as_people_write_it_and_an_unknown_one_in_capitals():
    assert [method_name(m) for m in ("dpo", "kto", "simpo", "orpo", "sft", "grpo", "rloo")] == [
        "DPO", "KTO", "SimPO", "ORPO", "SFT", "GRPO", "RLOO"
    ]
