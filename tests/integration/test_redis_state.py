"""The Redis store against the in-memory reference, on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import numpy as np
import pytest
from redis.asyncio import Redis

from fraudcore import FEATURE_NAMES, InMemoryStore, LabelEvent, Transaction, compute
from fraudcore.errors import DuplicateConflict
from service.keys import KeyLayout
from service.state import RedisStore
from training import generator
from training.dataset import label_events, normalise
from training.replay import replay

from .conftest import REDIS_URL


@pytest.fixture(scope="module")
def frame():
    config = generator.GeneratorConfig(
        customers=150, terminals=300, days=50, start=date(2018, 4, 1), seed=7
    )
    return normalise(generator.generate(config), source="test")


def _events(frame):
    labels = label_events(frame, delay_days=7)
    txs = [
        Transaction(
            r.TRANSACTION_ID,
            r.CUSTOMER_ID,
            r.TERMINAL_ID,
            r.TX_AMOUNT,
            r.TX_DATETIME.to_pydatetime(),
        )
        for r in frame.itertuples()
    ]
    lbls = [
        LabelEvent(
            r.TRANSACTION_ID,
            r.CUSTOMER_ID,
            r.TERMINAL_ID,
            r.TX_AMOUNT,
            r.TX_DATETIME.to_pydatetime(),
            r.KNOWN_AT.to_pydatetime(),
        )
        for r in labels.itertuples()
    ]
    return txs, lbls


async def _redis_features(frame, *, batch: int, prefix: str) -> np.ndarray:
    redis = Redis.from_url(REDIS_URL)
    store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
    txs, labels = _events(frame)
    # Each label once its transaction is recorded, before any transaction that may count
    # it (a label counts once known: known_at <= t), as the replay merges them.
    labels.sort(key=lambda label: label.known_at)
    applied = 0
    rows = []
    try:
        for i in range(0, len(txs), batch):
            chunk = txs[i : i + batch]
            due = applied
            while due < len(labels) and labels[due].known_at <= chunk[-1].timestamp:
                due += 1
            answer = await store.add_labels(labels[applied:due])
            assert set(answer.checks) <= {"match"}, "every label names a recorded transaction"
            applied = due
            for tx, ex in zip(chunk, await store.exchange(chunk), strict=True):
                assert not isinstance(ex, DuplicateConflict)
                rows.append(compute(tx, ex.card, ex.terminal))
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    return np.asarray(rows, dtype=np.float32)


def test_redis_features_equal_the_offline_replay(frame):
    offline, _ = replay(frame)
    expected = offline[list(FEATURE_NAMES)].to_numpy()
    online = asyncio.run(_redis_features(frame, batch=200, prefix=f"it-{uuid.uuid4().hex[:8]}"))
    assert online.shape == expected.shape
    mismatched = np.argwhere(online != expected)
    assert len(mismatched) == 0, (
        f"{len(mismatched)} feature values differ, first at row {mismatched[0][0]} "
        f"({FEATURE_NAMES[mismatched[0][1]]})"
    )


def test_redelivery_and_conflicts_on_redis():
    async def scenario():
        redis = Redis.from_url(REDIS_URL)
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
        from datetime import UTC, datetime, timedelta

        t0 = datetime(2018, 5, 1, 12, tzinfo=UTC)
        a = Transaction("a", "card", "term", 10.0, t0)
        b = Transaction("b", "card", "term", 20.0, t0 + timedelta(hours=1))
        first = await store.exchange([a, b])
        again = await store.exchange([b])
        conflict = await store.exchange([Transaction("b", "card", "other-term", 99.0, b.timestamp)])
        keys_of = KeyLayout(card_key_secret=b"test", prefix=prefix)
        card_keys = [k async for k in redis.scan_iter(match=keys_of.pattern("card") + ":tx")]
        sizes = [await redis.zcard(k) for k in card_keys]
        other = await redis.zcard(keys_of.terminal("other-term").tx)
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)
        await redis.aclose()
        return first, again, conflict, sizes, other, card_keys

    first, again, conflict, sizes, other, card_keys = asyncio.run(scenario())
    assert not first[1].duplicate and again[0].duplicate
    assert again[0].card == first[1].card  # same history, so the same features and score
    assert isinstance(conflict[0], DuplicateConflict)
    assert sizes == [2]  # the redelivery and the conflict changed nothing
    assert other == 0  # the conflicting copy was not counted at its terminal
    assert all(b"{card}" not in k for k in card_keys)  # card ids only as keyed hashes


def test_late_events_and_lost_scripts():
    """History comes back in time order after a late event; a SCRIPT FLUSH is survived."""

    async def scenario():
        redis = Redis.from_url(REDIS_URL)
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
        from datetime import UTC, datetime, timedelta

        t0 = datetime(2018, 5, 1, 12, tzinfo=UTC)
        late = Transaction("late", "card", "term", 5.0, t0)
        early = Transaction("early", "card", "term", 7.0, t0 - timedelta(hours=2))
        now = Transaction("now", "card", "term", 9.0, t0 + timedelta(hours=1))
        await store.exchange([late, early])  # the earlier one arrives second
        await redis.script_flush()  # as after a Redis restart without persistence
        (answer,) = await store.exchange([now])
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)
        await redis.aclose()
        return answer, early, late

    answer, early, late = asyncio.run(scenario())
    assert not isinstance(answer, DuplicateConflict) and not answer.duplicate
    assert list(answer.card.timestamps) == [early.epoch, late.epoch]
    assert list(answer.card.amounts) == [7.0, 5.0]


def test_an_id_reused_by_another_card_is_refused_and_undone():
    async def scenario():
        redis = Redis.from_url(REDIS_URL)
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        first = Transaction("same-id", "card-a", "term-a", 10.0, now - timedelta(minutes=2))
        reuse = Transaction("same-id", "card-b", "term-b", 10.0, now - timedelta(minutes=2))
        next_b = Transaction("next-b", "card-b", "term-b", 5.0, now - timedelta(minutes=1))
        answers = [await store.exchange([tx]) for tx in (first, reuse, first, next_b)]
        twice = await store.exchange([reuse, reuse])  # a producer's retry in one batch
        keys_of = KeyLayout(card_key_secret=b"test", prefix=prefix)
        b_keys = [k async for k in redis.scan_iter(match=keys_of.pattern("card") + ":tx")]
        sizes = sorted([await redis.zcard(k) for k in b_keys])
        term_b = await redis.zcard(keys_of.terminal("term-b").tx)
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)
        await redis.aclose()
        return answers, sizes, term_b, twice

    answers, sizes, term_b, twice = asyncio.run(scenario())
    assert all(isinstance(t, DuplicateConflict) for t in twice)
    (a,), (reuse,), (again,), (next_b,) = answers
    assert not isinstance(a, DuplicateConflict) and not a.duplicate
    assert isinstance(reuse, DuplicateConflict) and "another card" in str(reuse)
    assert not isinstance(again, DuplicateConflict) and again.duplicate  # a redelivery
    assert not isinstance(next_b, DuplicateConflict) and list(next_b.card.timestamps) == []
    assert sizes == [1, 1]  # card a: same-id once; card b: next-b only
    assert term_b == 1  # next-b only: the refused one was taken back


def test_trims_and_windows_agree_with_the_reference_to_the_microsecond():
    """Transactions and labels exactly on every trim and window bound and a microsecond
    either side: the bounds travel to Redis as text and must act on the same doubles as
    fraudcore's (a microsecond at these epochs needs 16 significant digits; text that keeps
    fewer, like Lua's own number-to-text with 14, miscounts here)."""
    from datetime import UTC, datetime, timedelta

    end = datetime(2018, 6, 15, 12, 0, 0, 123457, tzinfo=UTC)
    day, tick = timedelta(days=1), timedelta(microseconds=1)
    edges = [end - d * day for d in (40, 37, 33, 14, 8, 7)]  # trims and terminal windows
    times = sorted({e + k * tick for e in edges for k in (-1, 0, 1)})
    txs = [Transaction(f"e{i}", "card", "term", 10.0 + i, at) for i, at in enumerate(times)]
    txs.append(Transaction("last", "card", "term", 99.0, end))
    labels = {
        tx.transaction_id: [
            LabelEvent(tx.transaction_id, "card", "term", tx.amount, tx.timestamp, tx.timestamp)
        ]
        for tx in txs[:-1:2]
    }

    async def on_redis():
        redis = Redis.from_url(REDIS_URL)
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
        answers = []
        try:
            for tx in txs:  # each label right after its transaction, known at once
                answers += await store.exchange([tx])
                labelled = await store.add_labels(labels.get(tx.transaction_id, []))
                assert set(labelled.checks) <= {"match"}
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
        return answers

    reference = InMemoryStore()
    for tx, answer in zip(txs, asyncio.run(on_redis()), strict=True):
        card, terminal = reference.exchange(tx)
        for label in labels.get(tx.transaction_id, []):
            reference.add_label(label)
        assert not isinstance(answer, DuplicateConflict)
        assert list(answer.card.timestamps) == list(card.timestamps), tx.transaction_id
        assert list(answer.terminal.counts) == list(terminal.counts), tx.transaction_id
        assert sorted(answer.terminal.fraud_timestamps) == sorted(terminal.fraud_timestamps)
        assert compute(tx, answer.card, answer.terminal) == compute(tx, card, terminal)


class _Parts(list[int]):
    def append_len(self, part: object) -> None:
        self.append(len(part))  # type: ignore[arg-type]


def test_the_marker_is_read_in_the_batch_round_trip():
    """``exchange_checked``: the state's marker comes with the batch's answers, from the
    ``GET`` written after its commands; an error on the marker's key alone is its reply,
    and the batch is still answered (part boundaries and lost scripts included)."""
    from datetime import UTC, datetime, timedelta

    from fraudcore.errors import StateUnavailable
    from service.lineage import Lineage

    t0 = datetime(2018, 5, 1, 12, tzinfo=UTC)
    # 100 transactions: 300 calls, a part exactly, so the GET's reply comes alone.
    batch = [Transaction(f"m{i}", f"card-{i % 7}", "term", 1.0 + i, t0 + timedelta(minutes=i))
             for i in range(100)]

    async def scenario():
        redis = Redis.from_url(REDIS_URL)
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis, card_key_secret=b"test", prefix=prefix)
        seen = []
        try:
            parts = _Parts()
            answers, none = await store.exchange_checked(batch[:50], parts.append_len)
            seen.append((len(answers), list(parts), none))
            marker = await store.start_lineage(Lineage.new(now=1.0, complete=True))
            await redis.script_flush()  # the scripts lost: sent again, the marker still read
            answers, found = await store.exchange_checked(batch[50:])
            seen.append((len(answers), sum(a.duplicate for a in answers), found == marker))
            await redis.delete(store.keys.lineage)
            await redis.rpush(store.keys.lineage, b"not a marker")
            parts.clear()
            answers, broken = await store.exchange_checked(batch, parts.append_len)
            seen.append((len(answers), sum(a.duplicate for a in answers), broken, parts))
            await redis.delete(store.keys.lineage)
            await redis.set(store.keys.lineage, b"garbage")
            answers, garbage = await store.exchange_checked(batch[:1])
            seen.append((len(answers), garbage))
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
            await redis.delete(*keys)
            await redis.aclose()
        return seen

    (n1, parts1, none), (n2, dup2, same), (n3, dup3, broken, parts3), (n4, garbage) = (
        asyncio.run(scenario()))
    assert (n1, parts1, none) == (50, [50], None)
    assert (n2, dup2, same) == (50, 0, True)
    assert (n3, dup3, parts3) == (100, 100, [100])  # all seen before: all answered, one part
    assert isinstance(broken, StateUnavailable) and "WRONGTYPE" in str(broken)
    assert n4 == 1 and isinstance(garbage, StateUnavailable) and "not one" in str(garbage)
