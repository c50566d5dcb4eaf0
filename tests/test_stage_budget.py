"""bench/stage_costs.py's budget check (issue 23): known stages keep their share, new stages and
the whole pipeline together may add at most 10 % to the starting point."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import stage_costs as sc  # noqa: E402

PARSE = 300.0  # µs: the yardstick; every figure below is in parses of it
LOAD = {"all": 4.3, "none": 2.2}


def measured(**extra: float) -> dict[str, float]:
    """The starting point itself, in µs, with `extra` stages (parses) added."""
    figures = {name: share * PARSE for name, share in sc.STARTING_STAGE.items()}
    figures.update({name.replace("_", "-"): share * PARSE for name, share in extra.items()})
    return {**figures, "backbone": sc.STARTING_BACKBONE * PARSE, "parse": PARSE}


def test_the_starting_point_is_within_budget():
    lines, over = sc.budget_check(LOAD, measured())
    assert not over
    assert any("**whole pipeline in process** | 5.47 | 5.47" in line for line in lines), lines


def test_new_stages_within_ten_percent_pass_and_beyond_it_fail():
    allowance = sc.STARTING_WHOLE * sc.GROWTH
    lines, over = sc.budget_check(LOAD, measured(feedback=allowance * 0.5, footer_guard=allowance * 0.4))
    assert not over
    assert any(line.startswith("| feedback (new)") for line in lines)
    _, over = sc.budget_check(LOAD, measured(feedback=allowance * 0.6, footer_guard=allowance * 0.6))
    assert over


def test_a_known_stage_growing_is_marked_over_and_can_push_the_pipeline_over():
    figures = measured()
    figures["content"] *= 1.5  # +1.0 parse: more than the whole 10 %
    lines, over = sc.budget_check(LOAD, figures)
    assert over
    (content,) = [line for line in lines if line.startswith("| content |")]
    assert content.endswith("| over |")
