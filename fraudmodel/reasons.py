"""Reason codes: which features pushed a transaction's score up, from the model's
contributions file.

A model trained with reason codes has ``reasons.onnx`` beside ``model.onnx`` (see
``training/reasons.py``): the same feature matrix in, one contribution per feature out,
that add up with the metadata's ``base_value`` to the model's output (its fraud
probability, or its log-odds for a model whose ``output`` is ``"log_odds"``).
:func:`load_explainer` checks that file as :func:`fraudmodel.load_model` checks the model — its
sha256 against the metadata, then a test batch whose contributions must add up to the
model's own scores — and :meth:`Explainer.explain` computes a whole batch's contributions
in one onnxruntime call. :func:`top_reasons` turns one row of them into a decision's
``reasons``.

A model without reason codes (no ``reasons`` in its metadata) still loads:
:func:`load_explainer` answers None and its decisions carry no reasons.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import (
    MODEL_FILE,
    ModelIdentity,
    ModelInfo,
    ReasonsDescription,
    check_reasons,
)
from fraudcore.errors import ModelIntegrityError
from fraudmodel.runtime import loaded_session

__all__ = [
    "CHECK_TOLERANCE",
    "DECIMALS",
    "Explainer",
    "Reason",
    "Scorer",
    "load_explainer",
    "top_reasons",
]

log = logging.getLogger(__name__)

#: How far sum + base may be from the model's score on the test batch. Training checked
#: each file against scikit-learn within 1e-5; this check is there to catch a file that
#: belongs to another model (differences of 1e-2 and more), not float32 rounding.
CHECK_TOLERANCE = 1e-4
#: Decimals of a reason's value and contribution.
DECIMALS = 6
#: Rows of the test batch every contributions model explains before it serves.
_TEST_ROWS = 4

#: Fraud probabilities of a float32 feature matrix, one per row (``Model.score``).
Scorer = Callable[[NDArray[np.float32]], NDArray[np.float64]]


class Reason(TypedDict):
    """One entry of a decision's ``reasons``."""

    feature: str
    value: float | None  # None: a feature that is not a finite number (JSON has no NaN)
    contribution: float


@dataclass(frozen=True)
class Explainer:
    """A checked contributions model: :meth:`explain` a batch, in one call."""

    info: ReasonsDescription
    session: ort.InferenceSession

    @property
    def output(self) -> str:
        """What the contributions add up to: ``"probability"`` or ``"log_odds"``."""
        return self.info.output

    def explain(self, rows: NDArray[np.float32]) -> NDArray[np.float64]:
        """Each feature's contribution for a float32 ``(n, n_features)`` matrix of feature
        vectors: ``(n, n_features)``, each row adding up with ``info.base_value`` to the
        model's output. onnxruntime's errors propagate (the caller's fail policy)."""
        output = self.session.run([self.info.output_name], {self.info.input_name: rows})[0]
        return np.asarray(output, dtype=np.float64)

    def totals(self, contributions: NDArray[np.float64]) -> NDArray[np.float64]:
        """The fraud probabilities that ``contributions`` (rows of :meth:`explain`) add up
        to with the base value (through the logistic function for log-odds)."""
        total = contributions.sum(axis=1) + self.info.base_value
        if self.info.output == "log_odds":
            return np.asarray(1.0 / (1.0 + np.exp(-total)), dtype=np.float64)
        return np.asarray(total, dtype=np.float64)


def load_explainer(
    directory: Path, info: ModelInfo, *, score: Scorer | None = None
) -> Explainer | None:
    """The checked contributions model of the model ``info`` describes, in ``directory``;
    None for a model without reason codes.

    ``score`` is the model's scorer for the test batch (the served ``Model.score``);
    without it ``model.onnx`` is read from ``directory``, checked against ``info`` and
    scored here. Raises :class:`~fraudcore.errors.ModelIntegrityError` saying what is
    wrong, whatever is wrong (never onnxruntime's own exception).
    """
    reasons = info.reasons
    if reasons is None:
        log.info("model %s has no reason codes: its decisions carry none", info.version)
        return None
    path = directory / reasons.file
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(
            f"model {info.version}: cannot read its reason codes {path}: {exc}; restore the "
            "file or retrain with `make train`"
        ) from exc
    check_reasons(reasons, content, version=info.version)
    loaded = loaded_session(content, path)
    explainer = Explainer(reasons, loaded)
    _test_explain(explainer, score or _model_scorer(directory, info), f"{path}")
    log.info(
        "model %s: reason codes by %s (%s), base value %.6g", info.version, reasons.method,
        reasons.output, reasons.base_value,
    )
    return explainer


def _model_scorer(directory: Path, info: ModelInfo) -> Scorer:
    """The fraud probabilities of ``model.onnx`` in ``directory``, its bytes checked."""
    path = directory / MODEL_FILE
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read the model {path}: {exc}") from exc
    if ModelIdentity.of(content).sha256 != info.sha256:
        raise ModelIntegrityError(
            f"model {info.version}: {path} is not the model its metadata describes (sha256); "
            "restore it or retrain with `make train`"
        )
    loaded = loaded_session(content, path)

    def score(rows: NDArray[np.float32]) -> NDArray[np.float64]:
        output = loaded.run([info.output_name], {info.input_name: rows})[0]
        return np.asarray(output[:, 1], dtype=np.float64)

    return score


def _check_rows(n_features: int) -> NDArray[np.float32]:
    """The test batch: a few amounts, the other features spread over 0..10 (fixed)."""
    rows = np.random.default_rng(0).uniform(0.0, 10.0, size=(_TEST_ROWS, n_features))
    rows[:, 0] = np.linspace(1.0, 5_000.0, _TEST_ROWS)
    return rows.astype(np.float32)


def _test_explain(explainer: Explainer, score: Scorer, where: str) -> None:
    """Explain the test batch; refuse the file unless it answers one contribution per
    feature and row that add up to the model's own scores."""
    info = explainer.info
    inputs = [i.name for i in explainer.session.get_inputs()]
    outputs = [o.name for o in explainer.session.get_outputs()]
    if info.input_name not in inputs or info.output_name not in outputs:
        raise ModelIntegrityError(
            f"{where}: its metadata names input {info.input_name!r} and output "
            f"{info.output_name!r}, the ONNX has {inputs} and {outputs}"
        )
    rows = _check_rows(len(info.features))
    try:
        found = explainer.explain(rows)
        scores = score(rows)
    except Exception as exc:  # noqa: BLE001 - any failure here refuses the file
        raise ModelIntegrityError(f"{where} fails to explain a test batch: {exc}") from exc
    if found.shape != rows.shape:
        raise ModelIntegrityError(
            f"{where}: a test batch of {rows.shape} features got contributions of shape "
            f"{found.shape}"
        )
    totals = explainer.totals(found)
    worst = float(np.max(np.abs(totals - scores)))
    if not worst <= CHECK_TOLERANCE:  # NaN refuses too
        raise ModelIntegrityError(
            f"{where}: the contributions of a test batch add up to {totals.tolist()!r}, the "
            f"model scores {scores.tolist()!r} (differences up to {worst:.2e}, tolerance "
            f"{CHECK_TOLERANCE:g}); they do not explain this model, retrain with `make train`"
        )


def top_reasons(
    contributions_row: Sequence[float] | NDArray[np.floating],
    features_row: Sequence[float] | NDArray[np.floating],
    *,
    k: int = 3,
    names: Sequence[str] = FEATURE_NAMES,
) -> tuple[Reason, ...]:
    """The (at most) ``k`` features with the largest positive contributions, towards fraud,
    largest first (ties in feature order), each value and contribution rounded to
    :data:`DECIMALS` decimals; none when nothing pushes the score up (a contribution that
    rounds to 0 does not)."""
    if not len(contributions_row) == len(features_row) == len(names):
        raise ValueError(
            f"{len(contributions_row)} contributions and {len(features_row)} values for "
            f"{len(names)} features"
        )
    contributions = [round(float(c), DECIMALS) for c in contributions_row]
    ranked = sorted(
        (i for i, c in enumerate(contributions) if c > 0.0), key=lambda i: -contributions[i]
    )
    reasons = []
    for i in ranked[: max(k, 0)]:
        value = float(features_row[i])
        reasons.append(Reason(
            feature=names[i],
            value=round(value, DECIMALS) if math.isfinite(value) else None,
            contribution=contributions[i],
        ))
    return tuple(reasons)
