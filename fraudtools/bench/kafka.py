"""Kafka for the benchmark: pre-loading a backlog, paced sending, reading decisions back,
and the consumer process that timestamps decisions as they arrive (:class:`Arrivals`;
topics and groups are in :mod:`fraudtools.kafka_admin`).

On a topic created with :data:`~fraudtools.kafka_admin.LOG_APPEND_TIME` the broker stamps
each record when it appends it: the paced sender keeps that time of each transaction from
its ack (:class:`Sent`), the arrival process that of each decision from its record, and
:func:`first_copies` / :func:`broker_to_broker` join them (whole milliseconds: the broker's
clock, one stamp for a whole produced batch).

Everything here is bounded: every wait has a deadline and fails with what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any, NamedTuple, TypeVar

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from fraudtools.bench.data import Slice
from fraudtools.bench.metrics import percentiles
from fraudtools.kafka_admin import PARTITIONS

__all__ = [
    "LOG_APPEND",
    "TICK",
    "Arrival",
    "Arrivals",
    "BenchError",
    "Decisions",
    "Sent",
    "arrivals_process",
    "broker_to_broker",
    "end_total",
    "first_copies",
    "freeze_gc",
    "no_collection",
    "preload",
    "read_decisions",
    "runner",
    "send_paced",
    "send_stamped",
]

#: ``timestamp_type`` of a record (and of a producer's ack) stamped by the broker on append.
LOG_APPEND = 1
#: The shortest pause between paced sends, seconds: the transactions due meanwhile go
#: together, as a producer's batch (at 5,000/s, five a tick).
TICK = 0.001

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


@dataclass(frozen=True)
class Sent:
    """What :func:`send_stamped` sent: by transaction id, the send time
    (``time.monotonic()``) and, when the broker stamped it (its ack says LogAppendTime),
    its append time in ms; a transaction whose ack carried the producer's own time is left
    out of ``appended_ms``."""

    sent_at: dict[str, float]
    appended_ms: dict[str, int]


async def send_stamped(producer: AIOKafkaProducer, records: Slice, *, rate: float,
                       transactions: str, labels: str) -> Sent:
    """Send ``records`` in order, transactions at ``rate`` a second (labels when their turn
    comes): each transaction's send time (``time.monotonic()``, taken just before the record
    is handed to the producer) and its broker append time (from its ack)."""
    sent_at: dict[str, float] = {}
    pending = []
    tx_ids: list[str] = []  # the transaction id of each pending send, "" for a label
    n = len(records)
    is_tx, keys, values, ids = records.is_tx, records.keys, records.values, records.ids
    clock, monotonic = time.perf_counter, time.monotonic
    with no_collection():
        start = clock()
        i = sent = 0
        while i < n:
            now = clock()
            while i < n and (not is_tx[i] or start + sent / rate <= now):
                if is_tx[i]:
                    sent_at[ids[i]] = monotonic()
                    sent += 1
                    pending.append(await producer.send(transactions, values[i], key=keys[i]))
                    tx_ids.append(ids[i])
                else:
                    pending.append(await producer.send(labels, values[i], key=keys[i]))
                    tx_ids.append("")
                i += 1
            if i < n:
                # At least a tick: the event loop's timers have a resolution of a
                # millisecond, so a shorter sleep returns at once, and above 1,000/s the
                # loop would spin a core away from the worker (it did: 0.8 of this
                # machine's 2 at 2,000/s).
                await asyncio.sleep(max(TICK, start + sent / rate - clock()))
    acks = await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
    appended = {tx_id: ack.timestamp for tx_id, ack in zip(tx_ids, acks, strict=True)
                if tx_id and ack.timestamp_type == LOG_APPEND}
    return Sent(sent_at, appended)


async def send_paced(producer: AIOKafkaProducer, records: Slice, *, rate: float,
                     transactions: str, labels: str) -> dict[str, float]:
    """:func:`send_stamped`'s send times alone (the floor's and the soak's)."""
    sent = await send_stamped(producer, records, rate=rate, transactions=transactions,
                              labels=labels)
    return sent.sent_at


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
    # the record timestamp of each decision: the broker's append time on a LogAppendTime
    # topic (the throughput phase's), else the producer's
    timestamps_ms: np.ndarray
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


class Arrival(NamedTuple):
    """A record seen by the arrival process: its transaction id, when it arrived
    (``time.monotonic()``) and its broker append time in ms (-1: the topic is not
    LogAppendTime, the record carries the producer's time)."""

    tx_id: str
    at: float
    appended_ms: int


def arrivals_process(bootstrap: str, topic: str, conn: Connection, stop: Event,
                     received: Any) -> None:
    """Child process: read ``topic`` from its current end, note when each decision arrives
    (``time.monotonic()``, the same clock as the sender's in another process) and its
    broker append time, count them in the shared ``received``, and send
    ``[(transaction id, time, append ms or -1), ...]`` on ``conn`` when ``stop`` is set. Its
    own process, so timing arrivals never waits behind sending."""
    async def run() -> list[tuple[str, float, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        arrived: list[tuple[str, float, int]] = []
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
                        appended = m.timestamp if m.timestamp_type == LOG_APPEND else -1
                        arrived.append((loads(m.value)["transaction_id"], now, appended))
                        n += 1
                if n:
                    with received.get_lock():
                        received.value += n
        finally:
            await consumer.stop()
        return arrived

    conn.send(runner()(run()))
    conn.close()


def first_copies(arrivals: Iterable[Arrival]) -> tuple[dict[str, Arrival], dict[str, int]]:
    """By transaction id, the first copy of its decision to arrive, and how many came."""
    first: dict[str, Arrival] = {}
    seen: dict[str, int] = {}
    for a in arrivals:
        seen[a.tx_id] = seen.get(a.tx_id, 0) + 1
        first.setdefault(a.tx_id, a)
    return first, seen


def broker_to_broker(appended_ms: Mapping[str, int], sent: int,
                     first: Mapping[str, Arrival]) -> dict[str, Any]:
    """From each transaction's append to the broker (``appended_ms``, of the ``sent``
    transactions) to its first decision's append (``first``: :func:`first_copies`), in ms:
    percentiles over the transactions with both, ``decided`` (how many), ``missing`` (sent,
    no decision seen) and ``max_by_second`` (the worst of each second, in order). Not
    available when a side was not stamped by the broker (a topic not created
    LogAppendTime): then it says which, rather than take a producer's clock for the
    broker's."""
    decided = [(t, first[i].appended_ms) for i, t in appended_ms.items() if i in first]
    not_stamped = []
    if len(appended_ms) < sent:
        not_stamped.append(f"{sent - len(appended_ms):,} of {sent:,} transactions' acks "
                           "carried the producer's time (transactions topic not LogAppendTime)")
    unstamped = sum(d < 0 for _, d in decided)
    if unstamped:
        not_stamped.append(f"{unstamped:,} decisions carried the producer's time (decisions "
                           "topic not LogAppendTime)")
    if not_stamped:
        return {"available": False, "note": "; ".join(not_stamped)}
    lat = [float(d - t) for t, d in decided]
    # Where the tail is: the worst latency of each second of the phase, by append time.
    worst: dict[int, float] = {}
    for (t, _), ms in zip(decided, lat, strict=True):
        second = t // 1000
        worst[second] = max(worst.get(second, 0.0), ms)
    return {"available": True, **percentiles(lat), "decided": len(lat),
            "missing": sent - len(lat), "max_by_second": [worst[k] for k in sorted(worst)]}


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No garbage collection while the block runs (the paced sends), one after it. The
    sends' futures and stamps pile up as the phase goes: at 5,000/s a full collection
    over them stopped the sender 21-48 ms every 7 s or so, and the transactions it held
    back then reached the broker together, a burst the worker was timed on. A phase's
    garbage is a few hundred MB at most."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
            gc.collect()


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

    async def collect_stamped(self) -> list[Arrival]:
        """Stop it; every record it saw (transaction id, arrival time, append time)."""
        self.stop.set()
        got = await asyncio.to_thread(lambda: self.conn.recv() if self.conn.poll(120) else None)
        self.process.join(30)
        if got is None:
            raise BenchError("the arrival consumer sent nothing back")
        return [Arrival._make(a) for a in got]

    async def collect(self) -> list[tuple[str, float]]:
        """Stop it; every (transaction id, arrival time) it saw."""
        return [(a.tx_id, a.at) for a in await self.collect_stamped()]
