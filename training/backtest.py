"""Backtest: what a candidate model and rules would have decided on history, beside today's.

::

    history ─► replay through fraudcore (training.replay) ─► features, once
                 ├─► baseline:  its ONNX model ─► its thresholds (policy) ─► its rules ─┐
                 └─► candidate: its ONNX model ─► its thresholds (policy) ─► its rules ─┴─►
                     predictions (one row per transaction) ─► metrics, changes, report

The history is replayed as training replays it (:func:`training.replay.replay`: label
events ``label_delay_days`` after each fraud, applied before the transactions of their
time), from ``warm-up`` days before the window so that every feature's windows are full:
the features read at most ``terminal_retention_seconds`` of the past (delay, longest
window and grace, 40 days), so the window's features are those of a replay from the data's
first day (``tests/unit/test_backtest.py`` checks it) at a fraction of the time. Each side
is what the worker would do with that model directory and rules file: the model loaded and
checked as the worker loads it (:mod:`training.backtest_model`), its score against its own
thresholds (:func:`fraudcore.policy.decide`), then its rules (:mod:`fraudrules`: the same
fields, the score included, and the same precedence). Rules that read lists (allow and
block lists kept in Redis by the service) see them empty here: the backtest has no list
contents, as a worker whose lists cannot be read.

Every transaction of the window is scored (none is left out as training's test cleaning
leaves out known-compromised cards: the backtest counts what the service would have done).
Metrics and changes: :mod:`training.backtest_metrics`; the Markdown report and its plots:
:mod:`training.backtest_report`; usage and the report's keys: ``docs/backtest.md``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fraudcore import SPEC, FeatureSpec, Transaction, decide
from fraudcore.errors import FraudError
from fraudrules import RuleSet, combine, load_rules
from training import backtest_metrics
from training.backtest_metrics import SIDES
from training.backtest_model import CHUNK_ROWS, ServedModel, load_served
from training.console import Phases, duration
from training.replay import replay
from training.train import features_of

__all__ = [
    "PREDICTION_COLUMNS",
    "Backtest",
    "BacktestError",
    "Side",
    "Window",
    "default_reviewer_capacity",
    "load_side",
    "run",
    "warm_up_days",
]

log = logging.getLogger(__name__)

#: The predictions file's columns, in order.
PREDICTION_COLUMNS = (
    "transaction_id", "card_id", "day", "label", "amount",
    "score_baseline", "score_candidate", "action_baseline", "action_candidate",
    "rules_baseline", "rules_candidate",
)


class BacktestError(FraudError, ValueError):
    """A backtest that cannot run as asked (its window, its inputs); the message says why."""


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a model and, optionally, a rules file."""

    model: ServedModel
    rules: RuleSet | None = None
    rules_file: Path | None = None

    def describe(self) -> dict[str, Any]:
        thresholds = self.model.info.thresholds
        return {
            "model_dir": str(self.model.directory),
            "model_version": self.model.version,
            "thresholds": {"review": thresholds.review, "decline": thresholds.decline},
            "rules_file": str(self.rules_file) if self.rules_file is not None else None,
            "rules_version": self.rules.version if self.rules is not None else None,
            "rules": [r.id for r in self.rules.rules] if self.rules is not None else [],
        }


def load_side(model: Path, rules: Path | None = None) -> Side:
    """The model ``model`` names and the rules of ``rules``, both checked (a
    :class:`~fraudcore.errors.ModelError` or :class:`~fraudrules.RulesError` otherwise)."""
    served = load_served(model)
    ruleset = load_rules(rules) if rules is not None else None
    if ruleset is not None:
        log.info("rules %s from %s (%d rules)", ruleset.version, rules, len(ruleset.rules))
    return Side(served, ruleset, rules)


@dataclass(frozen=True)
class Window:
    """The days scored: ``days`` UTC days from ``start``, ``[start, end)``."""

    start: date
    days: int

    def __post_init__(self) -> None:
        if self.days < 1:
            raise BacktestError(f"--days must be at least 1, got {self.days}")

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days)

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)


@dataclass(frozen=True)
class Backtest:
    """What :func:`run` found: the report (JSON-ready) and the predictions frame."""

    report: dict[str, Any]
    predictions: pd.DataFrame


def warm_up_days(spec: FeatureSpec = SPEC) -> int:
    """Days replayed before the window: the longest history a feature reads, whole days."""
    longest = max(spec.card_retention_seconds, spec.terminal_retention_seconds)
    return math.ceil(longest / 86_400)


def default_reviewer_capacity(frame: pd.DataFrame) -> float:
    """Cards a day investigators can review: training's notion (the benchmark's 100 cards a
    day at ~9,600 transactions a day, scaled to the data's daily volume), which it sets the
    review threshold by (``training.pipeline``; a test holds the two equal)."""
    days = max(1, int(frame["TX_DATETIME"].dt.normalize().nunique()))
    return 100.0 * (len(frame) / days) / 9_600


def _midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.year, day.month, day.day, tz="UTC")


def _check_window(frame: pd.DataFrame, window: Window) -> None:
    if frame.empty:
        raise BacktestError("the data holds no transactions")
    times = frame["TX_DATETIME"]
    first, last = times.min().date(), times.max().date()
    if not first <= window.start <= last:
        raise BacktestError(
            f"--from {window.start} is outside the data, which runs from {first} to {last} "
            "(UTC days); choose a day in it"
        )
    if window.last > last:
        raise BacktestError(
            f"--from {window.start} --days {window.days} runs to {window.last}, past the "
            f"data's last day {last}; at most {(last - window.start).days + 1} days from "
            f"{window.start}"
        )
    warm = window.start - timedelta(days=warm_up_days())
    if warm < first:
        log.warning(
            "the data starts on %s, %d days before --from: features of the first days read "
            "a shorter history than the %d days they look back (as at the start of training)",
            first, (window.start - first).days, warm_up_days(),
        )


def _transactions(rows: pd.DataFrame) -> list[Transaction]:
    """The window's transactions as replay builds them (the fields the rules read)."""
    return [
        Transaction(tx_id, card, terminal, amount, when)
        for tx_id, card, terminal, amount, when in zip(
            rows["TRANSACTION_ID"].tolist(),
            rows["CUSTOMER_ID"].tolist(),
            rows["TERMINAL_ID"].tolist(),
            rows["TX_AMOUNT"].tolist(),
            rows["TX_DATETIME"].dt.to_pydatetime().tolist(),
            strict=True,
        )
    ]


@dataclass
class _Decided:
    scores: NDArray[np.float64]
    actions: list[str]
    fired: list[str]  # the rule ids that fired, space-separated ('' for none)
    hits: Counter[str]
    errors: Counter[str]


def _lists(rules: RuleSet) -> Mapping[str, frozenset[str]] | None:
    if not rules.uses:
        return None
    log.warning(
        "rules %s read the lists %s: the backtest has no list contents, so they are empty "
        "(as in a worker that cannot read them)", rules.version,
        ", ".join(use.name for use in rules.uses),
    )
    return {use.name: frozenset() for use in rules.uses}


def _decide(
    side: Side,
    matrix: NDArray[np.float32],
    transactions: Sequence[Transaction],
    *,
    shared: dict[str, list[tuple[str, ...]]],
    advance: Callable[[int], None],
) -> _Decided:
    """Scores, policy and rules of one side, chunk by chunk. ``shared`` holds the rules
    fired per transaction by rule set version, when they do not read the score (then both
    sides with the same rules evaluate them once)."""
    rules, thresholds = side.rules, side.model.info.thresholds
    reads_score = rules is not None and any(f.name == "score" for f in rules.fields)
    cached = shared.get(rules.version) if rules is not None and not reads_score else None
    fired_all: list[tuple[str, ...]] = []
    lists = _lists(rules) if rules is not None else None
    actions_of = {r.id: r.action for r in rules.rules} if rules is not None else {}
    scores = np.empty(len(matrix), dtype=np.float64)
    actions: list[str] = []
    errors: Counter[str] = Counter()
    first_failure: dict[str, str] = {}
    for start in range(0, len(matrix), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(matrix))
        chunk = side.model.score(matrix[start:stop])
        scores[start:stop] = chunk
        model_actions = [decide(s, thresholds) for s in chunk.tolist()]
        if rules is None:
            actions += model_actions
        elif cached is not None:
            fired_all += cached[start:stop]
            actions += [
                combine(a, [actions_of[i] for i in ids])
                for a, ids in zip(model_actions, cached[start:stop], strict=True)
            ]
        else:
            rows = matrix[start:stop].tolist()
            for i, (action, score) in enumerate(zip(model_actions, chunk.tolist(), strict=True)):
                evaluation = rules.evaluate(transactions[start + i], rows[i], score, lists)
                fired_all.append(tuple(r.id for r in evaluation.fired))
                actions.append(combine(action, [r.action for r in evaluation.fired]))
                for rule, reason in evaluation.failed:
                    errors[rule.id] += 1
                    first_failure.setdefault(rule.id, reason)
        advance(stop - start)
    for rule_id, reason in first_failure.items():
        log.warning(
            "rule %r (rules %s) failed on %d transactions and did not fire there; the first: %s",
            rule_id, rules.version if rules else "", errors[rule_id], reason,
        )
    if rules is not None and cached is None and not reads_score:
        shared[rules.version] = fired_all
    hits = Counter(i for ids in fired_all for i in ids)
    fired = [" ".join(ids) for ids in fired_all] if rules is not None else [""] * len(matrix)
    return _Decided(scores, actions, fired, hits, errors)


def run(
    frame: pd.DataFrame,
    *,
    baseline: Side,
    candidate: Side,
    window: Window,
    examples: int = 10,
    reviewer_capacity: float | None = None,
    source: str = "data",
    phases: Phases | None = None,
) -> Backtest:
    """Backtest ``candidate`` against ``baseline`` on the ``window`` of ``frame`` (the
    canonical, time-sorted frame of :mod:`training.dataset`)."""
    phases = phases if phases is not None else Phases()
    started = time.perf_counter()
    _check_window(frame, window)
    times = frame["TX_DATETIME"]
    warm = max(window.start - timedelta(days=warm_up_days()), times.min().date())
    history = frame.loc[(times >= _midnight(warm)) & (times < _midnight(window.end))]
    with phases.phase(
        "replaying",
        f"{len(history):,} transactions from {warm} to {window.last} and their labels through "
        "the feature code",
        total=len(history),
        unit="transactions",
    ) as step:
        featured, stats = replay(history, progress=step.advance)
        step.note = f"{round(stats.events_per_second):,} events/s"
    rows = featured.loc[featured["TX_DATETIME"] >= _midnight(window.start)]
    if rows.empty:
        raise BacktestError(f"no transaction from {window.start} to {window.last}")
    matrix = features_of(rows)
    needs_rules = baseline.rules is not None or candidate.rules is not None
    transactions = _transactions(rows) if needs_rules else []
    scoring_started = time.perf_counter()
    decided: dict[str, _Decided] = {}
    shared: dict[str, list[tuple[str, ...]]] = {}
    with phases.phase(
        "scoring",
        f"{len(rows):,} transactions of {window.start}..{window.last} with both sides "
        "(model, thresholds, rules)",
        total=2 * len(rows),
        unit="decisions",
    ) as step:
        for name, side in zip(SIDES, (baseline, candidate), strict=True):
            decided[name] = _decide(
                side, matrix, transactions, shared=shared, advance=step.advance
            )
        scoring_seconds = time.perf_counter() - scoring_started
        step.note = f"{round(2 * len(rows) / max(scoring_seconds, 1e-9)):,} decisions/s"
    predictions = pd.DataFrame({
        "transaction_id": rows["TRANSACTION_ID"].to_numpy(),
        "card_id": rows["CUSTOMER_ID"].to_numpy(),
        "day": rows["TX_DATETIME"].dt.strftime("%Y-%m-%d").to_numpy(),
        "label": rows["TX_FRAUD"].to_numpy(dtype=np.int8),
        "amount": rows["TX_AMOUNT"].to_numpy(dtype=float),
        **{f"score_{n}": decided[n].scores for n in SIDES},
        **{f"action_{n}": decided[n].actions for n in SIDES},
        **{f"rules_{n}": decided[n].fired for n in SIDES},
    })[list(PREDICTION_COLUMNS)]
    with phases.phase("measuring", "both sides per day and the changes between them"):
        report = _report(
            predictions,
            sides={"baseline": baseline, "candidate": candidate},
            decided=decided,
            window=window,
            examples=examples,
            capacity=(
                reviewer_capacity
                if reviewer_capacity is not None
                else default_reviewer_capacity(frame)
            ),
            capacity_given=reviewer_capacity is not None,
        )
    seconds = time.perf_counter() - started
    report["data"] = {
        "source": source,
        "transactions": len(frame),
        "first": times.min().isoformat(),
        "last": times.max().isoformat(),
        "replayed_from": warm.isoformat(),
        "warm_up_days": warm_up_days(),
    }
    report["rate"] = {
        "replayed_transactions": stats.transactions,
        "replayed_labels": stats.labels,
        "replay_seconds": round(stats.seconds, 3),
        "replay_events_per_second": round(stats.events_per_second),
        "scored_transactions": len(rows),
        "scoring_seconds": round(scoring_seconds, 3),
        "decisions_per_second": round(2 * len(rows) / max(scoring_seconds, 1e-9)),
        "seconds": round(seconds, 3),
        "events_per_second": round((stats.transactions + stats.labels) / max(seconds, 1e-9)),
    }
    log.info(
        "backtest of %s days done in %s: %s events replayed at %s events/s, %s decisions "
        "at %s/s; %s events/s end to end",
        window.days, duration(seconds), f"{stats.transactions + stats.labels:,}",
        f"{round(stats.events_per_second):,}", f"{2 * len(rows):,}",
        f"{report['rate']['decisions_per_second']:,}",
        f"{report['rate']['events_per_second']:,}",
    )
    return Backtest(report, predictions)


def _report(
    predictions: pd.DataFrame,
    *,
    sides: Mapping[str, Side],
    decided: Mapping[str, _Decided],
    window: Window,
    examples: int,
    capacity: float,
    capacity_given: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "window": {
            "from": window.start.isoformat(),
            "days": window.days,
            "last": window.last.isoformat(),
            "transactions": len(predictions),
        },
        "reviewer_capacity": {
            "cards_per_day": capacity,
            "source": "--reviewer-capacity" if capacity_given else
            "training's: 100 cards a day per 9,600 transactions a day of the data",
        },
    }
    daily: dict[str, dict[str, dict[str, Any]]] = {}
    for name, side in sides.items():
        frame = backtest_metrics.side_frame(predictions, name)
        thresholds = side.model.info.thresholds
        overall = backtest_metrics.summarise(frame, thresholds=thresholds)
        daily[name] = backtest_metrics.per_day(
            frame, thresholds=thresholds, card_precision=overall["card_precision_per_day"]
        )
        out[name] = {
            **side.describe(),
            **overall,
            "rule_hits": dict(sorted(decided[name].hits.items())),
            "rule_errors": dict(sorted(decided[name].errors.items())),
        }
    out["days"] = [
        {"day": day, **{name: daily[name][day] for name in SIDES}}
        for day in sorted(daily["baseline"])
    ]
    out["changes"] = backtest_metrics.changes(predictions, examples=examples)
    return out
