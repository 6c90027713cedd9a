"""Thresholds validation and the decision at and around both thresholds."""

from __future__ import annotations

import math

import pytest

from fraudcore import Thresholds, decide

REVIEW, DECLINE = 0.3, 0.8
T = Thresholds(review=REVIEW, decline=DECLINE)


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


@pytest.mark.parametrize(
    ("score", "action"),
    [
        (0.0, "approve"),
        (0.1, "approve"),
        (below(REVIEW), "approve"),
        (REVIEW, "review"),
        (above(REVIEW), "review"),
        (0.5, "review"),
        (below(DECLINE), "review"),
        (DECLINE, "decline"),
        (above(DECLINE), "decline"),
        (1.0, "decline"),
    ],
)
def test_decide_at_and_around_the_thresholds(score: float, action: str) -> None:
    assert decide(score, T) == action


def test_equal_thresholds_skip_review() -> None:
    t = Thresholds(review=0.5, decline=0.5)
    assert decide(below(0.5), t) == "approve"
    assert decide(0.5, t) == "decline"


def test_review_at_zero_reviews_everything_not_declined() -> None:
    t = Thresholds(review=0.0, decline=0.9)
    assert decide(0.0, t) == "review"
    assert decide(0.9, t) == "decline"


def test_decline_at_one_only_declines_certainty() -> None:
    t = Thresholds(review=0.2, decline=1.0)
    assert decide(below(1.0), t) == "review"
    assert decide(1.0, t) == "decline"


@pytest.mark.parametrize(
    ("review", "decline"),
    [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.25, 0.75), (0.6, 0.6)],
)
def test_valid_thresholds(review: float, decline: float) -> None:
    t = Thresholds(review=review, decline=decline)
    assert (t.review, t.decline) == (review, decline)


@pytest.mark.parametrize(
    ("review", "decline"),
    [
        (0.8, 0.3),  # review above decline
        (-0.1, 0.5),
        (0.2, 1.01),
        (-0.0001, 0.0),
        (1.5, 2.0),
        (math.nan, 0.5),
        (0.2, math.nan),
        (math.nan, math.nan),
        (0.2, math.inf),
        (-math.inf, 0.5),
    ],
)
def test_invalid_thresholds(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match=r"0 <= review <= decline <= 1") as info:
        Thresholds(review=review, decline=decline)
    assert f"review={review}" in str(info.value)
    assert f"decline={decline}" in str(info.value)


def test_thresholds_are_frozen() -> None:
    with pytest.raises(AttributeError):
        T.review = 0.1  # type: ignore[misc]


def test_a_nan_score_goes_to_review_never_through():
    from fraudcore import Thresholds, decide

    assert decide(float("nan"), Thresholds(review=0.2, decline=0.8)) == "review"
