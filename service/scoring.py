"""A batch's scores and what follows from them, in one place::

    feature rows ─► model ─► policy ─► rules ─┬─► decisions
                                              ├─► the challenger's shadow (while one is set)
                                              └─► reasons (decisions that do not approve)

:func:`score_batch` reads the model, the challenger and the rules once for the batch, so a
swap never splits one. Only the model can hold a batch: it raises and the pipeline scores
the batch again. The challenger and the reasons inform and never decide, so a failure of
either is counted (``fraud_shadow_failures_total``, ``fraud_reason_failures_total``),
logged once per model version, and the batch is decided without them.

**The shadow** is what the decision would have been with the challenger in the model's
place: its score against its own thresholds, then the same rules (those that read
``score`` evaluated again on the challenger's; the others as they fired). It never
changes ``action``; ``fraud_shadow_decisions_total{action, shadow_action}`` counts both.

**Reasons** are computed only for the decisions that do not approve (the approve path pays
nothing): the model's contributions (:mod:`fraudmodel.reasons`, what the model's artifact
carries), and the :data:`REASONS` features that pushed the score up most.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fraudcore import Transaction, decide
from fraudmodel.reasons import top_reasons
from fraudrules import combine
from service import metrics
from service.model import Model
from service.ports import Models, Rules
from service.records import Decision, Shadow
from service.rules import apply_rules, list_lookups

__all__ = ["REASONS", "score_batch"]

log = logging.getLogger(__name__)

#: Features named in a decision's ``reasons``.
REASONS = 3
_logged: set[tuple[str, str]] = set()  # (what failed, model version): logged once


def score_batch(
    models: Models,
    rules: Rules | None,
    rows: Sequence[Sequence[float]],
    scored: Sequence[tuple[Transaction, bool]],
    *,
    now: float,
    degraded: bool,
    keep_features: bool,
) -> list[Decision]:
    """The decisions of a batch: ``rows`` its feature vectors, ``scored`` its transactions
    (each with whether it is a duplicate), in the same order. ``keep_features``: each
    decision holds its vector (to show it, or to log it)."""
    started = time.perf_counter()
    model = models.model
    matrix = np.asarray(rows, dtype=np.float32)
    scores = model.score(matrix)
    thresholds = model.info.thresholds
    decisions = []
    for (tx, duplicate), score, row in zip(scored, scores.tolist(), rows, strict=True):
        action = decide(score, thresholds)
        decisions.append(Decision(
            tx,
            score,
            action,
            model.version,
            now,
            duplicate=duplicate,
            degraded=degraded,
            features=row if keep_features else None,
            thresholds=thresholds,
            model_action=action,
        ))
    metrics.STAGE_SECONDS.labels("model").observe(time.perf_counter() - started)
    decisions = apply_rules(rules, decisions, rows)
    challenger = models.challenger
    if challenger is not None:
        decisions = _shadowed(challenger, rules, decisions, matrix, rows)
    return _explained(model, decisions, matrix, rows)


def _shadowed(
    challenger: Model,
    holder: Rules | None,
    decisions: list[Decision],
    matrix: np.ndarray,
    rows: Sequence[Sequence[float]],
) -> list[Decision]:
    started = time.perf_counter()
    try:
        shadowed = _shadow(challenger, holder, decisions, matrix, rows)
    except Exception as exc:  # noqa: BLE001 - the challenger never holds the stream
        _failed("shadow", challenger.version, exc)
        metrics.SHADOW_FAILURES.inc()
        return decisions
    metrics.STAGE_SECONDS.labels("shadow").observe(time.perf_counter() - started)
    return shadowed


def _shadow(
    challenger: Model,
    holder: Rules | None,
    decisions: list[Decision],
    matrix: np.ndarray,
    rows: Sequence[Sequence[float]],
) -> list[Decision]:
    scores = challenger.score(matrix).tolist()
    ruleset = holder.rules if holder is not None else None  # the batch's (no await since)
    # Rules that read the score are evaluated again on the challenger's, with the same
    # lists the live rules saw (no await since either); the others fired as they did.
    again = ruleset.reading("score") if ruleset is not None else None
    lookups = list_lookups(holder, again)[0] if holder and again and again.rules else None
    kept = {r.id: r.action for r in ruleset.rules if "score" not in r.reads} if ruleset else {}
    thresholds = challenger.info.thresholds
    shadowed = []
    for decision, score, row in zip(decisions, scores, rows, strict=True):
        action = decide(score, thresholds)
        if ruleset is not None:
            fired = [kept[rule_id] for rule_id in decision.rules if rule_id in kept]
            if again is not None and again.rules:
                fired += [rule.action for rule in
                          again.evaluate(decision.transaction, row, score, lookups).fired]
            action = combine(action, fired)
        shadowed.append(replace(decision, shadow=Shadow(challenger.version, score, action)))
    for (action, shadow_action), count in Counter(
        (d.action, d.shadow.action) for d in shadowed if d.shadow is not None
    ).items():
        metrics.SHADOW_DECISIONS.labels(action, shadow_action).inc(count)
    return shadowed


def _explained(
    model: Model,
    decisions: list[Decision],
    matrix: np.ndarray,
    rows: Sequence[Sequence[float]],
) -> list[Decision]:
    explainer = model.explainer
    wanted = [i for i, decision in enumerate(decisions) if decision.action != "approve"]
    if explainer is None or not wanted:
        return decisions
    started = time.perf_counter()
    try:
        contributions = explainer.explain(matrix[wanted])
        explained = list(decisions)
        for row, i in zip(contributions, wanted, strict=True):
            explained[i] = replace(decisions[i], reasons=top_reasons(row, rows[i], k=REASONS))
    except Exception as exc:  # noqa: BLE001 - reasons never hold the stream
        _failed("reasons", model.version, exc)
        metrics.REASON_FAILURES.inc()
        return decisions
    metrics.STAGE_SECONDS.labels("reasons").observe(time.perf_counter() - started)
    return explained


def _failed(what: str, version: str, exc: Exception) -> None:
    if (what, version) in _logged:
        return
    _logged.add((what, version))
    log.error(
        "the %s of model %s failed; deciding without them (logged once per model version; "
        "counted in fraud_%s_failures_total): %r",
        what, version, "shadow" if what == "shadow" else "reason", exc,
    )
