"""One port, one semantics: the Redis store on a real Redis answers every batch exactly as
the in-memory reference store does — histories, duplicates, refused ids, labels, outages."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis, RedisCluster

from fraudcore import SPEC, FeatureSpec, LabelEvent, Transaction
from fraudcore.errors import DuplicateConflict, StateUnavailable
from service.cluster import ClusterStore
from service.memory import MemoryStore
from service.ports import Answer, StateStore
from service.state import RedisStore

from .conftest import open_store

# Recent: the id index remembers an id until its transaction is older than a card's
# history keeps, by the wall clock (as Redis expires the id key).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=12)


def _batches(seed: int, start: datetime = T0) -> list[list[Transaction]]:
    """Traffic with what the port must agree on: repeats, a reused id with other content,
    the same id on another card, several transactions of a card in one batch."""
    rng = random.Random(seed)
    seen: list[Transaction] = []
    batches = []
    for b in range(12):
        batch = []
        for i in range(40):
            roll = rng.random()
            if seen and roll < 0.1:
                batch.append(rng.choice(seen))  # the same transaction again
            elif seen and roll < 0.15:
                old = rng.choice(seen)  # same id, other amount
                batch.append(Transaction(old.transaction_id, old.card_id, old.terminal_id,
                                         old.amount + 1.0, old.timestamp))
            elif seen and roll < 0.2:
                old = rng.choice(seen)  # same id, another card
                batch.append(Transaction(old.transaction_id, f"c{rng.randrange(50, 60)}",
                                         old.terminal_id, old.amount, old.timestamp))
            else:
                tx = Transaction(
                    f"tx-{b}-{i}", f"c{rng.randrange(8)}", f"t{rng.randrange(4)}",
                    round(rng.uniform(1, 300), 2),
                    start + timedelta(hours=b * 20 + rng.uniform(0, 30)),
                )
                seen.append(tx)
                batch.append(tx)
        batches.append(batch)
    return batches


def _labels(batch: list[Transaction]) -> list[LabelEvent]:
    """Labels of some of the batch (a conflicting copy's label names other content), and
    two that name no recorded transaction: an id never sent, another terminal."""
    labels = [
        LabelEvent(tx.transaction_id, tx.card_id, tx.terminal_id, tx.amount, tx.timestamp,
                   tx.timestamp + timedelta(days=2))
        for tx in batch[::7]
    ]
    first = batch[0]
    return [
        *labels,
        LabelEvent(f"never-{first.transaction_id}", first.card_id, first.terminal_id,
                   first.amount, first.timestamp, first.timestamp + timedelta(days=1)),
        LabelEvent(first.transaction_id, first.card_id, "t-elsewhere", first.amount,
                   first.timestamp, first.timestamp + timedelta(days=1)),
    ]


def _comparable(answer: Answer) -> object:
    if isinstance(answer, DuplicateConflict):
        return ("conflict", "another card" in str(answer))
    return (answer.card, answer.terminal, answer.duplicate, answer.card_capped,
            answer.terminal_capped)


async def _run(store: StateStore, batches: list[list[Transaction]]) -> list[object]:
    out: list[object] = []
    for n, batch in enumerate(batches):
        parts: list[Answer] = []
        answers = await store.exchange(batch, on_part=parts.extend)
        assert parts == answers  # handed over in order, every one
        out += [_comparable(a) for a in answers]
        labelled = await store.add_labels(_labels(batch))
        out.append(("labels", labelled.checks, labelled.capped))
        if n % 3 == 1:  # some first recordings undone (no decision), as the pipeline does
            await store.forget([
                tx for tx, a in zip(batch, answers, strict=True)
                if not isinstance(a, DuplicateConflict) and not a.duplicate
            ][::5])
    return out


#: Bounds the traffic of _batches goes far beyond: ~60 transactions a card, ~120 a terminal.
BOUNDED = replace(SPEC, card_max_entries=4, terminal_max_entries=6, terminal_max_labels=3)


@pytest.mark.parametrize(
    ("days_ago", "spec"),
    [(12, SPEC), (400, SPEC), (12, BOUNDED)],
    ids=["recent", "older-than-retention", "beyond-the-size-bounds"],
)
@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("mode", ["single", "cluster", "sentinel"])
def test_redis_answers_every_batch_as_the_reference_does(
    mode: str, ids: bool, days_ago: int, spec: FeatureSpec
) -> None:
    batches = _batches(seed=11, start=T0 - timedelta(days=days_ago - 12))

    async def scenario() -> tuple[list[object], list[object]]:
        prefix = f"it-port-{uuid.uuid4().hex[:8]}"
        async with open_store(
            mode, prefix, card_key_secret=b"port", ids=ids, spec=spec
        ) as store:
            memory = MemoryStore(ids=ids, spec=spec)
            return await _run(store, batches), await _run(memory, batches)

    in_redis, in_memory = asyncio.run(scenario())
    assert len(in_redis) == sum(map(len, batches)) + len(batches)
    assert in_redis == in_memory
    kinds = {a[0] if a[0] in ("conflict", "labels") else "exchange" for a in in_redis}  # type: ignore[index]
    assert kinds == {"conflict", "exchange", "labels"}
    checks = {c for a in in_redis if a[0] == "labels" for c in a[1]}  # type: ignore[index]
    assert {"match", "unknown", "mismatch"} <= checks <= {"match", "unknown", "mismatch", "absent"}
    capped = [a for a in in_redis if isinstance(a, tuple) and len(a) == 5 and (a[3] or a[4])]
    label_caps = sum(a[2] for a in in_redis if a[0] == "labels")  # type: ignore[index, misc]
    assert bool(capped) == bool(label_caps) == (spec is BOUNDED)


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_an_unreachable_redis_is_state_unavailable_and_ping_says_so(mode: str) -> None:
    async def scenario() -> bool:
        # Nothing listens on port 1: the connection is refused.
        store: RedisStore
        if mode == "cluster":  # redis-py raises RedisClusterException, not a RedisError
            store = ClusterStore(RedisCluster(host="127.0.0.1", port=1, socket_timeout=1.0),
                                 card_key_secret=b"port", prefix="it-port-down")
        else:
            redis = Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=1.0)
            store = RedisStore(redis, card_key_secret=b"port", prefix="it-port-down")
        tx = Transaction("tx-1", "c1", "t1", 10.0, T0)
        with pytest.raises(StateUnavailable):
            await store.exchange([tx])
        with pytest.raises(StateUnavailable):
            await store.add_labels(_labels([tx]))
        with pytest.raises(StateUnavailable):
            await store.lineage()
        up = await store.ping()
        await store.aclose()
        return up

    assert asyncio.run(scenario()) is False
