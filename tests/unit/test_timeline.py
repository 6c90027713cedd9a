"""fraudcore.state.Timeline by its docstrings, and the in-memory store's edges that the
property test (test_store_property.py) reaches only by chance: the grace of check_label at
the second, the labels a terminal hands back whatever their ids, the conflict's advice.

Expected values come from the docstrings of fraudcore/state.py and fraudcore/features.py,
never from the code's own output (tests/mutation-survivors.md says which mutant each
test was written for).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fraudcore import SPEC, DuplicateConflict, InMemoryStore, LabelEvent, Transaction
from fraudcore.state import Timeline

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=SPEC.grace_days)


# --- Timeline ------------------------------------------------------------------------------


def test_add_says_whether_the_entry_was_recorded() -> None:
    line = Timeline()
    assert line.add(10.0, "a", 1.5, tag="t1") is True
    # the id again, even with other content: False, and nothing changes
    assert line.add(20.0, "a", 9.0, tag="t2") is False
    assert line.get("a") == (10.0, 1.5, "t1")
    assert len(line) == 1
    assert line.newest() == 10.0


def test_an_entry_added_without_a_tag_has_the_empty_tag() -> None:
    line = Timeline()
    line.add(10.0, "a", 1.5)
    assert line.get("a") == (10.0, 1.5, "")


def test_discard_says_whether_the_entry_was_there() -> None:
    line = Timeline()
    line.add(10.0, "a", 1.0)
    line.add(20.0, "b", 2.0)
    assert line.discard("missing") is False
    assert len(line) == 2
    assert line.discard("a") is True
    assert line.get("a") is None
    assert line.since(0.0, excluding="") == [(20.0, "b", 2.0)]
    assert line.discard("a") is False


def test_since_leaves_out_the_entry_of_the_excluded_id_only() -> None:
    line = Timeline()
    for time, entry_id in [(10.0, "a"), (20.0, "b"), (30.0, "c")]:
        line.add(time, entry_id, time / 10)
    assert line.since(10.0, excluding="b") == [(30.0, "c", 3.0)]  # after low: 10 is out
    assert line.since(0.0, excluding="b") == [(10.0, "a", 1.0), (30.0, "c", 3.0)]
    assert line.since(0.0, excluding="zzz") == [
        (10.0, "a", 1.0), (20.0, "b", 2.0), (30.0, "c", 3.0),
    ]


def test_entries_stay_in_time_order_whatever_order_they_come_in() -> None:
    line = Timeline()
    for time, entry_id in [(30.0, "c"), (10.0, "a"), (20.0, "b"), (20.0, "a2")]:
        line.add(time, entry_id, 0.0)
    assert [e[0] for e in line.since(0.0, excluding="")] == [10.0, 20.0, 20.0, 30.0]
    assert line.newest() == 30.0
    assert line.count(10.0, 20.0) == 2  # (10, 20]


# --- the in-memory store ---------------------------------------------------------------------


def tx(tx_id: str, at: datetime, *, card: str = "c", terminal: str = "t") -> Transaction:
    return Transaction(tx_id, card, terminal, 10.0, at)


def label_of(t: Transaction, *, transaction_id: str | None = None) -> LabelEvent:
    return LabelEvent(
        transaction_id=t.transaction_id if transaction_id is None else transaction_id,
        card_id=t.card_id,
        terminal_id=t.terminal_id,
        amount=t.amount,
        timestamp=t.timestamp,
        known_at=t.timestamp + timedelta(days=1),
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (GRACE - timedelta(seconds=1), "unknown"),
        (GRACE, "unknown"),  # "more than the grace later": exactly the grace is not more
        (GRACE + timedelta(seconds=1), "absent"),
    ],
)
def test_a_label_is_absent_only_when_its_card_ran_more_than_the_grace_past_it(
    after: timedelta, expected: str
) -> None:
    store = InMemoryStore()
    first = tx("tx-1", T0)
    store.exchange(first)
    store.exchange(tx("tx-2", T0 + after))
    # a transaction the card never recorded, dated at the first one's time
    assert store.check_label(label_of(first, transaction_id="tx-never")) == expected


@pytest.mark.parametrize("label_id", ["tx-9", "XXXX", "0", "é"])
def test_a_terminal_hands_back_its_labels_whatever_their_ids(label_id: str) -> None:
    # The history of a transaction holds every fraud label of its terminal within the
    # retention: the label of transaction `label_id` is one of them, whatever that id is.
    store = InMemoryStore()
    fraud = tx(label_id, T0, card="c-fraud")
    store.exchange(fraud)
    store.add_label(label_of(fraud))
    _, history = store.exchange(tx("tx-later", T0 + timedelta(days=2), card="c-other"))
    assert list(history.fraud_timestamps) == [fraud.epoch]
    assert list(history.fraud_known_at) == [(fraud.timestamp + timedelta(days=1)).timestamp()]


def test_a_conflicting_duplicate_is_refused_with_the_advice_to_use_a_new_id() -> None:
    store = InMemoryStore()
    store.exchange(tx("tx-1", T0))
    with pytest.raises(DuplicateConflict) as info:
        store.exchange(tx("tx-1", T0 + timedelta(seconds=1)))
    message = str(info.value)
    assert "'tx-1'" in message
    assert "the first one stands" in message
    assert "Give a corrected transaction a new id." in message
