"""The in-memory store's size bounds and label checks: the reference the Redis scripts follow.

Expected values are worked out by hand from the rules in ``fraudcore/state.py``'s docstring,
never from the store itself.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fraudcore import SPEC, InMemoryStore, LabelEvent, Transaction

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SMALL = replace(SPEC, card_max_entries=3, terminal_max_entries=4, terminal_max_labels=2)


def tx(i: int, *, card: str = "c", terminal: str = "t", minutes: float | None = None
       ) -> Transaction:
    at = T0 + timedelta(minutes=i if minutes is None else minutes)
    return Transaction(f"tx-{i}", card, terminal, float(10 + i), at)


def label(t: Transaction, **change: object) -> LabelEvent:
    fields: dict[str, object] = {
        "transaction_id": t.transaction_id,
        "card_id": t.card_id,
        "terminal_id": t.terminal_id,
        "amount": t.amount,
        "timestamp": t.timestamp,
        "known_at": t.timestamp + timedelta(days=1),
    }
    fields.update(change)
    return LabelEvent(**fields)  # type: ignore[arg-type]


def test_a_card_beyond_its_bound_keeps_its_newest_entries() -> None:
    store = InMemoryStore(spec=SMALL)
    histories = [store.exchange(tx(i))[0] for i in range(6)]
    # card_max_entries=3: the history before a transaction holds at most 2 entries.
    assert [list(h.amounts) for h in histories] == [
        [],
        [10.0],
        [10.0, 11.0],
        [11.0, 12.0],
        [12.0, 13.0],
        [13.0, 14.0],
    ]
    assert len(store.cards["c"]) == 3  # 13, 14, 15
    assert store.capped["card"] == 3  # tx-0, tx-1, tx-2 dropped for size, one each


def test_a_duplicate_beyond_the_bound_gets_the_same_history_as_the_first_time() -> None:
    store = InMemoryStore(spec=SMALL)
    for i in range(3):
        store.exchange(tx(i))
    first = store.exchange(tx(3))[0]
    again = store.exchange(tx(3))[0]
    assert list(first.amounts) == list(again.amounts) == [11.0, 12.0]


def test_a_late_event_older_than_the_kept_ones_is_dropped_at_once() -> None:
    store = InMemoryStore(spec=SMALL)
    for i in range(1, 4):
        store.exchange(tx(i))
    late = store.exchange(tx(0, minutes=-5))[0]
    # the two newest but one are kept before it; then it is the oldest of three, kept
    assert list(late.amounts) == [12.0, 13.0]
    store.exchange(tx(4))
    assert store.cards["c"].get("tx-0") is None  # dropped by the next one


def test_a_terminal_counts_at_most_its_bound() -> None:
    store = InMemoryStore(spec=SMALL)
    for i in range(10):  # all in the 1-day window of a transaction 8 days later
        store.exchange(tx(i, card=f"c{i}"))
    probe = tx(99, card="other", minutes=8 * 24 * 60)
    _, terminal = store.exchange(probe)
    # 10 recorded, then the probe: the terminal keeps its newest 4, the probe among them
    assert list(terminal.counts) == [3, 3, 3]
    assert store.capped["terminal"] == 10 + 1 - 4


def test_a_terminal_keeps_its_labels_of_the_newest_transactions() -> None:
    store = InMemoryStore(spec=SMALL)
    txs = [tx(i, card=f"c{i}") for i in range(5)]
    for t in txs:
        store.exchange(t)
    for t in reversed(txs):  # the newest transactions' labels first
        store.add_label(label(t))
    kept = sorted(e[1] for e in store.labels["t"].since(0.0, excluding=""))
    assert kept == ["tx-3", "tx-4"]
    assert store.capped["label"] == 3


def test_a_label_must_name_the_recorded_transaction() -> None:
    store = InMemoryStore()
    t = tx(1)
    store.exchange(t)
    assert store.check_label(label(t)) == "match"
    assert store.check_label(label(t, amount=t.amount + 0.01)) == "mismatch"
    assert store.check_label(label(t, terminal_id="t-other")) == "mismatch"
    assert store.check_label(label(t, timestamp=t.timestamp + timedelta(seconds=1))) == "mismatch"
    assert store.check_label(label(t, transaction_id="tx-never")) == "unknown"
    assert store.check_label(label(t, terminal_id="t-never")) == "mismatch"
    # the card goes on: an id it never saw, dated more than the grace (3 days) before the
    # card's newest transaction, will never come
    store.exchange(tx(2, minutes=3 * 24 * 60 + 2))
    assert store.check_label(label(t, transaction_id="tx-never")) == "absent"
    assert store.check_label(label(t)) == "match"


def test_a_label_of_a_transaction_its_card_let_go_is_checked_on_its_terminal() -> None:
    store = InMemoryStore(spec=SMALL)  # a card keeps 3, a terminal 4
    first = tx(0)
    for i in range(4):
        store.exchange(tx(i))
    assert store.cards["c"].get("tx-0") is None and store.terminals["t"].get("tx-0")
    assert store.check_label(label(first)) == "match"
    later = first.timestamp + timedelta(seconds=1)
    assert store.check_label(label(first, timestamp=later)) == "mismatch"
    assert store.check_label(label(first, terminal_id="t2")) == "unknown"
