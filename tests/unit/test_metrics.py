"""Metrics and thresholds on hand-worked examples."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from training.metrics import (
    Metrics,
    card_precision_top_k,
    evaluate,
    precision_recall_at,
    threshold_for_daily_cards,
    threshold_for_precision,
)

D1, D2, D3 = date(2018, 8, 8), date(2018, 8, 9), date(2018, 8, 10)
A, B, C, D, E = 1, 2, 3, 4, 5


def _predictions(rows: list[tuple[object, int, int, float]]) -> pd.DataFrame:
    """rows: (day, card, label, score)."""
    return pd.DataFrame(rows, columns=["day", "card_id", "label", "score"])


def _cp_example() -> pd.DataFrame:
    # Rows deliberately out of day and card order.
    return _predictions(
        [
            # day 3: B is compromised but was detected on day 2; C has fewer than k rivals.
            (D3, B, 1, 0.9),
            (D3, C, 1, 0.3),
            # day 1: ranking A(0.9, fraud), B(0.8, legit) = C(0.8, fraud) tie, D(0.1, fraud)
            (D1, C, 1, 0.8),
            (D1, A, 0, 0.9),  # A's best score is a legitimate transaction ...
            (D1, A, 1, 0.2),  # ... but A had a fraud that day: compromised
            (D1, B, 0, 0.8),
            (D1, D, 1, 0.1),
            # day 2: A detected on day 1 (left out); B was in day 1's top 2 but legit (stays)
            (D2, A, 1, 0.95),
            (D2, B, 1, 0.7),
            (D2, C, 0, 0.6),
            (D2, E, 0, 0.55),
            (D2, D, 1, 0.5),
        ]
    )


def test_card_precision_top_k_hand_worked() -> None:
    mean, per_day = card_precision_top_k(_cp_example(), k=2)
    # day 1: top 2 = A, B (tie 0.8 broken by card id: B before C) -> 1 fraud / 2
    # day 2: A left out; top 2 = B (fraud), C (legit) -> 1 / 2
    #   (keeping A would give 1.0; leaving out every earlier top-2 card, A and B, gives 0.0)
    # day 3: B left out; only C (fraud) remains -> 1 / 2 (always divided by k)
    assert per_day == [0.5, 0.5, 0.5]
    assert mean == pytest.approx(0.5)


def test_card_precision_top_k_other_k_and_date_like_days() -> None:
    frame = _cp_example()
    frame["day"] = pd.to_datetime(frame["day"])
    # k = 3. day 1: A, B, C -> 2/3, detected {A, C}.
    # day 2: A, C out; B, E, D -> 2/3 (B, D), detected {A, C, B, D}. day 3: nothing left -> 0.
    mean, per_day = card_precision_top_k(frame, k=3)
    assert per_day == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert mean == pytest.approx(4 / 9)


def test_card_precision_top_k_validates() -> None:
    with pytest.raises(ValueError):
        card_precision_top_k(_cp_example(), k=0)
    with pytest.raises(ValueError, match="lack columns"):
        card_precision_top_k(_cp_example().drop(columns="score"))


def _small() -> pd.DataFrame:
    # scores 0.1 (legit), 0.4 (legit), 0.35 (fraud), 0.8 (fraud)
    return _predictions(
        [
            (D1, A, 0, 0.1),
            (D1, B, 0, 0.4),
            (D2, C, 1, 0.35),
            (D2, A, 1, 0.8),
        ]
    )


def test_evaluate_hand_worked() -> None:
    m = evaluate(_small(), review_threshold=0.35, decline_threshold=0.8, k=1)
    assert m.auc_roc == pytest.approx(0.75)
    assert m.average_precision == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # flagged at 0.35: 0.4 (legit), 0.35 and 0.8 (frauds)
    assert m.precision_at_review == pytest.approx(2 / 3)
    assert m.recall_at_review == pytest.approx(1.0)
    assert m.precision_at_decline == pytest.approx(1.0)
    assert m.recall_at_decline == pytest.approx(0.5)
    # day 1: B reaches 0.35; day 2: C and A -> (1 + 2) / 2
    assert m.alerts_per_day_at_review == pytest.approx(1.5)
    # k = 1: day 1 top card B is legit -> 0; day 2 top card A is a fraud -> 1
    assert m.card_precision_per_day == (0.0, 1.0)
    assert m.card_precision_at_100 == pytest.approx(0.5)
    assert (m.transactions, m.frauds, m.k) == (4, 2, 1)


def test_evaluate_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    labels = (rng.random(n) < 0.05).astype(int)
    scores = np.round(rng.random(n) * 0.7 + labels * 0.3, 3)  # rounded: ties present
    frame = pd.DataFrame(
        {
            "card_id": rng.integers(0, 300, n),
            "day": pd.to_datetime("2018-08-08") + pd.to_timedelta(rng.integers(0, 7, n), "D"),
            "label": labels,
            "score": scores,
        }
    )
    m = evaluate(frame, review_threshold=0.6, decline_threshold=0.9)
    assert m.auc_roc == pytest.approx(roc_auc_score(labels, scores))
    assert m.average_precision == pytest.approx(average_precision_score(labels, scores))
    assert 0.5 < m.auc_roc < 1.0
    assert len(m.card_precision_per_day) == 7
    assert m.precision_at_review == pytest.approx(labels[scores >= 0.6].mean())
    assert m.recall_at_review == pytest.approx((scores[labels == 1] >= 0.6).mean())


def test_metrics_to_dict_is_json_ready() -> None:
    m = evaluate(_small(), review_threshold=0.35, decline_threshold=0.8, k=1)
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["card_precision_per_day"] == [0.0, 1.0]
    assert type(d["auc_roc"]) is float
    assert type(d["transactions"]) is int
    assert set(d) == set(Metrics.__dataclass_fields__)


def test_evaluate_one_class_is_a_clear_error() -> None:
    legit_only = _small().assign(label=0)
    with pytest.raises(ValueError, match="only non-fraud"):
        evaluate(legit_only, review_threshold=0.5, decline_threshold=0.9)
    with pytest.raises(ValueError, match="only fraud"):
        threshold_for_precision(_small().assign(label=1), precision=0.5)


def test_precision_recall_at_with_nothing_flagged() -> None:
    assert precision_recall_at(_small(), threshold=0.9) == (0.0, 0.0)


def _daily_cards() -> pd.DataFrame:
    # card maxima: day 1 -> 0.9, 0.5, 0.3; day 2 -> 0.8, 0.7, 0.2
    return _predictions(
        [
            (D1, A, 0, 0.9),
            (D1, A, 0, 0.1),
            (D1, B, 1, 0.5),
            (D1, C, 0, 0.3),
            (D2, A, 0, 0.8),
            (D2, B, 0, 0.7),
            (D2, B, 0, 0.65),
            (D2, C, 1, 0.2),
        ]
    )


def test_threshold_for_daily_cards_pooled() -> None:
    frame = _daily_cards()
    # 2 cards/day over 2 days -> 4th highest card-day score of 0.9, 0.8, 0.7, 0.5, 0.3, 0.2.
    # (Averaging the per-day 2nd highest would give 0.6 and only 1.5 cards a day.)
    t = threshold_for_daily_cards(frame, cards_per_day=2)
    assert t == pytest.approx(0.5)
    at = evaluate(frame, review_threshold=t, decline_threshold=1.0).alerts_per_day_at_review
    above = evaluate(frame, review_threshold=t + 1e-9, decline_threshold=1.0)
    assert at == pytest.approx(2.0)
    assert above.alerts_per_day_at_review < 2.0
    assert threshold_for_daily_cards(frame, cards_per_day=1.5) == pytest.approx(0.7)
    assert threshold_for_daily_cards(frame, cards_per_day=0.5) == pytest.approx(0.9)
    assert threshold_for_daily_cards(frame, cards_per_day=10) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        threshold_for_daily_cards(frame, cards_per_day=0)


def _ladder() -> pd.DataFrame:
    # precision of score >= t: 0.9 -> 1, 0.8 -> 1/2, 0.7 -> 2/3, 0.6 -> 3/4, 0.5 -> 3/5,
    # 0.4 -> 1/2, 0.3 -> 4/7, 0.2 -> 1/2
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    return _predictions(
        [(D1, i, y, s) for i, (y, s) in enumerate(zip(labels, scores, strict=True))]
    )


@pytest.mark.parametrize(
    ("precision", "expected"),
    [(0.7, 0.6), (0.55, 0.3), (0.5, 0.2), (0.8, 0.9), (1.0, 0.9), (0.74, 0.6), (0.76, 0.9)],
)
def test_threshold_for_precision(precision: float, expected: float) -> None:
    assert threshold_for_precision(_ladder(), precision=precision) == pytest.approx(expected)


def test_threshold_for_precision_unreachable_gives_highest_score() -> None:
    frame = _predictions([(D1, A, 0, 0.9), (D1, B, 1, 0.5), (D1, C, 0, 0.1)])
    assert threshold_for_precision(frame, precision=1.0) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        threshold_for_precision(frame, precision=0.0)
