"""Fit, select and evaluate: the benchmark protocol around scikit-learn candidates.

Selection uses prequential validation that never looks at the test weeks: the first
validation fold's test week is the training week itself (its model trains two weeks
earlier, with the same gap), and each further fold moves one week back. The best quality
is the best mean validation average precision (AP is the metric that moves most with how
well frauds are ranked among ~0.8 % positives; AUC breaks ties). Inference cost is part of
the product: given each candidate's serving cost (:mod:`training.cost`), the cheapest one
to score a row whose mean AP is within the best's spread over the validation folds (one
standard deviation) wins, since the folds cannot tell it from the best. Thresholds come
from the winner's predictions on the most recent validation week:

* ``review``: the score that sends about ``review_cards_per_day`` cards a day to the
  investigators (the benchmark's 100 a day, scaled to the data's daily volume);
* ``decline``: the lowest score whose transaction precision on validation is at least
  ``decline_precision``, so an outright decline is almost always a fraud.

The winner is then refitted on the training week and scored on the cleaned test week.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fraudcore import FEATURE_NAMES, Thresholds
from fraudcore.artifacts import JSON, ThresholdChoice
from training import metrics, protocol

if TYPE_CHECKING:
    from training.cost import Cost

__all__ = [
    "CANDIDATES",
    "Candidate",
    "Classifier",
    "Outcome",
    "Selection",
    "Validated",
    "choose",
    "features_of",
    "fit_and_score",
    "predictions_frame",
    "select",
    "validate",
]

log = logging.getLogger(__name__)


class Classifier(Protocol):
    """What training uses of a scikit-learn classifier (or pipeline ending in one)."""

    def fit(self, x: NDArray[np.float32], y: NDArray[np.integer]) -> object: ...

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class Candidate:
    name: str
    build: Callable[[], Classifier]
    params: Mapping[str, JSON] = field(default_factory=dict)


# scikit-learn is untyped: each builder states, by annotating its result, that the model
# it returns has what training uses of it (the Classifier protocol).


def _logistic() -> Classifier:
    model: Classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return model


def _forest() -> Classifier:
    # Fully grown trees (leaves of at least 5 rows) rank the low-risk bulk better than
    # depth-capped ones: mean validation AUC 0.874 -> ~0.882 (4 seeds), AP unchanged.
    # About 52k nodes in all: ~2 MB of ONNX, a few ms for 500 rows on one thread.
    model: Classifier = RandomForestClassifier(
        n_estimators=100, max_depth=None, min_samples_leaf=5, n_jobs=2, random_state=0
    )
    return model


def _boosting() -> Classifier:
    # Small trees and up-weighted frauds: mean validation AP 0.687 -> 0.712.
    model: Classifier = HistGradientBoostingClassifier(
        learning_rate=0.05, max_iter=200, max_leaf_nodes=7, min_samples_leaf=40,
        l2_regularization=1.0, class_weight={0: 1, 1: 20}, early_stopping=False,
        random_state=0,
    )
    return model


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("logistic_regression", _logistic, {"C": 0.1}),
    Candidate(
        "random_forest", _forest, {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 5}
    ),
    Candidate(
        "hist_gradient_boosting",
        _boosting,
        {
            "learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 7, "min_samples_leaf": 40,
            "l2_regularization": 1.0, "class_weight": {"0": 1, "1": 20},
        },
    ),
)


@dataclass(frozen=True)
class Outcome:
    """A fitted model and how it did on one cleaned test set."""

    model: Classifier
    test: pd.DataFrame  # the cleaned test rows with a "score" column
    predictions: pd.DataFrame  # card_id, day, label, score


def features_of(frame: pd.DataFrame) -> NDArray[np.float32]:
    """The model's input: the feature columns as float32, exactly what ONNX receives."""
    # np.asarray gives the untyped pandas result its type without copying it.
    return np.asarray(frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float32), dtype=np.float32)


def predictions_frame(test: pd.DataFrame, scores: NDArray[np.float64]) -> pd.DataFrame:
    """The columns the metrics work on, one row per test transaction."""
    return pd.DataFrame(
        {
            "transaction_id": test["TRANSACTION_ID"].to_numpy(),
            "card_id": test["CUSTOMER_ID"].to_numpy(),
            "day": test["TX_DATETIME"].dt.date.to_numpy(),
            "label": test["TX_FRAUD"].to_numpy(dtype=np.int8),
            "score": scores,
        }
    )


def fit_and_score(frame: pd.DataFrame, split: protocol.Split, candidate: Candidate) -> Outcome:
    """Fit ``candidate`` on the split's training days and score its cleaned test days."""
    train, test = protocol.split(frame, split)
    test = protocol.clean_test(frame, test, split)
    if train["TX_FRAUD"].nunique() < 2 or test.empty:
        raise ValueError(
            f"split from {split.train_start} has no usable data (train {len(train)} rows, "
            f"cleaned test {len(test)} rows); check the data's date range"
        )
    model = candidate.build()
    model.fit(features_of(train), train["TX_FRAUD"].to_numpy())
    scores = model.predict_proba(features_of(test))[:, 1]
    return Outcome(model, test.assign(score=scores), predictions_frame(test, scores))


@dataclass(frozen=True)
class Selection:
    winner: Candidate
    choice: ThresholdChoice
    validation: dict[str, float]  # the winner's mean validation metrics
    # each one's name, params, mean validation metrics, serving cost, and whether its AP is
    # within the best's spread
    candidates: list[dict[str, JSON]]
    reason: str = ""  # why the winner won, in a sentence

    @property
    def thresholds(self) -> Thresholds:
        return self.choice.thresholds


def validation_splits(split: protocol.Split, *, folds: int) -> list[protocol.Split]:
    """Folds whose latest test week is the training week of ``split``."""
    first = split.train_start - timedelta(days=split.train_days + split.delay_days)
    return protocol.prequential_splits(
        first, folds=folds, step_days=split.test_days, train_days=split.train_days,
        delay_days=split.delay_days, test_days=split.test_days,
    )


@dataclass(frozen=True)
class Validated:
    """A candidate's outcome on each validation fold (the latest first) and their mean."""

    candidate: Candidate
    per_fold: list[Outcome]
    mean: dict[str, float]


def validate(
    frame: pd.DataFrame,
    split: protocol.Split,
    *,
    candidates: Sequence[Candidate] = CANDIDATES,
    folds: int = 4,
    on_fit: Callable[[], None] | None = None,
) -> list[Validated]:
    """Fit every candidate on every validation fold; ``on_fit`` is called after each fit."""
    splits = validation_splits(split, folds=folds)
    results: list[Validated] = []
    for candidate in candidates:
        per_fold = []
        for s in splits:
            per_fold.append(fit_and_score(frame, s, candidate))
            if on_fit is not None:
                on_fit()
        scored = [
            metrics.evaluate(o.predictions, review_threshold=1.0, decline_threshold=1.0)
            for o in per_fold
        ]
        mean = _mean_metrics(scored)
        log.info(
            "%s: mean validation AUC ROC %.3f, AP %.3f, CP@100 %.3f over %d folds",
            candidate.name, mean["auc_roc"], mean["average_precision"],
            mean["card_precision_at_100"], len(per_fold),
        )
        results.append(Validated(candidate, per_fold, mean))
    return results


def choose(
    results: Sequence[Validated],
    *,
    review_cards_per_day: float = 100.0,
    decline_precision: float = 0.9,
    costs: Mapping[str, Cost] | None = None,
) -> Selection:
    """The winner and its thresholds (see the module docstring): without ``costs``, the
    best mean validation AP (AUC breaks ties); with them (by candidate name), the cheapest
    one-row score among the candidates within the best's AP spread."""
    top = max(results, key=lambda r: (r.mean["average_precision"], r.mean["auc_roc"]))
    floor = top.mean["average_precision"] - top.mean.get("average_precision_std", 0.0)
    close = [r for r in results if r.mean["average_precision"] >= floor]
    if costs:
        best = min(close, key=lambda r: (costs[r.candidate.name].one_row_us,
                                         -r.mean["average_precision"]))
    else:
        best = top
    reason = _reason(best, top, floor, costs)
    latest = best.per_fold[0].predictions
    review = metrics.threshold_for_daily_cards(latest, cards_per_day=review_cards_per_day)
    decline = max(review, metrics.threshold_for_precision(latest, precision=decline_precision))
    thresholds = Thresholds(review=float(review), decline=float(decline))
    validation = _mean_metrics([
        metrics.evaluate(
            o.predictions, review_threshold=thresholds.review, decline_threshold=thresholds.decline
        )
        for o in best.per_fold
    ])
    return Selection(
        winner=best.candidate,
        choice=ThresholdChoice(
            thresholds,
            review_rule=f"about {review_cards_per_day:g} cards a day reach it on the latest "
            "validation week",
            decline_rule=f"lowest score with transaction precision >= {decline_precision:g} "
            "on the latest validation week",
        ),
        validation=validation,
        candidates=[
            {"name": r.candidate.name, "params": r.candidate.params, "validation": r.mean,
             "within_spread": r.mean["average_precision"] >= floor,
             **({"cost": costs[r.candidate.name].to_dict()} if costs else {})}
            for r in results
        ],
        reason=reason,
    )


def _reason(best: Validated, top: Validated, floor: float,
            costs: Mapping[str, Cost] | None) -> str:
    ap = best.mean["average_precision"]
    if best is top:
        cheaper = "" if not costs else "; no candidate within its spread costs less to serve"
        return f"{best.candidate.name}: the best mean validation AP ({ap:.4f}){cheaper}"
    assert costs is not None
    mine, theirs = costs[best.candidate.name], costs[top.candidate.name]
    return (
        f"{best.candidate.name}: mean validation AP {ap:.4f}, within the spread of the best "
        f"({top.candidate.name}, {top.mean['average_precision']:.4f} - one standard "
        f"deviation = {floor:.4f}), at {mine.one_row_us:.1f} µs a row against "
        f"{theirs.one_row_us:.1f} µs ({mine.batch_100_us_per_row:.2f} against "
        f"{theirs.batch_100_us_per_row:.2f} µs a row in batches of 100)"
    )


def select(
    frame: pd.DataFrame,
    split: protocol.Split,
    *,
    candidates: Sequence[Candidate] = CANDIDATES,
    folds: int = 4,
    review_cards_per_day: float = 100.0,
    decline_precision: float = 0.9,
) -> Selection:
    """Prequential model selection and threshold choice: :func:`validate`, then
    :func:`choose`."""
    return choose(
        validate(frame, split, candidates=candidates, folds=folds),
        review_cards_per_day=review_cards_per_day,
        decline_precision=decline_precision,
    )


def _mean_metrics(scored: Sequence[metrics.Metrics]) -> dict[str, float]:
    """Mean of the scalar metrics over folds, with their standard deviation (``folds``
    stays the integer count)."""
    rows = [m.to_dict() for m in scored]
    out: dict[str, float] = {"folds": len(rows)}
    for key in rows[0]:
        values = [float(v) for row in rows if isinstance(v := row[key], int | float)]
        if len(values) < len(rows):
            continue  # the per-day list: no mean of it
        out[key] = float(np.mean(values))
        if len(rows) > 1:
            out[f"{key}_std"] = float(np.std(values))
    return out
