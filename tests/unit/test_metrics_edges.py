"""training.metrics at the edges its docstrings promise: the defaults (k = 100, validation
of one class only when asked), recall with no fraud, the precision range, each refusal and
what it says. Values are worked out by hand from the docstrings (see
tests/mutation-survivors.md for the mutants these were written for).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import date

import pandas as pd
import pytest

from training.metrics import (
    card_precision_top_k,
    evaluate,
    precision_recall_at,
    threshold_for_daily_cards,
    threshold_for_precision,
    validate_predictions,
)

D1, D2 = date(2018, 8, 8), date(2018, 8, 9)


def _predictions(rows: list[tuple[object, object, int, object]]) -> pd.DataFrame:
    """rows: (day, card, label, score)."""
    return pd.DataFrame(rows, columns=["day", "card_id", "label", "score"])


def _two_classes() -> pd.DataFrame:
    return _predictions([(D1, 1, 0, 0.1), (D1, 2, 1, 0.9), (D2, 1, 1, 0.6), (D2, 3, 0, 0.4)])


# --- validate_predictions -----------------------------------------------------------------


def test_one_class_is_valid_unless_both_classes_are_asked_for() -> None:
    legit_only = _two_classes().assign(label=0)
    validate_predictions(legit_only)  # "With both_classes, also requires ..."
    with pytest.raises(ValueError, match="only non-fraud transactions"):
        validate_predictions(legit_only, both_classes=True)
    # and the metrics that do not need both classes take such a frame
    assert card_precision_top_k(legit_only, k=2) == (0.0, [0.0, 0.0])
    assert precision_recall_at(legit_only, threshold=0.5) == (0.0, 0.0)


def test_empty_predictions_are_refused() -> None:
    with pytest.raises(ValueError, match="predictions are empty"):
        validate_predictions(_two_classes().iloc[0:0])


@pytest.mark.parametrize("column", ["card_id", "day"])
def test_a_missing_card_or_day_alone_is_refused(column: str) -> None:
    frame = _two_classes()
    frame[column] = frame[column].astype(object)
    frame.loc[2, column] = None
    with pytest.raises(ValueError, match="predictions have missing card_id or day values"):
        validate_predictions(frame)


def test_labels_other_than_0_and_1_are_refused() -> None:
    with pytest.raises(ValueError, match="labels must all be 0 or 1"):
        validate_predictions(_two_classes().assign(label=[0, 1, 2, 0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf, "high"])
def test_scores_that_are_not_finite_numbers_are_refused(bad: object) -> None:
    frame = _two_classes()
    frame["score"] = frame["score"].astype(object)
    frame.loc[1, "score"] = bad
    with pytest.raises(ValueError, match="scores must all be finite numbers"):
        validate_predictions(frame)


def test_a_single_class_error_names_the_metrics_that_need_both() -> None:
    with pytest.raises(ValueError, match="AUC ROC, average precision and thresholds need both"):
        validate_predictions(_two_classes().assign(label=1), both_classes=True)


# --- defaults and edges ------------------------------------------------------------------------


def _many_compromised_cards(n: int) -> pd.DataFrame:
    # one day, n cards, every one compromised
    return _predictions([(D1, card, 1, 1.0 - card / 1000) for card in range(n)])


def test_card_precision_top_k_is_top_100_by_default() -> None:
    # 100 compromised cards on one day: the top 100 are all hits, 100 / 100 = 1; a top 101
    # would still find 100 of them, always divided by k: 100 / 101.
    frame = _many_compromised_cards(100)
    assert card_precision_top_k(frame) == (1.0, [1.0])
    assert card_precision_top_k(frame, k=101)[0] < 1.0


def test_evaluate_uses_k_100_by_default() -> None:
    frame = pd.concat([_many_compromised_cards(100), _predictions([(D1, 999, 0, 0.0)])])
    metrics = evaluate(frame, review_threshold=0.5, decline_threshold=0.9)
    assert metrics.k == 100
    assert metrics.card_precision_at_100 == 1.0


def test_k_below_1_is_refused_with_the_value_given() -> None:
    with pytest.raises(ValueError, match=r"k must be >= 1, got 0"):
        card_precision_top_k(_two_classes(), k=0)


def test_recall_is_0_when_there_is_no_fraud() -> None:
    # "recall is 0.0 when there is no fraud", whatever is flagged
    legit_only = _two_classes().assign(label=0)
    assert precision_recall_at(legit_only, threshold=0.0) == (0.0, 0.0)


def test_cards_per_day_must_be_positive_and_the_error_says_what_was_given() -> None:
    with pytest.raises(ValueError, match=r"cards_per_day must be > 0, got -1"):
        threshold_for_daily_cards(_two_classes(), cards_per_day=-1)


@pytest.mark.parametrize("precision", [0.0, -0.1, 1.000001, 1.5, 2.0])
def test_a_precision_outside_0_to_1_is_refused(precision: float) -> None:
    with pytest.raises(ValueError, match=rf"precision must be in \(0, 1\], got {precision}"):
        threshold_for_precision(_two_classes(), precision=precision)


def test_a_precision_no_threshold_reaches_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # fraud below a legitimate transaction: precision 1 is reached by no threshold
    frame = _predictions([(D1, 1, 0, 0.9), (D1, 2, 1, 0.5)])
    with caplog.at_level(logging.INFO, logger="training.metrics"):
        assert threshold_for_precision(frame, precision=1.0) == 0.9
    assert [r.getMessage() for r in caplog.records] == [
        "no threshold reaches precision 1.0: using the highest score"
    ]


def test_fewer_card_days_than_wanted_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # 2 days, 3 card-days; 5 cards a day wants 10: everything is flagged
    frame = _predictions([(D1, 1, 0, 0.3), (D1, 2, 1, 0.2), (D2, 1, 0, 0.7)])
    with caplog.at_level(logging.INFO, logger="training.metrics"):
        assert threshold_for_daily_cards(frame, cards_per_day=5) == 0.2
    assert [r.getMessage() for r in caplog.records] == [
        "only 3 card-days for 5 cards/day over 2 days: threshold at the lowest score"
    ]


def test_exactly_enough_card_days_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    # 2 days, 3 card-days; 1.5 cards a day wants 3: the 3rd highest, no shortfall to report
    frame = _predictions([(D1, 1, 0, 0.3), (D1, 2, 1, 0.2), (D2, 1, 0, 0.7)])
    with caplog.at_level(logging.INFO, logger="training.metrics"):
        assert threshold_for_daily_cards(frame, cards_per_day=1.5) == 0.2
    assert caplog.records == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.iloc[0:0], "predictions are empty"),
        (
            lambda f: f.assign(day=[D1, None, D2, D2]),
            "predictions have missing card_id or day values",
        ),
        (lambda f: f.assign(label=[0, 1, 2, 0]), "labels must all be 0 or 1"),
        (lambda f: f.assign(score=[0.1, math.inf, 0.6, 0.4]), "scores must all be finite numbers"),
        (
            lambda f: f.assign(label=1),
            "predictions hold only fraud transactions (4 rows): "
            "AUC ROC, average precision and thresholds need both classes",
        ),
    ],
    ids=["empty", "missing", "labels", "scores", "one-class"],
)
def test_each_refusal_says_exactly_what_is_wrong(
    change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        validate_predictions(change(_two_classes()), both_classes=True)
    assert str(info.value) == message


def test_evaluate_logs_its_metrics_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="training.metrics"):
        metrics = evaluate(_two_classes(), review_threshold=0.5, decline_threshold=0.9)
    assert [r.getMessage() for r in caplog.records] == [f"evaluate: {metrics}"]
    assert metrics.frauds == 2 and metrics.transactions == 4
