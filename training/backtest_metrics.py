"""What a backtest measures on each side, overall and per day, and what changed between them.

Every function reads the *predictions* frame of :func:`training.backtest.run`: one row per
scored transaction with ``transaction_id, card_id, day, label, amount`` and, per side
(``baseline``, ``candidate``), ``score_<side>``, ``action_<side>`` and ``rules_<side>``.

The score metrics are training's (:mod:`training.metrics`): AUC ROC and average precision
over transactions, card precision top-100 per day with cards detected on an earlier day of
the window left out (so a day's value is the one of the whole window's per-day list). They
read the model's score, which rules do not change. The action counts read the action the
worker would have taken (model, thresholds, rules), so a rule counts where a threshold
alone would not:

* ``reviews``, ``declines``, ``approvals``: transactions by action;
* ``review_cards``: distinct cards sent to review on a day (summed over the days overall;
  ``review_cards_per_day`` is their mean), what investigators get;
* ``precision_at_review_or_decline`` / ``recall_at_...``: frauds among the transactions
  reviewed or declined / among all frauds; ``..._at_decline`` the same for declines alone
  (precision 0.0 when nothing is flagged, recall 0.0 when there is no fraud, as training's);
* ``fraud_amount``: the amount of the frauds; ``fraud_amount_caught`` of those reviewed or
  declined, ``fraud_amount_declined`` of those declined, ``fraud_amount_missed`` of those
  approved;
* ``good_declined`` (and ``good_declined_amount``), ``good_reviewed``: legitimate
  transactions declined, reviewed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fraudcore import Thresholds
from training.metrics import card_precision_top_k, evaluate

__all__ = ["CHANGES", "EXAMPLE_COLUMNS", "SIDES", "changes", "per_day", "summarise"]

SIDES = ("baseline", "candidate")
#: The four kinds of change, each ``(name, side that has the action, action)``: a new
#: decline is a transaction the candidate declines and the baseline does not.
CHANGES: tuple[tuple[str, str, str], ...] = (
    ("new_declines", "candidate", "decline"),
    ("removed_declines", "baseline", "decline"),
    ("new_reviews", "candidate", "review"),
    ("removed_reviews", "baseline", "review"),
)
EXAMPLE_COLUMNS = (
    "transaction_id", "card_id", "day", "label", "amount",
    "score_baseline", "score_candidate", "action_baseline", "action_candidate",
    "rules_baseline", "rules_candidate",
)


def side_frame(predictions: pd.DataFrame, side: str) -> pd.DataFrame:
    """The predictions frame of one side in :mod:`training.metrics`' columns (``score``)
    plus its ``action`` and the ``amount``."""
    return pd.DataFrame({
        "card_id": predictions["card_id"],
        "day": predictions["day"],
        "label": predictions["label"],
        "amount": predictions["amount"],
        "score": predictions[f"score_{side}"],
        "action": predictions[f"action_{side}"],
    })


def _cents(amounts: np.ndarray) -> float:
    """A sum of amounts, rounded to the cent (the float sum's last digits are noise)."""
    return round(float(amounts.sum()), 2)


def _both_classes(frame: pd.DataFrame) -> bool:
    return 0 < int(frame["label"].sum()) < len(frame)


def _counts(frame: pd.DataFrame) -> dict[str, Any]:
    fraud = frame["label"].to_numpy() == 1
    amount = frame["amount"].to_numpy(dtype=float)
    action = frame["action"].to_numpy()
    declined = action == "decline"
    reviewed = action == "review"
    flagged = declined | reviewed
    frauds = int(np.count_nonzero(fraud))

    def precision(selected: np.ndarray) -> float:
        n = int(np.count_nonzero(selected))
        return int(np.count_nonzero(selected & fraud)) / n if n else 0.0

    def recall(selected: np.ndarray) -> float:
        return int(np.count_nonzero(selected & fraud)) / frauds if frauds else 0.0

    return {
        "transactions": len(frame),
        "frauds": frauds,
        "approvals": int(np.count_nonzero(action == "approve")),
        "reviews": int(np.count_nonzero(reviewed)),
        "declines": int(np.count_nonzero(declined)),
        "precision_at_review_or_decline": precision(flagged),
        "recall_at_review_or_decline": recall(flagged),
        "precision_at_decline": precision(declined),
        "recall_at_decline": recall(declined),
        "fraud_amount": _cents(amount[fraud]),
        "fraud_amount_caught": _cents(amount[fraud & flagged]),
        "fraud_amount_declined": _cents(amount[fraud & declined]),
        "fraud_amount_missed": _cents(amount[fraud & ~flagged]),
        "good_declined": int(np.count_nonzero(~fraud & declined)),
        "good_declined_amount": _cents(amount[~fraud & declined]),
        "good_reviewed": int(np.count_nonzero(~fraud & reviewed)),
    }


def _review_cards(frame: pd.DataFrame) -> pd.Series:
    """Distinct cards sent to review, per day (every day of ``frame``, 0 where none)."""
    reviewed = frame.loc[frame["action"] == "review"]
    counts = reviewed.groupby("day")["card_id"].nunique()
    days = sorted(frame["day"].unique())
    return counts.reindex(days, fill_value=0).astype(int)


def _ranking(frame: pd.DataFrame, thresholds: Thresholds) -> tuple[float | None, float | None]:
    """Training's AUC ROC and average precision; ``None`` where a class is missing."""
    if not _both_classes(frame):
        return None, None
    m = evaluate(
        frame, review_threshold=thresholds.review, decline_threshold=thresholds.decline
    )
    return m.auc_roc, m.average_precision


def summarise(frame: pd.DataFrame, *, thresholds: Thresholds) -> dict[str, Any]:
    """One side over the whole window (a :func:`side_frame`), with the per-day card
    precision in ``card_precision_per_day`` (day order)."""
    auc, ap = _ranking(frame, thresholds)
    cp, cp_per_day = card_precision_top_k(frame, k=100)
    review_cards = _review_cards(frame)
    return {
        **_counts(frame),
        "review_cards": int(review_cards.sum()),
        "review_cards_per_day": float(review_cards.mean()),
        "auc_roc": auc,
        "average_precision": ap,
        "card_precision_at_100": cp,
        "card_precision_per_day": [float(v) for v in cp_per_day],
    }


def per_day(
    frame: pd.DataFrame, *, thresholds: Thresholds, card_precision: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """One side per day (ISO day -> metrics); ``card_precision``: the window's per-day
    card precision (:func:`summarise`), in day order."""
    review_cards = _review_cards(frame)
    days: dict[str, dict[str, Any]] = {}
    for (day, part), cp in zip(frame.groupby("day", sort=True), card_precision, strict=True):
        auc, ap = _ranking(part, thresholds)
        days[str(day)] = {
            **_counts(part),
            "review_cards": int(review_cards.loc[day]),
            "auc_roc": auc,
            "average_precision": ap,
            "card_precision_at_100": float(cp),
        }
    return days


def _example(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EXAMPLE_COLUMNS:
        value = row[name]
        if isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return out


def changes(predictions: pd.DataFrame, *, examples: int) -> dict[str, Any]:
    """The transactions whose action differs between the sides, by kind of change
    (:data:`CHANGES`): how many, how many frauds and legitimate ones, their amount, and up
    to ``examples`` of them, the largest amounts first (ties by transaction id)."""
    base, cand = predictions["action_baseline"], predictions["action_candidate"]
    out: dict[str, Any] = {
        "transactions_changed": int((base != cand).sum()),
        "scores_changed": int(
            (predictions["score_baseline"] != predictions["score_candidate"]).sum()
        ),
    }
    for name, side, action in CHANGES:
        other = "baseline" if side == "candidate" else "candidate"
        has, had = predictions[f"action_{side}"], predictions[f"action_{other}"]
        mask = (has == action) & (had != action)
        selected = predictions.loc[mask]
        fraud = selected["label"] == 1
        shown = selected.sort_values(
            ["amount", "transaction_id"], ascending=[False, True], kind="mergesort"
        ).head(examples)
        out[name] = {
            "count": len(selected),
            "frauds": int(fraud.sum()),
            "goods": int((~fraud).sum()),
            "amount": _cents(selected["amount"].to_numpy(dtype=float)),
            "fraud_amount": _cents(selected.loc[fraud, "amount"].to_numpy(dtype=float)),
            "examples": [_example(row) for _, row in shown.iterrows()],
        }
    return out
