"""The transactions consumer: whole fetches from aiokafka, committed once decided.

Faust's agents deliver one event at a time through its conductor, channel queue and stream
(and acknowledge each); measured on this service that machinery cost about 95 µs of CPU
per transaction, more than the Redis round trip, the features and the model together
(docs/benchmarks.md). So the hot topic is read here instead, as a service of the Faust
app: ``getmany`` hands over everything fetched (up to ``batch_size``) in one list, the
batch is decided and its outputs acknowledged by the broker, and only then do its offsets
count as done. The next batches are decided while those acknowledgements travel (up to
``max_in_flight`` batches); offsets become done in batch order, however the acks arrive.
Done offsets are committed every ``commit_interval`` seconds (a commit per batch is a
round trip that small batches cannot afford), on a rebalance and on stop.
Batches form by themselves: one event when traffic is light (no waiting to fill a batch),
hundreds under load.

At-least-once, as before: a worker that dies before a commit has the batches since the
last one delivered again, and the store answers those transactions as duplicates (same
decision, ``duplicate: true``). On a rebalance the partitions are released only after the
batch in hand is decided and committed, so a clean hand-over repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from service import metrics
from service.delivery import Delivery
from service.records import Message, Source

__all__ = ["BatchConsumer"]

log = logging.getLogger(__name__)

# handle(messages, record times) decides a batch and queues its outputs; the delivery it
# returns tells when the broker has acknowledged them all.
Handler = Callable[[list[Message], list[float]], Awaitable[Delivery]]


class _ReleaseAfterBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:  # the batch in hand is decided first
            await self.owner.commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.forget_all_but(assigned)
        log.info(
            "transactions: assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        )


class BatchConsumer(mode.Service):
    """Feed ``handle(messages, record_times)`` with batches of one topic; commit after it."""

    def __init__(
        self,
        topic: str,
        handle: Handler,
        *,
        batch_size: int,
        commit_interval: float = 1.0,
        max_in_flight: int = 4,
        stop_timeout: float = 30.0,
        **kafka: Any,
    ) -> None:
        super().__init__()  # the app attaches it to its tree: a crash here stops the worker
        self.topic = topic
        self.handle = handle
        self.batch_size = batch_size
        self.commit_interval = commit_interval
        self.max_in_flight = max_in_flight
        self.stop_timeout = stop_timeout
        self.kafka = kafka
        # Held while a batch is started and the finished ones are settled, and by a rebalance
        # or a stop, which wait for every batch in hand.
        self.lock = asyncio.Lock()
        # Batches being decided or whose outputs the broker has not acknowledged yet, oldest
        # first, with the offsets they complete and their oldest record's time.
        self._in_flight: deque[tuple[asyncio.Future[None], dict[TopicPartition, int], float]] = (
            deque()
        )
        self._lag_at = 0.0  # when the lag gauges were last set
        self._lagging: set[TopicPartition] = set()  # partitions with a lag gauge
        self._done: dict[TopicPartition, int] = {}  # decided and delivered, not committed
        self._committed_at = time.monotonic()
        self._fetch_done = asyncio.Event()

    async def on_start(self) -> None:
        # Made here, in the worker's event loop.
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", **self.kafka
        )
        self._consumer.subscribe([self.topic], listener=_ReleaseAfterBatch(self))
        await self._consumer.start()
        metrics.OLDEST_UNDECIDED.set_function(self.oldest_undecided)
        self._fetching: asyncio.Future[None] = self.add_future(self._run())

    def dead(self) -> str | None:
        """Why this consumer no longer fetches (its loop ended: crashed or stopped), or
        None while it runs or has not started yet."""
        fetching = getattr(self, "_fetching", None)
        if fetching is None or not fetching.done():
            return None
        if fetching.cancelled():
            return "the transactions loop was cancelled"
        exc = fetching.exception()
        return f"the transactions loop ended: {exc!r}" if exc else "the transactions loop ended"

    def oldest_undecided(self) -> float:
        """Seconds since the oldest record fetched and not yet decided and delivered was
        produced (its Kafka timestamp); 0 when none waits."""
        if not self._in_flight:
            return 0.0
        return max(0.0, time.time() - min(oldest for _, _, oldest in self._in_flight))

    async def _report_lag(self) -> None:
        """``fraud_consumer_lag``: the broker's end offset minus this worker's position,
        for each assigned partition (at most once a second)."""
        if time.monotonic() - self._lag_at < 1.0:
            return
        self._lag_at = time.monotonic()
        assigned = self._consumer.assignment()
        for tp in self._lagging - assigned:
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        self._lagging = set(assigned)
        for tp in assigned:
            end = self._consumer.highwater(tp)
            if end is None:  # no fetch answered for it yet
                continue
            position = await self._consumer.position(tp)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - position))

    async def decided_before(self) -> bool:
        """Whether this group has committed offsets on a partition this worker was given:
        it decided transactions before (service.lineage tells a loss from a first start)."""
        for tp in self._consumer.assignment():
            if await self._consumer.committed(tp) is not None:
                return True
        return False

    async def on_stop(self) -> None:
        # Finish the batches in hand and commit them, then leave the group.
        try:
            async with asyncio.timeout(self.stop_timeout):
                await self._fetch_done.wait()
                async with self.lock:
                    await self._settle()
        except TimeoutError:
            # E.g. held by a Redis outage: give them up (they are not committed, so they are
            # delivered again) and release the lock a pending rebalance waits for.
            log.warning(
                "transactions: batches not finished in %.0f s; giving them up", self.stop_timeout
            )
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetching
            for delivered, _, _ in self._in_flight:
                delivered.cancel()
            self._in_flight.clear()
        try:
            async with asyncio.timeout(self.stop_timeout):
                async with self.lock:
                    await self.commit()
        except TimeoutError:
            log.warning("transactions: final commit not done in %.0f s", self.stop_timeout)
        await self._consumer.stop()

    async def _run(self) -> None:
        try:
            while not self.should_stop:
                fetched = await self._consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                await self._report_lag()
                async with self.lock:
                    if fetched and not self.should_stop:
                        await self._batch(fetched)
                    else:
                        await self._settle()
                    if time.monotonic() - self._committed_at >= self.commit_interval:
                        await self.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - never consume on as a zombie
            log.exception("transactions consumer failed; stopping the worker")
            await self.crash(exc)
        finally:
            self._fetch_done.set()

    async def _batch(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        messages, times = [], []
        for records in fetched.values():
            for r in records:
                messages.append(Message(r.value, Source(r.topic, r.partition, r.offset), r.key))
                times.append(r.timestamp / 1000.0)
        delivered = asyncio.ensure_future(self._decide(messages, times))
        offsets = {tp: rs[-1].offset + 1 for tp, rs in fetched.items()}
        self._in_flight.append((delivered, offsets, min(times)))
        # The next batches are fetched and started while this one is decided and its outputs
        # travel (the handler keeps their order); a broker that stops acknowledging, or a
        # Redis that stops answering, stops the loop after max_in_flight batches.
        await self._settle(keep=self.max_in_flight - 1)

    async def _decide(self, messages: list[Message], times: list[float]) -> None:
        delivery = await self.handle(messages, times)
        await delivery.confirmed()

    async def _settle(self, keep: int = 0) -> None:
        """Take the delivered batches, oldest first (their offsets are then done), waiting
        until at most ``keep`` are still in flight."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][0].done()):
            delivered, offsets, _ = self._in_flight[0]
            await delivered
            self._in_flight.popleft()
            self._done.update(offsets)

    def forget_all_but(self, assigned: Any) -> None:
        """Drop uncommitted offsets of partitions that now belong to another worker."""
        self._done = {tp: offset for tp, offset in self._done.items() if tp in assigned}

    async def commit(self) -> None:
        """Commit the offsets of every decided and delivered batch."""
        await self._settle()
        self._committed_at = time.monotonic()
        if not self._done:
            return
        offsets, self._done = self._done, {}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # Kept for the next try; if the group moved on meanwhile, the new owner gets
            # these again and answers them as duplicates.
            for tp, offset in offsets.items():
                self._done.setdefault(tp, offset)
            log.warning(
                "transactions: commit failed (%r); the batches since the last "
                "commit will be delivered again",
                exc,
            )
