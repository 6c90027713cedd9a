"""The event history in replay order, for rebuilding the feature state (``fraud-backfill``):
a history file as training reads it, or the retained range of the transactions and labels
topics.

Order: event time, a transaction at its timestamp and a label at its known time, as
``training.replay`` and ``fraudtools.feed`` merge them, except on a tie: transactions
first. Replay puts a label first so that it counts in the features of a transaction at
that very instant; here nothing is decided, so no feature depends on it, while the store
records a label only if its card holds the transaction: a label known the instant of its
own transaction (no delay) would find nothing and be lost.

The topics' partitions are merged in that order, each read in offset order (a card's
events are on one partition, in the order the worker took them) and only as far as the
merge needs: memory does not grow with the topics.

Written in batches (:class:`Batcher`) whose result is the events' one by one in this order.

A record the worker would dead-letter (:func:`validate`: it does not decode, fails
validation, is dated too far ahead, or is keyed other than by its card id) was never in
the state: it is counted by reason and skipped.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fraudcore import SPEC, FeatureSpec, InvalidEvent, LabelEvent, Transaction
from fraudcore.errors import FraudError
from service.records import decode_label, decode_transaction
from service.settings import Settings

__all__ = [
    "MISKEYED",
    "Batch",
    "Batcher",
    "Event",
    "file_events",
    "merge_in_order",
    "order_key",
    "skip_future",
    "topic_events",
    "validate",
]

log = logging.getLogger(__name__)

Event = Transaction | LabelEvent

#: Why a record whose Kafka key is not its card id is skipped (the worker dead-letters it).
MISKEYED = "key: the record's Kafka key is not its card_id (or is empty)"
#: Why an event dated beyond FRAUD_MAX_FUTURE_SECONDS is skipped (as the worker refuses it).
FUTURE = "timestamp: too far ahead of the clock (FRAUD_MAX_FUTURE_SECONDS)"


def order_key(event: Event) -> tuple[float, int]:
    """Event time; a transaction before a label at the same instant."""
    if isinstance(event, LabelEvent):
        return (event.known_epoch, 1)
    return (event.epoch, 0)


async def merge_in_order(sources: Sequence[AsyncIterator[Event]]) -> AsyncIterator[Event]:
    """The events of ``sources`` (each in order) merged by :func:`order_key`; on a tie, the
    earlier source first. Reads each source only as far as the merge needs."""
    heap: list[tuple[tuple[float, int], int, Event]] = []
    for i, source in enumerate(sources):
        first = await anext(source, None)
        if first is not None:
            heap.append((order_key(first), i, first))
    heapq.heapify(heap)
    while heap:
        _, i, event = heap[0]
        yield event
        following = await anext(sources[i], None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (order_key(following), i, following))


def file_events(frame: Any, *, spec: FeatureSpec = SPEC) -> tuple[int, Iterator[Event]]:
    """How many events, and the events in order, of a canonical frame (time-sorted, as
    ``read_transactions`` gives it) and its label events."""
    from training.dataset import label_events

    labels = label_events(frame, delay_days=spec.label_delay_days)

    def rows(table: Any, *times: str) -> Iterator[tuple[Any, ...]]:
        columns = ["TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
        values = [table[c].tolist() for c in columns]
        values += [table[t].dt.to_pydatetime().tolist() for t in times]
        return zip(*values, strict=True)

    transactions = (Transaction(*row) for row in rows(frame, "TX_DATETIME"))
    known = (LabelEvent(*row) for row in rows(labels, "TX_DATETIME", "KNOWN_AT"))
    return len(frame) + len(labels), heapq.merge(known, transactions, key=order_key)


def validate(
    kind: str, key: bytes | None, value: bytes | None, *, horizon: float, accept_miskeyed: bool
) -> Event | str:
    """A record of the transactions (``kind="transaction"``) or labels topic: the event, or
    why the worker would have dead-lettered it (not stored, so skipped here)."""
    event: Event
    try:
        event = decode_transaction(value) if kind == "transaction" else decode_label(value)
    except InvalidEvent as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug on one record must not stop the run
        return f"internal error: {type(exc).__name__}"
    if isinstance(event, Transaction) and event.epoch > horizon:
        return FUTURE
    if key != event.card_id.encode() and not accept_miskeyed:
        return MISKEYED
    return event


@contextlib.asynccontextmanager
async def topic_events(
    s: Settings, invalid: Counter[str], *, clock: Callable[[], float], total: Callable[[int], None]
) -> AsyncIterator[AsyncIterator[Event]]:
    """The retained range of the transactions and labels topics (from each partition's
    beginning to its end offset now), merged in order; ``total`` gets how many records that
    is, ``invalid`` the records skipped, by reason, as they are read. No consumer group:
    nothing is committed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from service.kafka import kafka_client_options

    options = kafka_client_options(s) | {"client_id": f"{s.app_id}-backfill"}
    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20, **options,
    )
    try:
        await consumer.start()
        # The consumer's own metadata (topics() fills another copy), as fraudtools.kafka_admin
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public way
        partitions: list[tuple[str, TopicPartition]] = []
        for kind, topic in (("label", s.topic_labels), ("transaction", s.topic_transactions)):
            ids = sorted(consumer.partitions_for_topic(topic) or ())
            if not ids:
                raise FraudError(f"topic {topic!r} not found on {s.kafka_bootstrap}")
            partitions += [(kind, TopicPartition(topic, p)) for p in ids]
        tps = [tp for _, tp in partitions]
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, firsts[tp])
        total(sum(ends[tp] - firsts[tp] for tp in tps))
        horizon = clock() + s.max_future_seconds
        accept = s.miskeyed_policy == "accept"

        async def partition(kind: str, tp: TopicPartition) -> AsyncIterator[Event]:
            end = ends[tp]
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for record in fetched.get(tp, []):
                    if record.offset >= end:
                        return
                    event = validate(
                        kind, record.key, record.value, horizon=horizon, accept_miskeyed=accept
                    )
                    if isinstance(event, str):
                        invalid[f"{tp.topic}: {event}"] += 1
                        log.debug("skipped %s[%d]@%d: %s", tp.topic, tp.partition,
                                  record.offset, event)
                    else:
                        yield event

        yield merge_in_order([partition(kind, tp) for kind, tp in partitions])
    finally:
        await consumer.stop()


async def skip_future(
    events: Iterable[Event], invalid: Counter[str], *, horizon: float, source: str = "file"
) -> AsyncIterator[Event]:
    """``events``, without the transactions dated after ``horizon`` (counted in ``invalid``)."""
    for event in events:
        if isinstance(event, Transaction) and event.epoch > horizon:
            invalid[f"{source}: {FUTURE}"] += 1
            continue
        yield event


@dataclass(frozen=True, slots=True)
class Batch:
    """Written labels first, then transactions."""

    labels: list[LabelEvent]
    transactions: list[Transaction]


class Batcher:
    """Events in order in, batches out whose writing has the same result as writing the
    events one by one in order.

    A label joins the batch being formed unless its terminal or its card has a transaction
    in it (that batch is written first); a batch writes its labels, then its transactions.
    A label touches only its terminal's keys and reads its card's (whether the card holds
    its transaction), so moving it ahead of transactions of other terminals and cards
    changes nothing, and batches stay full (labels follow their transactions by the label
    delay, days later).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the batch size must be at least 1")
        self.size = size
        self._labels: list[LabelEvent] = []
        self._transactions: list[Transaction] = []
        self._terminals: set[str] = set()
        self._cards: set[str] = set()

    def add(self, event: Event) -> Batch | None:
        """Take ``event``; returns the batch to write first, if one is complete."""
        out = None
        if isinstance(event, LabelEvent):
            if (
                event.terminal_id in self._terminals
                or event.card_id in self._cards
                or len(self._labels) >= self.size
            ):
                out = self.flush()
            self._labels.append(event)
        else:
            if len(self._transactions) >= self.size:
                out = self.flush()
            self._transactions.append(event)
            self._terminals.add(event.terminal_id)
            self._cards.add(event.card_id)
        return out

    def flush(self) -> Batch | None:
        if not self._labels and not self._transactions:
            return None
        batch = Batch(self._labels, self._transactions)
        self._labels, self._transactions = [], []
        self._terminals, self._cards = set(), set()
        return batch
