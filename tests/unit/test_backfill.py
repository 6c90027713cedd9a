"""fraud-backfill's pure parts: arguments, replay order, batches that keep the order's
result, records the worker would refuse, counting what the store answers; and the writing
loop on the in-memory reference store (its outage flag for Redis away)."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pytest

from fraudcore import LabelEvent, Transaction
from fraudtools.backfill import Counts, backfill, parser, progress_line, summary, tally
from fraudtools.history import (
    FUTURE,
    MISKEYED,
    Batcher,
    Event,
    file_events,
    merge_in_order,
    order_key,
    validate,
)
from service.memory import MemoryStore
from training.dataset import normalise

T0 = datetime(2018, 4, 1, tzinfo=UTC)


def tx(i: int, *, card: str = "c1", terminal: str = "t1", hours: float = 0.0) -> Transaction:
    return Transaction(f"tx-{i}", card, terminal, 10.0 + i, T0 + timedelta(hours=hours))


def label(t: Transaction, *, days: float = 7.0) -> LabelEvent:
    return LabelEvent(t.transaction_id, t.card_id, t.terminal_id, t.amount, t.timestamp,
                      t.timestamp + timedelta(days=days))


# -- arguments -----------------------------------------------------------------------------


def test_one_source_is_required_and_columns_map_as_training_maps_them() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args([])
    with pytest.raises(SystemExit):
        parser().parse_args(["--data", "x.csv", "--topic"])
    args = parser().parse_args(
        ["--data", "h.csv", "--columns", "TX_AMOUNT=amount,TX_DATETIME=ts", "--json", "r.json"]
    )
    assert args.columns == {"TX_AMOUNT": "amount", "TX_DATETIME": "ts"}
    assert (str(args.data), str(args.json), args.batch_size) == ("h.csv", "r.json", 500)
    assert parser().parse_args(["--topic"]).topic is True
    with pytest.raises(SystemExit):
        parser().parse_args(["--data", "h.csv", "--columns", "NOT_A_COLUMN=x"])


def test_columns_go_with_a_file_only(capsys: pytest.CaptureFixture[str]) -> None:
    from fraudtools.backfill import main

    with pytest.raises(SystemExit):
        main(["--topic", "--columns", "TX_AMOUNT=amount"])
    assert "--columns and --timezone go with --data" in capsys.readouterr().err


# -- order ---------------------------------------------------------------------------------


def test_file_events_merge_labels_at_their_known_time_after_a_transaction_on_a_tie() -> None:
    frame = normalise(pd.DataFrame({
        "TRANSACTION_ID": ["a", "b", "c"],
        "TX_DATETIME": ["2018-04-01T00:00:00Z", "2018-04-08T00:00:00Z", "2018-04-09T00:00:00Z"],
        "CUSTOMER_ID": ["c1", "c1", "c2"],
        "TERMINAL_ID": ["t1", "t2", "t1"],
        "TX_AMOUNT": ["1", "2", "3"],
        "TX_FRAUD": ["1", "0", "1"],
    }))
    total, events = file_events(frame)
    order = [(type(e).__name__, e.transaction_id) for e in events]
    # a's label is known 7 days later, the instant b is made: b first; c's label is known
    # after the last transaction and is kept.
    assert order == [("Transaction", "a"), ("Transaction", "b"), ("LabelEvent", "a"),
                     ("Transaction", "c"), ("LabelEvent", "c")]
    assert total == 5


def test_sources_merge_by_event_time_and_each_is_read_in_its_own_order() -> None:
    async def source(events: Iterable[Event]) -> AsyncIterator[Event]:
        for e in events:
            yield e

    a = [tx(1, hours=1), tx(2, hours=5), tx(3, hours=2)]  # out of time order: kept so
    b = [label(tx(9, hours=-7 * 24 + 1)), tx(4, hours=3)]  # its label known at hour 1

    async def merged() -> list[str]:
        return [e.transaction_id async for e in merge_in_order([source(b), source(a)])]

    assert asyncio.run(merged()) == ["tx-1", "tx-9", "tx-4", "tx-2", "tx-3"]
    assert order_key(tx(2, hours=7 * 24)) < order_key(label(tx(1)))  # a transaction first


# -- batches -------------------------------------------------------------------------------


def _batches(events: list[Event], size: int) -> list[tuple[list[str], list[str]]]:
    batcher = Batcher(size)
    out = [b for b in map(batcher.add, events) if b is not None]
    last = batcher.flush()
    out += [last] if last is not None else []
    return [([x.transaction_id for x in b.labels], [x.transaction_id for x in b.transactions])
            for b in out]


def test_a_label_joins_the_batch_unless_its_terminal_or_card_has_a_transaction_in_it() -> None:
    old_a, old_b = tx(1, card="c1", terminal="t1"), tx(2, card="c2", terminal="t2")
    events: list[Event] = [tx(3, card="c3", terminal="t3"), label(old_a)]
    assert _batches(events, 10) == [(["tx-1"], ["tx-3"])]  # moved ahead: nothing shared
    events = [tx(3, card="c3", terminal="t1"), label(old_a), tx(4, card="c4", terminal="t4")]
    assert _batches(events, 10) == [([], ["tx-3"]), (["tx-1"], ["tx-4"])]  # same terminal
    events = [tx(3, card="c2", terminal="t9"), label(old_b)]
    assert _batches(events, 10) == [([], ["tx-3"]), (["tx-2"], [])]  # same card
    assert _batches([tx(i, card=f"c{i}") for i in range(5)], 2) == [
        ([], ["tx-0", "tx-1"]), ([], ["tx-2", "tx-3"]), ([], ["tx-4"])
    ]


def _random_history(seed: int) -> list[Event]:
    rng = random.Random(seed)
    txs = [tx(i, card=f"c{rng.randrange(6)}", terminal=f"t{rng.randrange(4)}",
              hours=rng.uniform(0, 24 * 60)) for i in range(400)]
    txs.append(txs[10])  # delivered twice
    txs.append(Transaction(txs[20].transaction_id, txs[20].card_id, txs[20].terminal_id,
                           999.0, txs[20].timestamp))  # same id, other content
    labels = [label(t, days=rng.choice([0.0, 2.0, 7.0])) for t in txs[:400:9]]
    return sorted([*txs, *labels], key=order_key)


def _state(store: MemoryStore) -> object:
    s = store.state

    def entries(timelines: dict[str, object]) -> dict[str, object]:
        return {k: t.since(float("-inf"), excluding="") for k, t in timelines.items()}  # type: ignore[attr-defined]

    return (entries(s.cards), entries(s.terminals), entries(s.labels),  # type: ignore[arg-type]
            sorted(store.first_card.items()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_leave_the_state_that_one_event_at_a_time_leaves(seed: int) -> None:
    events = _random_history(seed)

    verdicts: Counter[str] = Counter()

    async def one_by_one() -> MemoryStore:
        store = MemoryStore(clock=lambda: T0.timestamp())
        for e in events:
            if isinstance(e, LabelEvent):
                verdicts.update(tally(await store.add_labels([e])))
            else:
                await store.exchange([e])
        return store

    async def batched(size: int) -> tuple[MemoryStore, Counts]:
        store = MemoryStore(clock=lambda: T0.timestamp())
        counts = await backfill(store, _aiter(events), Counts("test"), batch_size=size,
                                out=io.StringIO())
        return store, counts

    reference = _state(asyncio.run(one_by_one()))
    n_labels = sum(isinstance(e, LabelEvent) for e in events)
    for size in (1, 7, 500):
        store, counts = asyncio.run(batched(size))
        assert _state(store) == reference
        assert (counts.transactions, counts.duplicates, counts.conflicts, counts.labels) == (
            400, 1, 1, n_labels)
        assert counts.label_verdicts == verdicts
    # a label known the instant of its own transaction comes after it: none is refused
    # (when the store says: add_labels answers checks, or None)
    assert set(verdicts) <= {"checks=match"}


async def _aiter(events: Iterable[Event]) -> AsyncIterator[Event]:
    for e in events:
        yield e


# -- what the worker refuses ---------------------------------------------------------------


def test_records_the_worker_would_dead_letter_are_reasons() -> None:
    good = {"transaction_id": "x", "card_id": "4242", "terminal_id": "T", "amount": 5.0,
            "timestamp": "2018-04-01T00:00:00+00:00"}
    horizon = datetime(2030, 1, 1, tzinfo=UTC).timestamp()

    def check(kind: str, key: bytes | None, value: bytes | None, **kw: bool) -> object:
        return validate(kind, key, value, horizon=horizon, accept_miskeyed=kw.get("accept", False))

    assert isinstance(check("transaction", b"4242", orjson.dumps(good)), Transaction)
    assert check("transaction", b"4242", b"{not json").startswith("not valid JSON")  # type: ignore[union-attr]
    assert check("transaction", b"4242", None).startswith("empty message")  # type: ignore[union-attr]
    assert check("transaction", b"4242", orjson.dumps({**good, "amount": -1})) == (
        "amount: must not be negative")
    assert check("transaction", b"other", orjson.dumps(good)) == MISKEYED
    assert isinstance(check("transaction", b"other", orjson.dumps(good), accept=True),
                      Transaction)
    future = {**good, "timestamp": "2031-01-01T00:00:00+00:00"}
    assert check("transaction", b"4242", orjson.dumps(future)) == FUTURE
    known = {**good, "known_at": "2018-04-08T00:00:00+00:00"}
    assert isinstance(check("label", b"4242", orjson.dumps(known)), LabelEvent)
    assert check("label", b"4242", orjson.dumps(good)) == "known_at: missing required field"


# -- counting ------------------------------------------------------------------------------


@dataclass
class _Answer:
    checks: list[str]
    capped: int = 0


def test_whatever_add_labels_returns_is_counted() -> None:
    assert tally(None) == Counter()
    assert tally(_Answer(["match", "match", "unknown"], 2)) == Counter(
        {"checks=match": 2, "checks=unknown": 1, "capped": 2})
    assert tally(_Answer([])) == Counter()
    assert tally(["ok", "ok", True]) == Counter({"ok": 2, "true": 1})
    assert tally(3) == Counter({"": 3})
    assert tally(object()) == Counter({"object": 1})


def test_progress_and_summary_say_what_was_done() -> None:
    c = Counts("h.parquet", total=1000, transactions=400, duplicates=50, conflicts=1, labels=49,
               write_seconds=10.0, elapsed_seconds=12.0, read_seconds=2.0)
    c.invalid["t: amount: must not be negative"] = 3
    line = progress_line(c, now=0.0)
    assert "503/1,000 events (50.3%), 50/s, ETA 0:00:10" in line
    assert "400 recorded, 50 duplicates, 1 conflicts, 49 labels, 3 invalid" in line
    c.waiting, c.waiting_since, c.attempts = "Redis: ConnectionError", -7.0, 3
    assert "Redis unavailable for 7 s (attempt 3), retrying" in progress_line(c, now=0.0)
    text = summary(c)
    assert "400 transactions recorded, 50 duplicates (already there), 1 conflicts" in text
    assert "500 events in 12.0 s (42 events/s; reading the file 2.0 s" in text
    assert "invalid 3: t: amount: must not be negative" in text
    assert c.as_dict()["invalid"] == 3 and c.as_dict()["events_per_second"] == 41.7


def test_a_store_away_is_waited_for_and_no_batch_is_skipped() -> None:
    events = [tx(i, card=f"c{i % 5}", hours=i) for i in range(50)]
    out = io.StringIO()

    async def scenario() -> tuple[MemoryStore, Counts]:
        store = MemoryStore()
        store.down = True

        async def come_back() -> None:
            await asyncio.sleep(0.5)
            store.down = False

        back = asyncio.create_task(come_back())
        counts = await backfill(store, _aiter(events), Counts("test"), batch_size=20,
                                max_delay=0.2, out=out)
        await back
        return store, counts

    store, counts = asyncio.run(scenario())
    assert (counts.transactions, counts.duplicates, counts.redis_outages) == (50, 0, 1)
    assert counts.batches == 3 and counts.batches_retried == 1
    assert sum(len(t) for t in store.state.cards.values()) == 50
    text = out.getvalue()
    assert "Redis unavailable (the in-memory store is marked down); holding" in text
    assert "Redis answers again after" in text


def test_a_backfill_that_covers_the_retention_up_to_the_loss_marks_the_state_complete() -> None:
    from fraudtools.backfill_report import mark_state
    from service.lineage import Lineage
    from service.memory import MemoryStore

    day = 86_400.0
    now = 1_800_000_000.0
    lost_at = now - 2 * day  # the workers recorded everything since
    store = MemoryStore(clock=lambda: now)
    store.marker = Lineage("g1", lost_at, complete=False)

    short = Counts("file", first_event=now - 20 * day, last_event=lost_at)
    assert asyncio.run(mark_state(store, short, now=now)) is False
    assert "left partial" in short.state and not store.marker.complete

    stale = Counts("file", first_event=now - 60 * day, last_event=now - 10 * day)
    assert asyncio.run(mark_state(store, stale, now=now)) is False  # a gap before the loss

    whole = Counts("file", first_event=now - 45 * day, last_event=lost_at + 5.0)
    assert asyncio.run(mark_state(store, whole, now=now)) is True
    assert store.marker.complete and store.marker.generation == "g1"
    assert whole.state.startswith("marked complete")


def test_mark_complete_forces_it() -> None:
    from fraudtools.backfill_report import mark_state
    from service.memory import MemoryStore

    store = MemoryStore(clock=lambda: 1_800_000_000.0)
    counts = Counts("topics", first_event=None, last_event=None)
    assert asyncio.run(mark_state(store, counts, now=1_800_000_000.0, force=True)) is True
    assert store.marker is not None and store.marker.complete
    assert "--mark-complete" in counts.state
