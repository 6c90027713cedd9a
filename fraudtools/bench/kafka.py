"""Kafka for the benchmark: pre-loading a backlog, paced sending, reading decisions back,
and the consumer process that timestamps decisions as they arrive (:class:`Arrivals`;
topics and groups are in :mod:`fraudtools.kafka_admin`).

Everything here is bounded: every wait has a deadline and fails with what it saw.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any, TypeVar

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from fraudtools.bench.data import Slice
from fraudtools.kafka_admin import PARTITIONS

__all__ = [
    "Arrivals",
    "BenchError",
    "Decisions",
    "arrivals_process",
    "end_total",
    "freeze_gc",
    "preload",
    "read_decisions",
    "runner",
    "send_paced",
]

T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says what was seen and what to do."""


async def preload(bootstrap: str, records: Slice, *, transactions: str, labels: str) -> float:
    """Write ``records`` as fast as the broker takes them (whole batches per partition, the
    keys partitioned as any Kafka producer does). Returns the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_batch_size=512 * 1024, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        partitioner = DefaultPartitioner()
        used = {transactions} | ({labels} if not all(records.is_tx) else set())
        parts = {t: sorted(await producer.partitions_for(t)) for t in used}
        batches: dict[tuple[str, int], Any] = {}
        pending = []
        for is_tx, key, value in zip(records.is_tx, records.keys, records.values, strict=True):
            topic = transactions if is_tx else labels
            partition = partitioner(key, parts[topic], parts[topic])
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.wait_for(asyncio.gather(*pending), timeout=120)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def send_paced(producer: AIOKafkaProducer, records: Slice, *, rate: float,
                     transactions: str, labels: str) -> dict[str, float]:
    """Send ``records`` in order, transactions at ``rate`` a second (labels when their turn
    comes). Returns each transaction's send time (``time.monotonic()``, taken just before
    the record is handed to the producer)."""
    sent_at: dict[str, float] = {}
    pending = []
    n = len(records)
    is_tx, keys, values, ids = records.is_tx, records.keys, records.values, records.ids
    clock, monotonic = time.perf_counter, time.monotonic
    start = clock()
    i = sent = 0
    while i < n:
        now = clock()
        while i < n and (not is_tx[i] or start + sent / rate <= now):
            if is_tx[i]:
                sent_at[ids[i]] = monotonic()
                sent += 1
                pending.append(await producer.send(transactions, values[i], key=keys[i]))
            else:
                pending.append(await producer.send(labels, values[i], key=keys[i]))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
    return sent_at


async def end_total(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    """Records in the topic so far (sum of the partitions' end offsets)."""
    ends = await consumer.end_offsets(partitions)
    return int(sum(ends.values()))


@dataclass
class Decisions:
    """What a decisions topic holds, read back after a phase."""

    count: int
    distinct: int
    flagged_duplicate: int
    timestamps_ms: np.ndarray  # the broker record timestamp of each decision (producer time)
    ids: list[str]

    @property
    def repeated(self) -> int:
        return self.count - self.distinct

    def rate(self, *, since_ms: float | None = None) -> float:
        """Decisions a second from the first (or the first at/after ``since_ms``) to the last."""
        ts = self.timestamps_ms if since_ms is None else self.timestamps_ms[
            self.timestamps_ms >= since_ms]
        if len(ts) < 2:
            return float("nan")
        span = (ts.max() - ts.min()) / 1000
        return float((len(ts) - 1) / span) if span > 0 else float("nan")


async def read_decisions(bootstrap: str, topic: str, *, timeout: float = 120) -> Decisions:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20,
                                fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        stamps: list[int] = []
        ids: list[str] = []
        flagged = 0
        deadline = time.monotonic() + timeout
        loads = orjson.loads
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise BenchError(f"reading {topic} back took over {timeout:.0f} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for messages in batch.values():
                for m in messages:
                    d = loads(m.value)
                    ids.append(d["transaction_id"])
                    flagged += bool(d.get("duplicate"))
                    stamps.append(m.timestamp)
    finally:
        await consumer.stop()
    return Decisions(len(ids), len(set(ids)), flagged, np.asarray(stamps, dtype=np.float64), ids)


# ---------------------------------------------------------------- the arrival-timing process


def arrivals_process(bootstrap: str, topic: str, conn: Connection, stop: Event,
                     received: Any) -> None:
    """Child process: read ``topic`` from its current end, note when each decision arrives
    (``time.monotonic()``, the same clock as the sender's in another process), count them
    in the shared ``received``, and send ``[(transaction id, time), ...]`` on ``conn`` when
    ``stop`` is set. Its own process, so timing arrivals never waits behind sending."""
    async def run() -> list[tuple[str, float]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        arrived: list[tuple[str, float]] = []
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolve now: nothing before this point counts
            conn.send("ready")
            # Its collector's pauses would count as the worker's latency: off while it times
            # (it lives for one phase; what it keeps is a list of untracked tuples).
            freeze_gc()
            gc.disable()
            loads, monotonic = orjson.loads, time.monotonic
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=50)
                now = monotonic()
                n = 0
                for messages in batch.values():
                    for m in messages:
                        arrived.append((loads(m.value)["transaction_id"], now))
                        n += 1
                if n:
                    with received.get_lock():
                        received.value += n
        finally:
            await consumer.stop()
        return arrived

    conn.send(runner()(run()))
    conn.close()


def freeze_gc() -> None:
    """Take everything alive now (modules, the generated data) out of the collector's full
    scans: on this VM each scanned object costs ~0.2-0.4 µs, and a full collection over the
    generated data stopped the sender for up to 90 ms, a pause that counted as latency."""
    gc.collect()
    gc.freeze()


def runner() -> Callable[[Coroutine[Any, Any, T]], T]:
    """``uvloop.run`` when uvloop is installed (the worker's loop), else ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


@dataclass
class Arrivals:
    """A consumer in its own process stamping each record's arrival on ``topic``."""

    process: BaseProcess
    conn: Connection
    stop: Event
    received: Any  # a shared count of records so far (multiprocessing.Value, "q")

    @classmethod
    async def start(cls, bootstrap: str, topic: str) -> Arrivals:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        stop, received = ctx.Event(), ctx.Value("q", 0)
        process = ctx.Process(target=arrivals_process, daemon=True,
                              args=(bootstrap, topic, child, stop, received))
        process.start()
        if not await asyncio.to_thread(parent.poll, 60) or parent.recv() != "ready":
            raise BenchError(f"the consumer of {topic} did not start within 60 s")
        return cls(process, parent, stop, received)

    async def collect(self) -> list[tuple[str, float]]:
        """Stop it; every (transaction id, arrival time) it saw."""
        self.stop.set()
        got = await asyncio.to_thread(lambda: self.conn.recv() if self.conn.poll(120) else None)
        self.process.join(30)
        if got is None:
            raise BenchError("the arrival consumer sent nothing back")
        return list(got)
