"""The scenarios' stream: generated transactions with one population per partition, their
features in an uninterrupted run, and sending and reading them on Kafka."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import orjson
import pandas as pd
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudcore import FEATURE_NAMES, SPEC, Transaction
from fraudcore.features import CardHistory, TerminalHistory, compute
from fraudtools.feed import Record, with_labels_behind
from fraudtools.kafka_admin import PARTITIONS
from training import generator
from training.dataset import normalise
from training.replay import replay

__all__ = [
    "chaos_frame",
    "collect",
    "empty_history_features",
    "expected_features",
    "online_features",
    "partition_of",
    "produce",
    "with_labels_behind",  # re-exported from fraudtools.feed
]


async def produce(
    bootstrap: str,
    topics: dict[str, str],
    records: Sequence[Record],
    *,
    rate: float,
    sent_at: dict[str, float] | None = None,
    started: threading.Event | None = None,
) -> None:
    """Send in order, each record to the topic of its kind (``topics["transaction"]``,
    ``topics["label"]``), transactions paced at ``rate`` a second (0: as fast as possible),
    until the broker has every record. Patient: a broker restart only delays the sends."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024,
        request_timeout_ms=120_000, retry_backoff_ms=200,
    )
    await producer.start()
    pending = []
    try:
        begin = time.perf_counter()
        i = 0  # transactions sent
        for record in records:
            if record.kind == "transaction":
                if rate > 0:
                    ahead = begin + i / rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if sent_at is not None:
                    sent_at.setdefault(record.transaction_id, time.time())
                i += 1
            pending.append(await producer.send(topics[record.kind], record.value,
                                               key=record.key, partition=partition_of(record)))
            if started is not None and i == 1:
                started.set()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def collect(bootstrap: str, topic: str, *, expected: set[str] | None,
                   timeout: float, quiet: float) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning: until every expected transaction id was seen
    (or the timeout), then until nothing new arrives for ``quiet`` seconds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            done = expected is None or expected <= seen
            if done and time.monotonic() - last >= quiet:
                break
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for m in messages:
                    record = orjson.loads(m.value)
                    records.append(record)
                    seen.add(str(record.get("transaction_id")))
                    last = time.monotonic()
    finally:
        await consumer.stop()
    return records



def chaos_frame(*, customers: int = 320, days: int = 16, seed: int = 5) -> pd.DataFrame:
    """Generated transactions (~9,000 over 16 days): one independent population of cards
    and terminals per partition (ids ``p<partition>-...``), sent to that partition.

    Why: the stream is compressed (16 days in ~23 s), so a backlog of a few seconds spans
    days of event time, and a worker catching up takes one partition's fetched chunk
    (up to 1 MB, thousands of events) before the next: partitions run days apart in event
    time, far beyond what live traffic ever does (seconds). Terminals shared across
    partitions would then see counts that depend on that order, by design (the spec
    tolerates partitions out of step by its 3 days of grace and the 7-day label delay,
    which compressed time exceeds). With no state shared across partitions, the features
    of a correct worker equal the offline replay whatever the faults do to timing, so any
    difference is a real loss, double count or misordering. The stream is shorter than
    the retention (33 and 40 days), so no trim ever runs either.
    """
    parts = []
    for p in range(PARTITIONS):
        config = generator.GeneratorConfig(  # a wider radius: terminals shared by more cards
            customers=customers // PARTITIONS, terminals=customers // PARTITIONS, radius=12.0,
            days=days, start=date(2018, 4, 1), seed=seed + p,
            compromised_terminals_per_day=1, compromised_customers_per_day=1,
        )
        part = generator.generate(config)
        for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
            part[column] = f"p{p}-" + part[column].astype(str)
        parts.append(part)
    return normalise(pd.concat(parts, ignore_index=True), source="chaos")


def partition_of(record: Record) -> int | None:
    """The partition of a :func:`chaos_frame` card (``p<n>-...``); None for other keys."""
    head = record.key.split(b"-", 1)[0]
    return int(head[1:]) if head[:1] == b"p" and head[1:].isdigit() else None


def expected_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features by transaction id in an uninterrupted run (``training.replay.replay``)."""
    names = list(FEATURE_NAMES)
    offline, _ = replay(frame)
    rows = offline[names].to_numpy(dtype=np.float32)
    return dict(zip(offline["TRANSACTION_ID"].tolist(), rows, strict=True))


def empty_history_features(frame: pd.DataFrame, ids: set[str]) -> dict[str, np.ndarray]:
    """Features of those transactions on empty history: what fail-open decides on."""
    empty_terminal = TerminalHistory(counts=[0] * len(SPEC.terminal_windows_days))
    out: dict[str, np.ndarray] = {}
    for r in frame[frame["TRANSACTION_ID"].isin(ids)].to_dict("records"):
        tx = Transaction(r["TRANSACTION_ID"], r["CUSTOMER_ID"], r["TERMINAL_ID"],
                         r["TX_AMOUNT"], r["TX_DATETIME"].to_pydatetime())
        row = compute(tx, CardHistory(), empty_terminal)
        out[tx.transaction_id] = np.asarray(row, dtype=np.float64).astype(np.float32)
    return out


def online_features(decision: dict[str, Any]) -> np.ndarray:
    return np.array([decision["features"][n] for n in FEATURE_NAMES], dtype=np.float32)
