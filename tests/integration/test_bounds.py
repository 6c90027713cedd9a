"""Bounded work per key, on a real Redis and the real worker: a bot's burst on one card and
a label flood on one terminal are decided like any traffic, their cost per transaction
capped by the spec's size bounds (``FeatureSpec.*_max_*``), and the capping counted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from redis.asyncio import Redis

from fraudcore import SPEC, LabelEvent, Transaction
from fraudcore.errors import DuplicateConflict
from fraudtools.feed import Record
from fraudtools.producer import TopicNames, send_records
from service.keys import KeyLayout
from service.state import RedisStore

from .conftest import BOOTSTRAP, REDIS_URL, Run, Worker, consume, drain

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


async def _store(prefix: str) -> AsyncIterator[RedisStore]:
    redis = Redis.from_url(REDIS_URL)
    try:
        yield RedisStore(redis, card_key_secret=b"bounds", prefix=prefix)
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def test_ten_thousand_transactions_on_one_card_each_read_at_most_the_bound() -> None:
    bound = SPEC.card_max_entries
    burst = [Transaction(f"bot-{i}", "c-bot", f"T-{i % 50}", 1.0 + i % 7,
                         T0 + timedelta(milliseconds=100 * i)) for i in range(10_000)]

    async def scenario() -> tuple[list[int], int, tuple[int, int]]:
        prefix = f"it-bound-{uuid.uuid4().hex[:8]}"
        async for store in _store(prefix):
            lengths, capped = [], 0
            for i in range(0, len(burst), 500):
                for answer in await store.exchange(burst[i : i + 500]):
                    assert not isinstance(answer, DuplicateConflict)
                    lengths.append(len(answer.card.timestamps))
                    capped += answer.card_capped
            keys = KeyLayout(card_key_secret=b"bounds", prefix=prefix).card("c-bot")
            size = (await store.redis.zcard(keys.tx), await store.redis.hlen(keys.val))
            return lengths, capped, size
        raise AssertionError("unreachable")

    lengths, capped, size = asyncio.run(scenario())
    assert lengths[:bound] == list(range(bound))  # the history grows to the bound ...
    assert set(lengths[bound:]) == {bound - 1}  # ... and no further
    assert capped == len(burst) - bound
    assert size == (bound, bound)  # the sorted set and the hash trimmed together


def test_ten_thousand_labels_on_one_terminal_each_read_at_most_the_bound() -> None:
    bound = SPEC.terminal_max_labels
    txs = [Transaction(f"f-{i}", f"c-{i % 100}", "T-busy", 10.0, T0 + timedelta(seconds=i))
           for i in range(10_000)]
    labels = [LabelEvent(t.transaction_id, t.card_id, t.terminal_id, t.amount, t.timestamp,
                         t.timestamp + timedelta(hours=1)) for t in txs]
    after = Transaction("after", "c-x", "T-busy", 20.0, T0 + timedelta(days=2))

    async def scenario() -> tuple[set[str], int, int]:
        async for store in _store(f"it-bound-{uuid.uuid4().hex[:8]}"):
            checks: set[str] = set()
            capped = 0
            for i in range(0, len(txs), 1000):
                await store.exchange(txs[i : i + 1000])
                answer = await store.add_labels(labels[i : i + 1000])
                checks |= set(answer.checks)
                capped += answer.capped
            [scored] = await store.exchange([after])
            assert not isinstance(scored, DuplicateConflict)
            return checks, capped, len(scored.terminal.fraud_timestamps)
        raise AssertionError("unreachable")

    checks, capped, read = asyncio.run(scenario())
    assert checks == {"match"}
    assert capped == len(labels) - bound
    assert read == bound


def test_a_burst_on_one_card_through_the_worker_is_all_decided_and_counted(
    run: Run, tmp_path: Path
) -> None:
    """3,000 transactions of one card in a second and a label for every tenth: all
    decided, none dead-lettered, what the bound dropped counted in fraud_capped_total."""
    n = 3_000
    records = []
    for i in range(n):
        tx = {"transaction_id": f"bot-{i}", "card_id": "c-bot", "terminal_id": f"T-{i % 20}",
              "amount": 5.0 + i % 11,
              "timestamp": (T0 + timedelta(milliseconds=300 * i)).isoformat()}
        when = T0 + timedelta(milliseconds=300 * i)
        tx_id = str(tx["transaction_id"])
        records.append(Record("transaction", b"c-bot", orjson.dumps(tx), when, tx_id, False))
        if i % 10 == 0:  # right behind its transaction, as a label must come
            label = {**tx, "known_at": (when + timedelta(hours=1)).isoformat()}
            records.append(Record("label", b"c-bot", orjson.dumps(label), when, tx_id, True))
    worker = Worker(run.env(), tmp_path / "w.log").start().wait_ready()
    try:
        topics = TopicNames(run.topic("transactions"), run.topic("labels"))
        asyncio.run(send_records(records, bootstrap=BOOTSTRAP, topics=topics))
        decisions = asyncio.run(consume(run.topic("decisions"), until=n, timeout=180))
        assert len({d["transaction_id"] for d in decisions}) == n, worker.tail(3000)
        assert asyncio.run(drain(run.topic("dlq"), quiet=2.0)) == []
        assert asyncio.run(_labels_recorded(worker, n // 10)), worker.tail(3000)
        assert worker.metric("fraud_capped_total") >= n - SPEC.card_max_entries
    finally:
        worker.stop()


async def _labels_recorded(worker: Worker, expected: int, timeout: float = 60.0) -> bool:
    for _ in range(int(timeout / 0.2)):
        if worker.metric("fraud_labels_total") >= expected:
            return True
        await asyncio.sleep(0.2)
    return False
