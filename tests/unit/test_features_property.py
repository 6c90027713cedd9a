"""The 22 features against a deliberately naive reference, on random histories (hypothesis).

The reference is written from the definitions in the docstring of ``fraudcore/features.py``,
not from ``compute``: every window by brute force over the raw event lists, sums with
``sum``, the median and the deviation by hand. Histories are drawn so that every edge the
definitions have is reached: events exactly on a window's bound, ties with the current
event, later events a store may have over-fetched, amounts below the median's and the
deviation's floors, one previous amount (no z-score), labels known after the event.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudcore import FEATURE_NAMES, SPEC, CardHistory, TerminalHistory, Transaction, compute
from fraudcore.features import terminal_windows

DAY = 86_400.0
T = datetime(2026, 3, 7, 5, 30, tzinfo=UTC)  # a Saturday, at night
D = SPEC.label_delay_days * DAY

# Offsets from the event (seconds), biased to the windows' bounds and to 0.
_BOUNDS = [0.0, -3_600.0, -DAY, -7 * DAY, -30 * DAY, -D, -D - DAY, -D - 7 * DAY, -D - 30 * DAY]
offsets = st.one_of(
    st.sampled_from(_BOUNDS),
    st.sampled_from(_BOUNDS).map(lambda b: b + 1.0),
    st.sampled_from(_BOUNDS).map(lambda b: b - 1.0),
    st.floats(-40 * DAY, DAY, allow_nan=False),
)
amounts = st.one_of(st.floats(0.0, 0.2), st.floats(0.0, 3.0), st.floats(0.0, 5_000.0))


def reference(t: float, amount: float, when: datetime, card: list[tuple[float, float]],
              terminal: list[float], labels: list[tuple[float, float]]) -> dict[str, float]:
    """The features from the definitions. ``card``: (time, amount) of the card's previous
    transactions (any order, later ones included); ``terminal``: the times of the
    terminal's transactions; ``labels``: (transaction time, known at) of its frauds."""
    f: dict[str, float] = {
        "amount": amount,
        "is_weekend": 1.0 if when.weekday() in (5, 6) else 0.0,
        "is_night": 1.0 if 0 <= when.hour <= 6 else 0.0,
    }
    for w in (1, 7, 30):
        inside = [a for s, a in card if t - w * DAY < s <= t]
        f[f"tx_count_by_card_{w}d"] = len(inside) + 1.0
        f[f"amount_mean_by_card_{w}d"] = (sum(inside) + amount) / (len(inside) + 1)
    known = [s for s, k in labels if k <= t]
    for w in (1, 7, 30):
        low, high = t - D - w * DAY, t - D
        n = sum(1 for s in terminal if low < s <= high)
        frauds = sum(1 for s in known if low < s <= high)
        f[f"tx_count_by_terminal_{w}d_delay7d"] = float(n)
        f[f"fraud_rate_by_terminal_{w}d_delay7d"] = frauds / n if n else 0.0
    f["tx_count_by_card_1h"] = sum(1 for s, _ in card if t - 3_600 < s <= t) + 1.0
    month = [(s, a) for s, a in card if t - 30 * DAY < s <= t]
    f["seconds_since_last_by_card_30d"] = t - max(s for s, _ in month) if month else 30 * DAY
    previous = sorted(a for _, a in month)
    n = len(previous)
    if n == 0:
        f["amount_ratio_median_by_card_30d"] = 1.0
    else:
        median = (previous[n // 2] if n % 2 == 1
                  else (previous[n // 2 - 1] + previous[n // 2]) / 2)
        f["amount_ratio_median_by_card_30d"] = amount / max(median, 0.01)
    if n < 2:
        f["amount_zscore_by_card_30d"] = 0.0
    else:
        mean = sum(previous) / n
        std = math.sqrt(sum((a - mean) ** 2 for a in previous) / n)
        f["amount_zscore_by_card_30d"] = (amount - mean) / max(std, 1.0)
    f["fraud_count_by_terminal_30d_delay7d"] = float(
        sum(1 for s in known if t - D - 30 * DAY < s <= t - D))
    recent = [s for s in known if t - D - 30 * DAY < s <= t]
    f["fraud_age_days_min_by_terminal_37d"] = (t - max(recent)) / DAY if recent else 60.0
    f["fraud_age_days_max_by_terminal_37d"] = (t - min(recent)) / DAY if recent else 60.0
    return f


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    amount=amounts,
    hour=st.integers(0, 23),
    day=st.integers(0, 6),
    card=st.lists(st.tuples(offsets, amounts), max_size=12),
    terminal=st.lists(offsets, max_size=12),
    labels=st.lists(st.tuples(offsets, st.one_of(offsets, st.just(0.0), st.just(1.0))),
                    max_size=6),
)
def test_compute_equals_the_definitions(amount: float, hour: int, day: int,
                                        card: list[tuple[float, float]], terminal: list[float],
                                        labels: list[tuple[float, float]]) -> None:
    when = T.replace(hour=hour) + timedelta(days=day)
    t = when.timestamp()
    tx = Transaction("tx", "card", "terminal", amount, when)
    history = sorted((t + o, a) for o, a in card)  # what a store hands back: ascending
    frauds = [(t + s, max(t + s, t + k)) for s, k in labels]  # known at or after it
    terminal_times = [t + o for o in terminal]
    counts = [sum(1 for s in terminal_times if low < s <= high)
              for low, high in terminal_windows(t, SPEC)]
    got = compute(
        tx,
        CardHistory([s for s, _ in history], [a for _, a in history]),
        TerminalHistory(counts, [s for s, _ in frauds], [k for _, k in frauds]),
    )
    want = reference(t, amount, when, history, terminal_times, frauds)
    assert list(want) == list(FEATURE_NAMES)
    for name, value in zip(FEATURE_NAMES, got, strict=True):
        assert math.isclose(value, want[name], rel_tol=1e-9, abs_tol=1e-9), (
            name, value, want[name])
