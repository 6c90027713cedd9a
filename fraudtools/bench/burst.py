"""The burst: one card's bot and one terminal's label flood, beside the normal traffic's
throughput — what the size bounds of the feature spec buy (``FeatureSpec.*_max_*``).

A backlog of 10,000 transactions of one card at one terminal, a few milliseconds apart
(a card-testing bot), each followed by its fraud label (a chargeback file for the same
terminal): without the bounds every transaction would read the card's whole history
and every later one the terminal's every label, so the cost grows with the square of the
burst. Reported: ``burst_eps`` (first to last decision), that every transaction was
decided and none dead-lettered, the labels recorded and what the bounds dropped.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaConsumer

from fraudtools.bench.data import Slice
from fraudtools.bench.kafka import preload, read_decisions
from fraudtools.bench.metrics import progress
from fraudtools.kafka_admin import create_topics

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench

__all__ = ["BURST", "burst_slice", "phase"]

BURST = 10_000  # transactions of the one card, each with its label


def burst_slice(n: int = BURST, *, start: datetime | None = None) -> Slice:
    """``n`` transactions of card ``bot`` at terminal ``T-bot``, 5 ms apart, each followed
    by its label (known an hour later)."""
    t0 = start or datetime.now(UTC) - timedelta(hours=2)
    is_tx, keys, values, ids = [], [], [], []
    for i in range(n):
        at = t0 + timedelta(milliseconds=5 * i)
        tx = {"transaction_id": f"bot-{i}", "card_id": "bot", "terminal_id": "T-bot",
              "amount": 1.0 + i % 5, "timestamp": at.isoformat()}
        label = {**tx, "known_at": (at + timedelta(hours=1)).isoformat()}
        for is_label, value in ((False, tx), (True, label)):
            is_tx.append(not is_label)
            keys.append(b"bot")
            values.append(orjson.dumps(value))
            ids.append(str(tx["transaction_id"]))
    return Slice(is_tx, keys, values, ids)


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        ends = await consumer.end_offsets(list(partitions)) if partitions else {}
        return sum(ends.values())
    finally:
        await consumer.stop()


async def phase(bench: Bench, n: int = BURST) -> None:
    """``burst_eps`` and ``phases.burst``."""
    where = bench.isolated("burst")
    await create_topics(bench.bootstrap, where.topics)
    backlog = burst_slice(n)
    await preload(bench.bootstrap, backlog, transactions=where.names.transactions,
                  labels=where.names.labels)
    progress(f"burst: {n:,} transactions of one card and their {n:,} labels pre-loaded ...")
    w = bench.worker("worker-burst", where).start()
    watched = await bench.watch(where.names.decisions, n, bench.cpu_pids(worker=w.pid),
                                what="burst", alive=[w])
    decisions = await read_decisions(bench.bootstrap, where.names.decisions)
    # The labels, on their own topic, may still be on their way: until each is recorded or
    # dead-lettered (a label waits up to FRAUD_LABEL_WAIT_SECONDS for its transaction).
    deadline = time.monotonic() + 60
    while True:
        metrics = await w.metrics()
        dead = await _count(bench.bootstrap, where.names.dlq)
        if metrics.get("fraud_labels_total{}", 0) + dead >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    w.stop()
    bench.result["burst_eps"] = round(decisions.rate())
    bench.result["phases"]["burst"] = {
        **bench.check_complete("burst", decisions, n),
        "dead_letters": dead,
        "labels_recorded": metrics.get("fraud_labels_total{}", 0),
        "capped": {k: v for k, v in metrics.items() if k.startswith("fraud_capped_total")},
        "cpu": watched.cpu(["worker", "redis", "kafka", "bench"]),
    }
    progress(f"burst: {bench.result['burst_eps']:,} decisions/s (one card), {dead} dead letters")
