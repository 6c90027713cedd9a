"""Model selection and thresholds (training/train.py, README "Retraining"): selection by
prequential validation whose latest test week is the training week — "the test weeks are
never looked at" — and thresholds picked on the latest validation week: ``review`` where
about ``review_cards_per_day`` cards a day reach it (100 at the reference volume of ~9,600
transactions a day, scaled to the data), ``decline`` the lowest score with transaction
precision of at least 0.9, never below ``review``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from fraudcore import FEATURE_NAMES, Thresholds
from training import export, protocol
from training.cost import Cost, inference_cost
from training.pipeline import _review_cards_per_day
from training.train import (
    Candidate,
    Classifier,
    Outcome,
    Validated,
    choose,
    select,
    validate,
)

SPLIT = protocol.Split(date(2018, 5, 20))  # train 05-20..26, gap to 06-02, test 06-03..09
FIRST_DAY = date(2018, 4, 1)
DAYS = 75  # to 2018-06-14: past the test week


def _frame(seed: int = 0) -> pd.DataFrame:
    """A featured frame as the replay gives it: the feature columns, and fraud more likely
    the higher the first two features."""
    rng = np.random.default_rng(seed)
    per_day, cards = 120, 150
    n = per_day * DAYS
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
    times = [start + timedelta(days=i // per_day, seconds=int(rng.integers(0, 86_400)))
             for i in range(n)]
    x = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    risk = 1 / (1 + np.exp(-(2.5 * x[:, 0] + 1.5 * x[:, 1] - 3.0)))
    frame = pd.DataFrame(x, columns=list(FEATURE_NAMES))
    frame.insert(0, "TRANSACTION_ID", [f"tx-{i}" for i in range(n)])
    frame.insert(1, "TX_DATETIME", pd.to_datetime(times, utc=True))
    frame.insert(2, "CUSTOMER_ID", [f"c{v}" for v in rng.integers(0, cards, n)])
    frame.insert(3, "TX_FRAUD", (rng.random(n) < risk).astype(np.int8))
    return frame


def _logistic() -> Classifier:
    model: Classifier = LogisticRegression(max_iter=300)
    return model


def _stump() -> Classifier:
    model: Classifier = DecisionTreeClassifier(max_depth=1, random_state=0)
    return model


CANDIDATES = (Candidate("logistic", _logistic), Candidate("stump", _stump))


def _from_the_training_end(frame: pd.DataFrame) -> pd.Series:
    end = pd.Timestamp(SPLIT.train_end.isoformat(), tz="UTC")
    return frame["TX_DATETIME"] >= end


def test_every_validation_fold_ends_before_the_training_week_ends() -> None:
    """The folds' test weeks are the training week and the weeks before it: none reaches
    into the gap or the test week."""
    validated = validate(_frame(), SPLIT, candidates=CANDIDATES[:1], folds=4)
    [result] = validated
    for outcome in result.per_fold:
        last = outcome.predictions["day"].max()
        assert last < SPLIT.train_end, last
    # the latest fold's test week is the training week itself
    assert set(result.per_fold[0].predictions["day"]) <= set(SPLIT.train_dates)


def test_selection_and_thresholds_do_not_change_whatever_the_test_weeks_hold() -> None:
    """Everything from the end of the training week on (the gap and the test week) is
    replaced by noise with the labels flipped: the winner, its thresholds, its validation
    metrics and every candidate's are the same."""
    frame = _frame()
    later = _from_the_training_end(frame)
    assert later.sum() > 1_000  # the test weeks hold data to be ignored
    other = frame.copy()
    rng = np.random.default_rng(99)
    other.loc[later, list(FEATURE_NAMES)] = rng.normal(
        size=(int(later.sum()), len(FEATURE_NAMES))
    ).astype(np.float32)
    other.loc[later, "TX_FRAUD"] = 1 - other.loc[later, "TX_FRAUD"]
    chosen = select(frame, SPLIT, candidates=CANDIDATES, folds=3, review_cards_per_day=5)
    again = select(other, SPLIT, candidates=CANDIDATES, folds=3, review_cards_per_day=5)
    assert again.winner.name == chosen.winner.name
    assert again.thresholds == chosen.thresholds
    assert again.validation == chosen.validation
    assert again.candidates == chosen.candidates


# --- thresholds, on hand-made validation predictions -------------------------------------

D1, D2 = date(2018, 5, 20), date(2018, 5, 21)


def _predictions(rows: list[tuple[date, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["day", "card_id", "label", "score"]).assign(
        transaction_id=[f"t{i}" for i in range(len(rows))]
    )


def _validated(name: str, folds: list[pd.DataFrame], ap: float) -> Validated:
    outcomes = [Outcome(model=None, test=pd.DataFrame(), predictions=p) for p in folds]  # type: ignore[arg-type]
    return Validated(Candidate(name, _logistic), outcomes, {"average_precision": ap,
                                                            "auc_roc": 0.5})


# The latest validation week: two days, one row per card. Card-day scores, highest first:
# 0.95 (fraud), 0.9 (fraud), 0.85 (fraud), 0.8 (fraud), 0.7 (legit), 0.6 (fraud),
# 0.5 (legit), 0.4 (legit), 0.3 (fraud), 0.2 (legit).
LATEST = _predictions([
    (D1, "a", 1, 0.95), (D1, "b", 1, 0.85), (D1, "c", 0, 0.7), (D1, "d", 0, 0.5),
    (D1, "e", 1, 0.3),
    (D2, "a", 1, 0.9), (D2, "b", 1, 0.8), (D2, "c", 1, 0.6), (D2, "d", 0, 0.4),
    (D2, "e", 0, 0.2),
])
# An older fold with other scores: thresholds taken from it would differ.
OLDER = _predictions([
    (D1, "a", 1, 0.11), (D1, "b", 0, 0.12), (D1, "c", 1, 0.13), (D1, "d", 0, 0.14),
    (D2, "a", 0, 0.15), (D2, "b", 1, 0.16),
])


def test_review_is_where_the_wanted_cards_a_day_reach_it_on_the_latest_week() -> None:
    # 3 cards a day over 2 days: the 6th highest card-day score, 0.6 (3 a day reach it;
    # 0.7 would send only 2.5 a day).
    selection = choose([_validated("m", [LATEST, OLDER], ap=0.5)], review_cards_per_day=3)
    assert selection.thresholds.review == 0.6
    reached = LATEST.loc[LATEST["score"] >= 0.6].groupby("day")["card_id"].nunique()
    assert reached.mean() == 3


def test_decline_is_the_lowest_score_with_precision_of_0_9_on_the_latest_week() -> None:
    # Flagging >= 0.8: 4 frauds of 4 (1.0); >= 0.7: 4 of 5 (0.8); so 0.8 is the lowest
    # score whose precision reaches 0.9.
    selection = choose([_validated("m", [LATEST, OLDER], ap=0.5)], review_cards_per_day=1)
    assert selection.thresholds.review == 0.9  # 2 card-days: the 2nd highest
    assert selection.thresholds.decline == 0.9  # 0.8 is lower than review: raised to it
    selection = choose([_validated("m", [LATEST, OLDER], ap=0.5)], review_cards_per_day=3)
    assert selection.thresholds.decline == 0.8  # above review (0.6): as the precision says
    # Reviewing 4 cards a day (>= 0.4), declining at precision 0.8: >= 0.6 flags 5 frauds
    # of 6 (0.83), >= 0.5 5 of 7; at precision 0.7, >= 0.5 (0.71) qualifies, 0.4 (5/8) not.
    for precision, decline in ((0.8, 0.6), (0.7, 0.5)):
        selection = choose([_validated("m", [LATEST, OLDER], ap=0.5)], review_cards_per_day=4,
                           decline_precision=precision)
        assert selection.thresholds == Thresholds(review=0.4, decline=decline), precision


def test_the_winner_is_the_best_mean_average_precision_and_brings_its_own_thresholds() -> None:
    low = _validated("low", [OLDER, LATEST], ap=0.3)
    high = _validated("high", [LATEST, OLDER], ap=0.6)
    selection = choose([low, high], review_cards_per_day=3)
    assert selection.winner.name == "high"
    assert selection.thresholds.review == 0.6
    tie = replace(low, mean={"average_precision": 0.6, "auc_roc": 0.9})  # AUC breaks the tie
    assert choose([tie, high], review_cards_per_day=3).winner.name == "low"


def test_the_cheapest_candidate_within_the_best_ones_spread_wins_and_says_why() -> None:
    best = replace(_validated("forest", [OLDER, LATEST], ap=0.72),
                   mean={"average_precision": 0.72, "average_precision_std": 0.02,
                         "auc_roc": 0.88})
    close = _validated("boosting", [LATEST, OLDER], ap=0.705)  # 0.72 - 0.02 <= 0.705
    far = _validated("logistic", [LATEST, OLDER], ap=0.69)  # cheapest, but outside
    costs = {"forest": Cost(52.0, 4.8, 2_100_000), "boosting": Cost(9.0, 1.1, 90_000),
             "logistic": Cost(3.0, 0.2, 1_000)}
    selection = choose([best, close, far], review_cards_per_day=3, costs=costs)
    assert selection.winner.name == "boosting"
    assert selection.thresholds.review == 0.6  # its own latest fold's
    assert "within the spread of the best (forest, 0.7200" in selection.reason
    assert "9.0 µs a row against 52.0 µs" in selection.reason
    listed = {c["name"]: c for c in selection.candidates}
    assert [listed[n]["within_spread"] for n in ("forest", "boosting", "logistic")] == [
        True, True, False]
    assert listed["boosting"]["cost"] == {"one_row_us": 9.0, "batch_100_us_per_row": 1.1,
                                          "onnx_bytes": 90_000}
    # the best is kept when it is also the cheapest within the spread, or without costs
    cheap_best = {**costs, "forest": Cost(2.0, 0.1, 500)}
    assert choose([best, close, far], review_cards_per_day=3, costs=cheap_best).winner.name \
        == "forest"
    assert choose([best, close, far], review_cards_per_day=3).winner.name == "forest"
    # no spread known (one fold): only the best is within it
    one_fold = replace(best, mean={"average_precision": 0.72, "auc_roc": 0.88})
    assert choose([one_fold, close], review_cards_per_day=3, costs=costs).winner.name == \
        "forest"


@pytest.mark.parametrize(("rows", "days", "expected"), [
    (9_600 * 3, 3, 100.0),  # the reference volume: the benchmark's 100 cards a day
    (4_800 * 2, 2, 50.0),
    (19_200, 1, 200.0),
])
def test_review_cards_per_day_scale_with_the_daily_volume(
    rows: int, days: int, expected: float
) -> None:
    start = pd.Timestamp("2018-04-01", tz="UTC")
    frame = pd.DataFrame({"TX_DATETIME": [start + pd.Timedelta(days=i % days, hours=1)
                                          for i in range(rows)]})
    assert _review_cards_per_day(frame, None) == pytest.approx(expected)
    assert _review_cards_per_day(frame, 7.0) == 7.0  # given: as given


def test_a_candidates_cost_is_its_onnx_export_timed_in_the_workers_session() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=400) > 1).astype(int)
    small = _logistic()
    small.fit(x, y)
    cost = inference_cost(small, x[:50])
    assert cost.one_row_us > 0 and cost.batch_100_us_per_row > 0
    assert cost.onnx_bytes == len(export.convert(small, len(FEATURE_NAMES)))
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    assert inference_cost(forest, x[:50]).onnx_bytes > cost.onnx_bytes
