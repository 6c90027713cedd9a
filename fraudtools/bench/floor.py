"""The floor under the latency figures: one Kafka hop at 1,000 records a second."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

from fraudtools.bench.kafka import Arrivals, send_paced
from fraudtools.bench.metrics import percentiles, progress
from fraudtools.kafka_admin import create_topics, delete_topics

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.data import Slice

__all__ = ["phase"]


async def phase(bench: Bench, records: Slice) -> None:
    """``kafka_hop_ms``: one Kafka hop (producer, acks all, to a consumer in another
    process) at 1,000/s, as a decision takes two hops and the worker."""
    topic = f"{bench.run_id}-floor"
    await create_topics(bench.bootstrap, [topic])
    arrivals = await Arrivals.start(bench.bootstrap, topic)
    bench.children.append(arrivals.process)
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        sent_at = await send_paced(producer, records, rate=1_000, transactions=topic,
                                   labels=topic)
        deadline = time.monotonic() + 30
        while arrivals.received.value < len(sent_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    first: dict[str, float] = {}
    for tx_id, at in await arrivals.collect():
        first.setdefault(tx_id, at)
    lat = [(first[i] - t) * 1000 for i, t in sent_at.items() if i in first]
    hop = {**percentiles(lat), "rate": 1_000, "sent": len(sent_at), "received": len(lat)}
    bench.result["kafka_hop_ms"] = hop
    progress(f"floor: one Kafka hop at 1,000/s: p50 {hop['p50']} p99 {hop['p99']} ms")
    await delete_topics(bench.bootstrap, [topic])
