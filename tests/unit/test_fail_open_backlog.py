"""Fail-open's backlog (service/backlog.py, README "fraud_recorded_late_total,
fraud_unrecorded_dropped_total"): transactions decided on empty history while the store is
away are recorded once it is back, oldest first and before anything newer; beyond the cap
the oldest are dropped, logged and counted. Each counter is read as a difference, so the
process-wide registry's earlier counts do not matter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from fraudcore import Transaction
from fraudcore.errors import StateUnavailable
from service.backlog import Backlog
from service.memory import MemoryStore
from service.ports import Answer, OnPart

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
NOW = (T0 + timedelta(days=1)).timestamp()


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _txs(n: int, *, first: int = 0) -> list[Transaction]:
    return [
        Transaction(f"tx-{i}", f"card-{i % 3}", "T-1", 10.0 + i, T0 + timedelta(seconds=i))
        for i in range(first, first + n)
    ]


class RecordingStore(MemoryStore):
    """The reference store, noting every batch it is asked to record."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.calls: list[list[str]] = []

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        if not self.down:
            self.calls.append([tx.transaction_id for tx in transactions])
        return await super().exchange(transactions, on_part)


def test_beyond_the_cap_the_oldest_are_dropped_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backlog = Backlog(limit=5)
    dropped = _counter("fraud_unrecorded_dropped_total")
    backlog.keep(_txs(4))
    assert len(backlog) == 4 and _counter("fraud_unrecorded_dropped_total") == dropped
    with caplog.at_level(logging.ERROR, logger="service.backlog"):
        backlog.keep(_txs(3, first=4))  # 7 kept for a cap of 5: the two oldest go
    assert len(backlog) == 5
    assert _counter("fraud_unrecorded_dropped_total") - dropped == 2
    assert [r.getMessage() for r in caplog.records] == [
        "fail-open backlog full: 2 degraded transactions will never be recorded"
    ]
    store = RecordingStore()
    recorded = _counter("fraud_recorded_late_total")
    asyncio.run(backlog.record(store))
    assert store.calls == [["tx-2", "tx-3", "tx-4", "tx-5", "tx-6"]]  # the newest five, in order
    assert _counter("fraud_recorded_late_total") - recorded == 5
    assert _counter("fraud_unrecorded_dropped_total") - dropped == 2  # unchanged by recording
    assert len(backlog) == 0


def test_exactly_at_the_cap_nothing_is_dropped() -> None:
    backlog = Backlog(limit=3)
    dropped = _counter("fraud_unrecorded_dropped_total")
    backlog.keep(_txs(3))
    assert len(backlog) == 3
    assert _counter("fraud_unrecorded_dropped_total") == dropped


def test_the_backlog_is_recorded_in_order_in_chunks_and_counted_as_it_goes() -> None:
    backlog = Backlog(limit=10_000)
    backlog.keep(_txs(1_234))
    store = RecordingStore()
    recorded = _counter("fraud_recorded_late_total")
    asyncio.run(backlog.record(store))
    assert [len(c) for c in store.calls] == [500, 500, 234]
    assert [i for c in store.calls for i in c] == [f"tx-{i}" for i in range(1_234)]
    assert _counter("fraud_recorded_late_total") - recorded == 1_234


def test_what_an_outage_keeps_from_being_recorded_waits_and_is_not_counted() -> None:
    """The store goes away again half-way: what was recorded is counted, the rest stays,
    in order, for the next time."""
    backlog = Backlog(limit=10_000)
    backlog.keep(_txs(1_100))
    store = RecordingStore()

    async def fail_after_the_first_chunk(
        transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        if store.calls:
            raise StateUnavailable("Redis: gone again")
        return await RecordingStore.exchange(store, transactions, on_part)

    store.exchange = fail_after_the_first_chunk  # type: ignore[method-assign]
    recorded = _counter("fraud_recorded_late_total")
    with pytest.raises(StateUnavailable):
        asyncio.run(backlog.record(store))
    assert _counter("fraud_recorded_late_total") - recorded == 500
    assert len(backlog) == 600
    del store.exchange  # the store is back
    asyncio.run(backlog.record(store))
    assert [i for c in store.calls for i in c] == [f"tx-{i}" for i in range(1_100)]
    assert _counter("fraud_recorded_late_total") - recorded == 1_100


class YieldingStore(RecordingStore):
    """Lets other tasks run inside every exchange, as a real store's round trip does."""

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        answers = await super().exchange(transactions, on_part)
        await asyncio.sleep(0)
        return answers


def test_batches_recording_the_backlog_at_once_record_each_transaction_once() -> None:
    # Batches of other cards exchange state at once (service.turns), and each records the
    # backlog first.
    backlog = Backlog()
    backlog.keep(_txs(3))
    store = YieldingStore()
    recorded = _counter("fraud_recorded_late_total")

    async def three_batches() -> None:
        await asyncio.gather(*(backlog.record(store) for _ in range(3)))

    asyncio.run(three_batches())
    assert store.calls == [["tx-0", "tx-1", "tx-2"]]
    assert _counter("fraud_recorded_late_total") - recorded == 3
    assert len(backlog) == 0
