"""Evaluation metrics of the benchmark, and decision thresholds.

Every function takes a *predictions* frame with one row per transaction and the columns

* ``card_id`` — the card (``CUSTOMER_ID``);
* ``day`` — the transaction's day (``datetime.date`` or any sortable date-like value);
* ``label`` — 1 for fraud, 0 otherwise;
* ``score`` — the model's fraud score, higher is more suspicious.

Transaction-level metrics (AUC ROC, average precision, precision / recall at a
threshold) count transactions; card precision top-k (:func:`card_precision_top_k`)
counts cards per day, as in ``docs/benchmark-dataset.md`` section 3.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

__all__ = [
    "PREDICTION_COLUMNS",
    "Metrics",
    "card_precision_top_k",
    "evaluate",
    "precision_recall_at",
    "threshold_for_daily_cards",
    "threshold_for_precision",
    "validate_predictions",
]

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = ("card_id", "day", "label", "score")


def validate_predictions(predictions: pd.DataFrame, *, both_classes: bool = False) -> None:
    """Check that ``predictions`` is a usable predictions frame, else ``ValueError``.

    Requires the columns of :data:`PREDICTION_COLUMNS`, at least one row, labels in {0, 1},
    finite scores and no missing card or day. With ``both_classes``, also requires at least
    one fraud and one non-fraud (needed by AUC ROC, average precision and the thresholds).
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; need {list(PREDICTION_COLUMNS)}")
    if predictions.empty:
        raise ValueError("predictions are empty")
    if bool(predictions["card_id"].isna().any()) or bool(predictions["day"].isna().any()):
        raise ValueError("predictions have missing card_id or day values")
    labels = predictions["label"]
    if not bool(labels.isin([0, 1]).all()):
        raise ValueError("labels must all be 0 or 1")
    scores = pd.to_numeric(predictions["score"], errors="coerce").to_numpy(dtype=float)
    if not bool(np.isfinite(scores).all()):
        raise ValueError("scores must all be finite numbers")
    if both_classes:
        frauds = int(labels.sum())
        if frauds == 0 or frauds == len(labels):
            only = "fraud" if frauds else "non-fraud"
            raise ValueError(
                f"predictions hold only {only} transactions ({len(labels)} rows): "
                "AUC ROC, average precision and thresholds need both classes"
            )


def _card_days(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, card): the card's highest score that day and whether it had a fraud."""
    return (
        predictions.groupby(["day", "card_id"], sort=True)
        .agg(score=("score", "max"), label=("label", "max"))
        .reset_index()
    )


def card_precision_top_k(predictions: pd.DataFrame, *, k: int = 100) -> tuple[float, list[float]]:
    """Card precision top-k: ``(mean over days, per-day values in day order)``.

    For each day present in ``predictions``, in increasing order:

    1. reduce to cards: each card's highest score that day, and whether it had any fraud
       that day (it is then *compromised* that day);
    2. leave out the cards *detected* on an earlier day, where detected means in that
       day's top k **and** compromised that day (the reference handbook's rule: its list
       of detected compromised cards grows by the compromised cards of each day's top k;
       a legitimate card in an earlier top k stays eligible);
    3. rank the remaining cards by score, highest first, ties broken by ascending
       ``card_id`` (a stable, reproducible order);
    4. the day's value is (compromised cards among the first k) / k — always divided by
       k, even when fewer than k cards are left.

    The result's first element is the plain mean of the per-day values.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    validate_predictions(predictions)
    cards = _card_days(predictions)
    detected: set[Hashable] = set()  # card ids
    per_day: list[float] = []
    for _day, day_cards in cards.groupby("day", sort=True):
        eligible = day_cards.loc[~day_cards["card_id"].isin(detected)]
        ranked = eligible.sort_values(
            ["score", "card_id"], ascending=[False, True], kind="mergesort"
        )
        top = ranked.head(k)
        hits = top.loc[top["label"] == 1, "card_id"]
        per_day.append(len(hits) / k)
        detected.update(hits.tolist())
    mean = float(np.mean(per_day))
    return mean, per_day


def precision_recall_at(predictions: pd.DataFrame, *, threshold: float) -> tuple[float, float]:
    """Transaction-level ``(precision, recall)`` when flagging ``score >= threshold``.

    Precision is 0.0 when no transaction is flagged; recall is 0.0 when there is no fraud.
    """
    validate_predictions(predictions)
    flagged = predictions["score"].to_numpy(dtype=float) >= threshold
    fraud = predictions["label"].to_numpy() == 1
    true_positives = int(np.count_nonzero(flagged & fraud))
    n_flagged = int(np.count_nonzero(flagged))
    n_fraud = int(np.count_nonzero(fraud))
    precision = true_positives / n_flagged if n_flagged else 0.0
    recall = true_positives / n_fraud if n_fraud else 0.0
    return precision, recall


def _alerts_per_day(predictions: pd.DataFrame, *, threshold: float) -> float:
    """Mean over the days present of the number of distinct cards with a score >= threshold."""
    cards = _card_days(predictions)
    per_day = (cards["score"] >= threshold).groupby(cards["day"], sort=True).sum()
    return float(per_day.mean())


@dataclass(frozen=True)
class Metrics:
    """Evaluation of one predictions set.

    * ``auc_roc``, ``average_precision``: scikit-learn's ``roc_auc_score`` and
      ``average_precision_score`` over transactions;
    * ``card_precision_at_100``: card precision top-k (:func:`card_precision_top_k`) with
      ``k`` (100 unless told otherwise), and its per-day values in day order;
    * ``precision_at_*``, ``recall_at_*``: transaction level, flagging ``score >= threshold``
      (precision 0.0 when nothing is flagged);
    * ``alerts_per_day_at_review``: mean over days of the distinct cards with a score at or
      above the review threshold on that day;
    * ``transactions``, ``frauds``: counts of rows and of fraud rows.
    """

    auc_roc: float
    average_precision: float
    card_precision_at_100: float
    card_precision_per_day: tuple[float, ...]
    precision_at_review: float
    recall_at_review: float
    precision_at_decline: float
    recall_at_decline: float
    alerts_per_day_at_review: float
    transactions: int
    frauds: int
    k: int = 100

    def to_dict(self) -> dict[str, float | list[float]]:
        """The metrics as plain JSON-ready values (floats, ints, a list of floats)."""
        out: dict[str, float | list[float]] = {}
        for name, value in asdict(self).items():
            if name in ("transactions", "frauds", "k"):
                out[name] = int(value)
            elif name == "card_precision_per_day":
                out[name] = [float(v) for v in value]
            else:
                out[name] = float(value)
        return out


def evaluate(
    predictions: pd.DataFrame,
    *,
    review_threshold: float,
    decline_threshold: float,
    k: int = 100,
) -> Metrics:
    """All the evaluation metrics of ``predictions`` (see :class:`Metrics`).

    Raises ``ValueError`` when the predictions are malformed or hold a single class.
    """
    validate_predictions(predictions, both_classes=True)
    labels = predictions["label"].to_numpy(dtype=int)
    scores = predictions["score"].to_numpy(dtype=float)
    cp_mean, cp_per_day = card_precision_top_k(predictions, k=k)
    p_review, r_review = precision_recall_at(predictions, threshold=review_threshold)
    p_decline, r_decline = precision_recall_at(predictions, threshold=decline_threshold)
    metrics = Metrics(
        auc_roc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        card_precision_at_100=cp_mean,
        card_precision_per_day=tuple(cp_per_day),
        precision_at_review=p_review,
        recall_at_review=r_review,
        precision_at_decline=p_decline,
        recall_at_decline=r_decline,
        alerts_per_day_at_review=_alerts_per_day(predictions, threshold=review_threshold),
        transactions=len(labels),
        frauds=int(labels.sum()),
        k=k,
    )
    logger.debug("evaluate: %s", metrics)
    return metrics


def threshold_for_daily_cards(predictions: pd.DataFrame, *, cards_per_day: float) -> float:
    """The highest score threshold at which, on average over the days, at least
    ``cards_per_day`` distinct cards a day reach it (card score = its highest score that day).

    Chosen rule (a pooled quantile, not an average of per-day cut-offs): with ``n`` days
    present and ``m = ceil(cards_per_day * n)``, the threshold is the m-th highest of all
    (day, card) scores. Then the mean daily number of cards with a score >= threshold is at
    least ``cards_per_day`` (more only through ties), and any higher threshold gives fewer.
    When fewer than ``m`` card-days exist, returns the lowest card score (everything is
    flagged).
    """
    if not cards_per_day > 0:
        raise ValueError(f"cards_per_day must be > 0, got {cards_per_day}")
    validate_predictions(predictions)
    cards = _card_days(predictions)
    n_days = int(cards["day"].nunique())
    wanted = math.ceil(cards_per_day * n_days - 1e-9)
    ordered = np.sort(cards["score"].to_numpy(dtype=float))[::-1]
    if wanted > len(ordered):
        logger.info(
            "only %d card-days for %s cards/day over %d days: threshold at the lowest score",
            len(ordered),
            cards_per_day,
            n_days,
        )
        return float(ordered[-1])
    return float(ordered[wanted - 1])


def threshold_for_precision(predictions: pd.DataFrame, *, precision: float) -> float:
    """The lowest threshold whose transaction-level precision (flagging ``score >=
    threshold``) is at least ``precision``, searched over scikit-learn's
    ``precision_recall_curve`` thresholds (the distinct scores). When no threshold reaches
    it, returns the highest score.

    Precision need not rise with the threshold, so this is the lowest qualifying
    threshold, not the start of a range where every higher threshold also qualifies.
    """
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    validate_predictions(predictions, both_classes=True)
    labels = predictions["label"].to_numpy(dtype=int)
    scores = predictions["score"].to_numpy(dtype=float)
    precisions, _recalls, thresholds = precision_recall_curve(labels, scores)
    # precisions[i] belongs to thresholds[i] (ascending); the last precision has no threshold.
    ok = np.flatnonzero(precisions[: len(thresholds)] >= precision)
    if ok.size == 0:
        logger.info("no threshold reaches precision %s: using the highest score", precision)
        return float(scores.max())
    return float(thresholds[ok[0]])
