"""Every feature on hand-worked examples, through the in-memory store."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from fraudcore import (
    FEATURE_NAMES,
    SPEC,
    CardHistory,
    DuplicateConflict,
    FeatureSpec,
    InMemoryStore,
    LabelEvent,
    TerminalHistory,
    Transaction,
    compute,
    fingerprint,
)

T0 = datetime(2018, 4, 2, 12, 0, tzinfo=UTC)  # a Monday, noon
DAY = timedelta(days=1)


def tx(tx_id: str, at: datetime, amount: float = 10.0, card: str = "c1", terminal: str = "t1"):
    return Transaction(tx_id, card, terminal, amount, at)


def label(of: Transaction, known_at: datetime) -> LabelEvent:
    return LabelEvent(
        of.transaction_id, of.card_id, of.terminal_id, of.amount, of.timestamp, known_at
    )


def features(store: InMemoryStore, t: Transaction) -> dict[str, float]:
    card, terminal = store.exchange(t)
    return dict(zip(FEATURE_NAMES, compute(t, card, terminal), strict=True))


def test_names_are_ordered_and_unique():
    assert FEATURE_NAMES[:3] == ("amount", "is_weekend", "is_night")
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 22
    assert "fraud_rate_by_terminal_7d_delay7d" in FEATURE_NAMES


def test_first_transaction_of_a_card():
    f = features(InMemoryStore(), tx("a", T0, 42.5))
    assert f["amount"] == 42.5
    for w in (1, 7, 30):
        assert f[f"tx_count_by_card_{w}d"] == 1.0
        assert f[f"amount_mean_by_card_{w}d"] == 42.5
        assert f[f"tx_count_by_terminal_{w}d_delay7d"] == 0.0
        assert f[f"fraud_rate_by_terminal_{w}d_delay7d"] == 0.0
    assert f["tx_count_by_card_1h"] == 1.0
    assert f["seconds_since_last_by_card_30d"] == 30 * 86_400
    assert f["amount_ratio_median_by_card_30d"] == 1.0
    assert f["amount_zscore_by_card_30d"] == 0.0
    assert f["fraud_age_days_min_by_terminal_37d"] == 60.0


@pytest.mark.parametrize(
    ("when", "weekend", "night"),
    [
        (datetime(2018, 4, 7, 6, 59, tzinfo=UTC), 1.0, 1.0),  # Saturday 06:59
        (datetime(2018, 4, 8, 7, 0, tzinfo=UTC), 1.0, 0.0),  # Sunday 07:00
        (datetime(2018, 4, 9, 0, 0, tzinfo=UTC), 0.0, 1.0),  # Monday midnight
        # 23:30 UTC Friday is 01:30 Saturday in UTC+2: the event's own offset decides.
        (
            datetime(2018, 4, 6, 23, 30, tzinfo=UTC).astimezone(
                __import__("datetime").timezone(timedelta(hours=2))
            ),
            1.0,
            1.0,
        ),
    ],
)
def test_weekend_and_night_in_the_events_own_offset(when, weekend, night):
    f = features(InMemoryStore(), tx("a", when))
    assert (f["is_weekend"], f["is_night"]) == (weekend, night)


def test_card_windows_are_half_open_on_the_left():
    store = InMemoryStore()
    now = T0 + 40 * DAY
    features(store, tx("edge1d", now - DAY, 100.0))  # exactly 1 day back: out of (t-1d, t]
    features(store, tx("in1d", now - DAY + timedelta(seconds=1), 50.0))
    features(store, tx("edge30d", now - 30 * DAY, 1000.0))  # out of every window
    features(store, tx("in30d", now - 30 * DAY + timedelta(seconds=1), 30.0))
    f = features(store, tx("now", now, 20.0))
    assert f["tx_count_by_card_1d"] == 2.0  # in1d + now
    assert f["amount_mean_by_card_1d"] == pytest.approx(35.0)
    assert f["tx_count_by_card_7d"] == 3.0  # edge1d, in1d, now
    assert f["amount_mean_by_card_7d"] == pytest.approx(170 / 3)
    assert f["tx_count_by_card_30d"] == 4.0  # + in30d
    assert f["amount_mean_by_card_30d"] == pytest.approx(200 / 4)
    assert f["tx_count_by_card_1h"] == 1.0
    assert f["seconds_since_last_by_card_30d"] == 86_400 - 1
    # previous amounts in 30 days: 100, 50, 30 -> median 50, mean 60, pstdev 29.439
    assert f["amount_ratio_median_by_card_30d"] == pytest.approx(20 / 50)
    assert f["amount_zscore_by_card_30d"] == pytest.approx((20 - 60) / 29.43920288775949)


def test_one_hour_window_and_ties_in_time():
    store = InMemoryStore()
    features(store, tx("a", T0 - timedelta(minutes=59)))
    features(store, tx("b", T0))
    f = features(store, tx("c", T0))  # same second as b: b is in its past
    assert f["tx_count_by_card_1h"] == 3.0
    assert f["seconds_since_last_by_card_30d"] == 0.0


def test_terminal_windows_use_the_delay_edge():
    store = InMemoryStore()
    now = T0 + 40 * DAY
    end = now - 7 * DAY
    at_edge = tx("edge", end, card="x")  # exactly t - D: inside (t - D - w, t - D]
    after_edge = tx("late", end + timedelta(seconds=1), card="y")  # too recent to count
    start_edge = tx("start", end - DAY, card="z")  # exactly t - D - 1d: outside the 1d window
    for t in (at_edge, after_edge, start_edge):
        features(store, t)
    f = features(store, tx("now", now, card="w"))
    assert f["tx_count_by_terminal_1d_delay7d"] == 1.0
    assert f["tx_count_by_terminal_7d_delay7d"] == 2.0
    assert f["tx_count_by_terminal_30d_delay7d"] == 2.0


def test_terminal_risk_counts_only_labels_known_at_scoring_time():
    store = InMemoryStore()
    now = T0 + 40 * DAY
    half = timedelta(hours=12)
    frauds = [
        tx(f"f{i}", now - 7 * DAY - half - timedelta(hours=i), card=f"c{i}") for i in range(3)
    ]
    clean = tx("ok", now - 7 * DAY - half, card="c9")
    for t in (*frauds, clean):
        features(store, t)
    store.add_label(label(frauds[0], now - DAY))  # known before t
    store.add_label(label(frauds[1], now))  # known exactly at t: counts
    store.add_label(label(frauds[2], now + timedelta(seconds=1)))  # arrived early, not yet known
    f = features(store, tx("now", now, card="q"))
    assert f["tx_count_by_terminal_7d_delay7d"] == 4.0
    assert f["fraud_rate_by_terminal_7d_delay7d"] == pytest.approx(2 / 4)
    assert f["fraud_rate_by_terminal_1d_delay7d"] == pytest.approx(2 / 4)
    assert f["fraud_count_by_terminal_30d_delay7d"] == 2.0
    assert f["fraud_age_days_min_by_terminal_37d"] == pytest.approx(7.5)
    assert f["fraud_age_days_max_by_terminal_37d"] == pytest.approx(7.5 + 1 / 24)


def test_late_and_out_of_order_labels_are_used_once_they_are_in():
    store = InMemoryStore()
    now = T0 + 40 * DAY
    fraud = tx("f", now - 10 * DAY, card="a")
    features(store, fraud)
    before = features(store, tx("before", now - DAY, card="b"))
    assert before["fraud_rate_by_terminal_7d_delay7d"] == 0.0
    # The label arrives late (after "before" was scored) but says it was known earlier.
    store.add_label(label(fraud, now - 2 * DAY))
    store.add_label(label(fraud, now - 2 * DAY))  # a duplicate label changes nothing
    after = features(store, tx("after", now, card="c"))
    assert after["fraud_rate_by_terminal_7d_delay7d"] == 1.0  # "before" is too recent to count


def test_redelivery_changes_nothing_and_returns_the_same_features():
    store = InMemoryStore()
    features(store, tx("a", T0, 10.0))
    first = features(store, tx("b", T0 + DAY, 30.0))
    features(store, tx("c", T0 + 2 * DAY, 50.0))
    again = features(store, tx("b", T0 + DAY, 30.0))
    assert again == first
    assert len(store.cards["c1"]) == 3


def test_same_id_with_other_content_is_a_conflict():
    store = InMemoryStore()
    features(store, tx("a", T0, 10.0))
    with pytest.raises(DuplicateConflict, match="seen before"):
        store.exchange(tx("a", T0, 99.0))


def test_memory_is_bounded_by_the_longest_window():
    store = InMemoryStore()
    for day in range(100):
        features(store, tx(f"t{day}", T0 + day * DAY))
    # card keeps 30 days + 3 days grace; terminal keeps 7 + 30 + 3 days
    assert len(store.cards["c1"]) == 33
    assert len(store.terminals["t1"]) == 40


def test_compute_applies_windows_to_any_superset_history():
    t = tx("now", T0 + 50 * DAY, 10.0)
    narrow = compute(t, CardHistory([t.epoch - 3600.0], [5.0]), TerminalHistory([0, 0, 0]))
    wide = compute(
        t,
        CardHistory([t.epoch - 40 * 86_400, t.epoch - 3600.0, t.epoch + 10.0], [7.0, 5.0, 9.0]),
        TerminalHistory([0, 0, 0], [t.epoch - 45 * 86_400], [t.epoch - 44 * 86_400]),
    )
    assert narrow == wide


def _other(value: object) -> object:
    if isinstance(value, tuple):
        return (*value, 90)
    if isinstance(value, float):
        return value + 0.5
    assert isinstance(value, int)
    return value + 1


def test_fingerprint_follows_the_definitions():
    # Equal specs built apart give the same fingerprint; every parameter moves it.
    assert fingerprint(FeatureSpec()) == fingerprint(FeatureSpec(**asdict(SPEC)))
    for name, value in asdict(SPEC).items():
        changed = FeatureSpec(**{**asdict(SPEC), name: _other(value)})
        assert fingerprint(changed) != fingerprint(), name
    assert fingerprint(FeatureSpec(label_delay_days=5)) != fingerprint()
    assert fingerprint(FeatureSpec(version=2)) != fingerprint()


def test_a_forgotten_transaction_counts_nowhere_and_can_come_again() -> None:
    from fraudcore import InMemoryStore, Transaction

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    store = InMemoryStore()
    first = Transaction("a", "c", "t", 10.0, t0)
    second = Transaction("b", "c", "t", 12.0, t0 + timedelta(hours=1))
    store.exchange(first)
    store.exchange(second)
    store.forget(second)
    third = Transaction("c", "c", "t", 14.0, t0 + timedelta(hours=2))
    card, terminal = store.exchange(third)
    assert card.timestamps == [first.epoch] and card.amounts == [10.0]
    assert store.terminals["t"].count(0.0, third.epoch) == 2  # a and c, not b
    again, _ = store.exchange(second)  # recorded afresh, as new (late: c is there already)
    assert again.timestamps == [first.epoch, third.epoch]
    assert store.cards["c"].get("b") == (second.epoch, 12.0, "t")


# --- histories that do not fit the definitions are refused, not read short ----------------


def test_a_terminal_history_with_the_wrong_number_of_counts_is_refused() -> None:
    # One count per terminal window (1, 7, 30 days): two counts cannot be read.
    with pytest.raises(ValueError, match=r"terminal history has 2 counts, not 3"):
        compute(tx("x", T0), CardHistory(), TerminalHistory(counts=[1, 1]))


@pytest.mark.parametrize(
    ("fraud_timestamps", "fraud_known_at"),
    [
        ([T0.timestamp() - 9 * 86_400.0], []),  # a fraud without the time it became known
        ([], [T0.timestamp()]),  # a known time without its fraud
        ([T0.timestamp() - 9 * 86_400.0] * 2, [T0.timestamp()]),
    ],
)
def test_fraud_times_and_known_times_must_pair_up(
    fraud_timestamps: list[float], fraud_known_at: list[float]
) -> None:
    # Each label is a pair (transaction time, known at): lists of different lengths are no
    # set of labels, and pairing them short would silently drop a fraud.
    history = TerminalHistory(
        counts=[5, 5, 5], fraud_timestamps=fraud_timestamps, fraud_known_at=fraud_known_at
    )
    with pytest.raises(ValueError):
        compute(tx("x", T0), CardHistory(), history)
