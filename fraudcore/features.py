"""Feature definitions: one pure function of (the event, the state before it).

The state of a card is its recent transactions (time, amount); the state of a terminal is
its recent transactions (time) and the fraud labels learnt so far (transaction time, time
the label became known). A store (in memory for training, Redis in the service) keeps
that state, hands back the *history before* an event and records the event; this module
turns event + history into the feature vector. Histories may hold more than the windows
need (a store may over-fetch); every window below is applied here, so both stores give
the same features.

Time is the event's own timestamp. Windows are half-open on the left: ``(t - w, t]``.

Baseline (the benchmark's 15 inputs)::

    amount, is_weekend, is_night                      (weekend and night in the event's
                                                        own UTC offset; night = hour 0-6)
    tx_count_by_card_{1,7,30}d, amount_mean_by_card_{1,7,30}d
                                                      (t - w, t], current one included
    tx_count_by_terminal_{1,7,30}d_delay7d            (t - D - w, t - D]
    fraud_rate_by_terminal_{1,7,30}d_delay7d          frauds / transactions in that window,
                                                      counting only labels known at t; 0
                                                      when the window is empty

Added, for what the baseline misses (see the training report's ablation)::

    tx_count_by_card_1h                               (t - 1h, t], current included
    seconds_since_last_by_card_30d                    t - previous transaction; 30 days
                                                      when there is none in 30 days
    amount_ratio_median_by_card_30d                   amount / median of the card's
                                                      previous amounts in (t - 30d, t];
                                                      1 when there are none
    amount_zscore_by_card_30d                         (amount - mean) / max(std, 1) over the
                                                      previous amounts; 0 with fewer than 2
    fraud_count_by_terminal_30d_delay7d               known frauds in (t - D - 30d, t - D]
    fraud_age_days_{min,max}_by_terminal_37d          age in days of the newest / oldest
                                                      fraud known at t among the terminal's
                                                      transactions in (t - D - 30d, t]; 60
                                                      when there is none (a compromised
                                                      terminal stays so for about 4 weeks)
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from fraudcore.events import Transaction

__all__ = [
    "FEATURE_NAMES",
    "SPEC",
    "CardHistory",
    "FeatureSpec",
    "TerminalHistory",
    "compute",
    "fingerprint",
    "terminal_windows",
]

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """The parameters of the feature definitions. Bump ``version`` whenever the meaning of
    a feature changes: the fingerprint, the Redis key prefix and the models follow it."""

    version: int = 1
    card_windows_days: tuple[int, ...] = (1, 7, 30)
    terminal_windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = 7
    short_window_seconds: int = 3_600
    no_fraud_age_days: float = 60.0
    grace_days: int = 3  # how far (event time) one partition may run ahead of another
    # Bounds in size as well as age, so that the cost of one event never grows with a key's
    # history past them (a bot's burst on one card, a label flood on one terminal): a card
    # keeps its newest ``card_max_entries`` transactions, a terminal its newest
    # ``terminal_max_entries`` transactions and ``terminal_max_labels`` fraud labels (by
    # transaction time). Far above any card or terminal of the benchmark.
    card_max_entries: int = 500
    terminal_max_entries: int = 100_000
    terminal_max_labels: int = 250

    @property
    def card_retention_seconds(self) -> float:
        """How far back a card's history must reach (longest window plus grace)."""
        return (max(self.card_windows_days) + self.grace_days) * DAY

    @property
    def terminal_retention_seconds(self) -> float:
        """How far back a terminal's history must reach (delay + longest window + grace)."""
        return (self.label_delay_days + max(self.terminal_windows_days) + self.grace_days) * DAY


SPEC = FeatureSpec()


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CardHistory:
    """A card's previous transactions (never the current one), ascending by time; ties in
    time may come in any order (sums are exact, so the order does not matter).

    Any sequences of floats: the compiled Redis path gives ``array('d')``, which the
    compiled features read at once. Two histories are equal, and print, by their values,
    whatever holds them."""

    timestamps: Sequence[float] = ()
    amounts: Sequence[float] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CardHistory):
            return NotImplemented
        return (list(self.timestamps) == list(other.timestamps)
                and list(self.amounts) == list(other.amounts))

    __hash__ = None  # type: ignore[assignment] # equal by value, as a list is

    def __repr__(self) -> str:
        return (f"CardHistory(timestamps={list(self.timestamps)!r}, "
                f"amounts={list(self.amounts)!r})")


@dataclass(frozen=True, slots=True)
class TerminalHistory:
    """What a terminal's state says before a transaction.

    ``counts[i]`` is the number of the terminal's transactions in the i-th interval of
    :func:`terminal_windows` (a busy terminal has too many transactions to ship them all,
    so the store counts them); ``fraud_timestamps`` and ``fraud_known_at`` are the fraud
    labels recorded for the terminal, in any order.
    """

    counts: Sequence[int] = ()
    fraud_timestamps: Sequence[float] = ()
    fraud_known_at: Sequence[float] = ()


def terminal_windows(t: float, spec: FeatureSpec) -> list[tuple[float, float]]:
    """The intervals ``(low, high]`` in which a store counts a terminal's transactions."""
    end = t - spec.label_delay_days * DAY
    return [(end - w * DAY, end) for w in spec.terminal_windows_days]


def _names(spec: FeatureSpec) -> tuple[str, ...]:
    d = spec.label_delay_days
    names = ["amount", "is_weekend", "is_night"]
    for w in spec.card_windows_days:
        names += [f"tx_count_by_card_{w}d", f"amount_mean_by_card_{w}d"]
    for w in spec.terminal_windows_days:
        names += [f"tx_count_by_terminal_{w}d_delay{d}d", f"fraud_rate_by_terminal_{w}d_delay{d}d"]
    longest = max(spec.terminal_windows_days)
    names += [
        "tx_count_by_card_1h",
        f"seconds_since_last_by_card_{max(spec.card_windows_days)}d",
        f"amount_ratio_median_by_card_{max(spec.card_windows_days)}d",
        f"amount_zscore_by_card_{max(spec.card_windows_days)}d",
        f"fraud_count_by_terminal_{longest}d_delay{d}d",
        f"fraud_age_days_min_by_terminal_{longest + d}d",
        f"fraud_age_days_max_by_terminal_{longest + d}d",
    ]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names(SPEC)


def fingerprint(spec: FeatureSpec = SPEC) -> str:
    """A short hash of the feature definitions: names, order and parameters."""
    payload = json.dumps({"spec": asdict(spec), "names": _names(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def compute(
    tx: Transaction,
    card: CardHistory,
    terminal: TerminalHistory,
    *,
    spec: FeatureSpec = SPEC,
) -> list[float]:
    """The feature vector of ``tx``, in :data:`FEATURE_NAMES` order."""
    t = tx.epoch
    amount = tx.amount
    local = tx.timestamp
    features = [amount, float(local.weekday() >= 5), float(local.hour <= 6)]

    # Card: windows over the ascending history, by bisection.
    times = card.timestamps
    now = bisect_right(times, t)
    for w in spec.card_windows_days:
        first = bisect_right(times, t - w * DAY, 0, now)
        count = now - first
        total = math.fsum(card.amounts[first:now]) + amount
        features += [float(count + 1), total / (count + 1)]
    start = bisect_right(times, t - max(spec.card_windows_days) * DAY, 0, now)
    previous = card.amounts[start:now]
    short_count = now - bisect_right(times, t - spec.short_window_seconds, start, now)
    since_last = t - times[now - 1] if now > start else max(spec.card_windows_days) * DAY

    # Terminal: transactions and known frauds in the delayed windows.
    windows = terminal_windows(t, spec)
    if len(terminal.counts) != len(windows):
        raise ValueError(f"terminal history has {len(terminal.counts)} counts, not {len(windows)}")
    fraud_counts = [0] * len(windows)
    oldest_low = min(low for low, _ in windows)
    newest_fraud, oldest_fraud = None, None
    for ts, known in zip(terminal.fraud_timestamps, terminal.fraud_known_at, strict=True):
        if known > t or ts <= oldest_low or ts > t:
            continue
        newest_fraud = ts if newest_fraud is None else max(newest_fraud, ts)
        oldest_fraud = ts if oldest_fraud is None else min(oldest_fraud, ts)
        for i, (low, high) in enumerate(windows):
            fraud_counts[i] += low < ts <= high
    for n_tx, n_fraud in zip(terminal.counts, fraud_counts, strict=True):
        features += [float(n_tx), n_fraud / n_tx if n_tx else 0.0]

    # Additions: the card's short-term pace and the amount against its own history.
    n = len(previous)
    ratio = amount / max(_median(previous), 0.01) if n else 1.0
    if n >= 2:
        mean = math.fsum(previous) / n
        deviations = [x - mean for x in previous]
        std = math.sqrt(math.fsum(map(operator.mul, deviations, deviations)) / n)
        zscore = (amount - mean) / max(std, 1.0)
    else:
        zscore = 0.0
    no_fraud = spec.no_fraud_age_days
    features += [
        float(short_count + 1),
        since_last,
        ratio,
        zscore,
        float(fraud_counts[spec.terminal_windows_days.index(max(spec.terminal_windows_days))]),
        (t - newest_fraud) / DAY if newest_fraud is not None else no_fraud,
        (t - oldest_fraud) / DAY if oldest_fraud is not None else no_fraud,
    ]
    return features


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
