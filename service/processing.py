"""One micro-batch, from raw messages to decisions and dead letters; no Kafka here.

Per batch: decode and validate every message, one Redis round trip for all the state
(:class:`~service.state.RedisStore`), features through ``fraudcore``, one onnxruntime
call, the decision policy. Kafka (Faust) feeds it and sends what it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fraudcore import SPEC, CardHistory, TerminalHistory, Transaction, compute, decide
from fraudcore.errors import DuplicateConflict, InvalidEvent
from service import metrics
from service.model import ModelHolder
from service.records import Decision, Source, dead_letter, decode_label, decode_transaction
from service.state import Exchange, RedisStore

__all__ = ["BatchResult", "Message", "Processor", "StateUnavailable"]

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
#: Transactions decided on empty history (fail-open) kept to be recorded once Redis is
#: back; beyond this many the oldest are dropped (and counted), so memory stays bounded.
MAX_UNRECORDED = 200_000


class StateUnavailable(Exception):
    """Redis cannot be reached and the policy is to hold: retry the same batch later."""


@dataclass(frozen=True, slots=True)
class Message:
    value: bytes | None
    source: Source


@dataclass
class BatchResult:
    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)


@dataclass
class Exchanged:
    """A batch after its Redis round trip: each transaction's features, ready to score."""

    result: BatchResult  # its dead letters so far
    rows: list[list[float]] = field(default_factory=list)
    scored: list[tuple[Transaction, bool]] = field(default_factory=list)  # (tx, duplicate)
    degraded: bool = False


class Processor:
    """Scores batches of transactions and records batches of labels."""

    def __init__(
        self,
        store: RedisStore,
        models: ModelHolder,
        *,
        fail_policy: str = "hold",
        include_features: bool = False,
        max_future_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.models = models
        self.fail_policy = fail_policy
        self.include_features = include_features
        self.max_future_seconds = max_future_seconds
        self.clock = clock
        self._unrecorded: list[Transaction] = []  # fail-open: decided, not yet in Redis

    async def transactions(self, batch: Sequence[Message]) -> BatchResult:
        """The whole path for one batch: :meth:`exchange`, then :meth:`decide`."""
        return self.decide(await self.exchange(batch))

    async def exchange(self, batch: Sequence[Message]) -> Exchanged:
        """Decode, one Redis round trip, features. The state is recorded when this returns:
        the next batch's exchange may start while this one is scored (:meth:`decide`)."""
        result = BatchResult()
        started = time.perf_counter()
        valid: list[tuple[Transaction, Message]] = []
        horizon = self.clock() + self.max_future_seconds
        for message in batch:
            try:
                tx = decode_transaction(message.value)
            except InvalidEvent as exc:
                self._dead(result, message, str(exc))
                continue
            if tx.epoch > horizon:
                # State is trimmed relative to event time: one event from the far future
                # would wipe its card's and terminal's history.
                self._dead(
                    result,
                    message,
                    f"timestamp: more than {self.max_future_seconds:g} s "
                    "ahead of the worker's clock",
                )
                continue
            valid.append((tx, message))
        decoded = time.perf_counter()
        metrics.STAGE_SECONDS.labels("decode").observe(decoded - started)
        if not valid:
            return Exchanged(result)

        # Features are computed part by part as Redis answers, while it runs the rest.
        rows: list[list[float]] = []
        scored: list[tuple[Transaction, bool]] = []
        conflicts: list[tuple[Message, str]] = []
        feature_seconds = 0.0

        def take(part: Sequence[Exchange | DuplicateConflict]) -> None:
            nonlocal feature_seconds
            begin = time.perf_counter()
            done = len(scored) + len(conflicts)
            for (tx, message), exchange in zip(valid[done:], part, strict=False):
                if isinstance(exchange, DuplicateConflict):
                    conflicts.append((message, str(exchange)))
                else:
                    rows.append(compute(tx, exchange.card, exchange.terminal))
                    scored.append((tx, exchange.duplicate))
            feature_seconds += time.perf_counter() - begin

        degraded = False
        try:
            await self._record_unrecorded()
            await self.store.exchange([tx for tx, _ in valid], on_part=take)
        except REDIS_DOWN as exc:
            if self.fail_policy == "hold":
                raise StateUnavailable(str(exc)) from exc
            log.warning(
                "Redis unavailable, deciding %d events on empty history: %s", len(valid), exc
            )
            metrics.DEGRADED.inc(len(valid))
            self._keep_unrecorded([tx for tx, _ in valid])
            no_counts = [0] * len(SPEC.terminal_windows_days)
            empty = TerminalHistory(counts=no_counts)
            rows = [compute(tx, CardHistory(), empty) for tx, _ in valid]
            scored = [(tx, False) for tx, _ in valid]
            conflicts, degraded = [], True
        for message, reason in conflicts:
            self._dead(result, message, reason)
        computed = time.perf_counter()
        metrics.STAGE_SECONDS.labels("redis").observe(computed - decoded - feature_seconds)
        metrics.STAGE_SECONDS.labels("features").observe(feature_seconds)
        return Exchanged(result, rows, scored, degraded)

    def decide(self, exchanged: Exchanged) -> BatchResult:
        """Score the batch with one model (even across a swap) and apply the policy."""
        started = time.perf_counter()
        result, rows = exchanged.result, exchanged.rows
        if not rows:
            return result
        model = self.models.model
        scores = model.score(np.asarray(rows, dtype=np.float32))
        now = self.clock()
        thresholds = model.info.thresholds
        scored = exchanged.scored
        for (tx, duplicate), score, row in zip(scored, scores.tolist(), rows, strict=True):
            result.decisions.append(
                Decision(
                    tx,
                    score,
                    decide(score, thresholds),
                    model.version,
                    now,
                    duplicate=duplicate,
                    degraded=exchanged.degraded,
                    features=row if self.include_features else None,
                )
            )
        metrics.STAGE_SECONDS.labels("model").observe(time.perf_counter() - started)
        return result

    def _keep_unrecorded(self, transactions: list[Transaction]) -> None:
        self._unrecorded += transactions
        excess = len(self._unrecorded) - MAX_UNRECORDED
        if excess > 0:
            del self._unrecorded[:excess]
            metrics.UNRECORDED_DROPPED.inc(excess)
            log.error(
                "fail-open backlog full: %d degraded transactions will never be recorded in Redis",
                excess,
            )

    async def _record_unrecorded(self) -> None:
        """Record the transactions decided while Redis was down, in their order, before any
        newer one: later features then count them as an uninterrupted run would."""
        while self._unrecorded:
            chunk = self._unrecorded[:500]
            await self.store.exchange(chunk)  # the answers were given already, degraded
            del self._unrecorded[: len(chunk)]
            metrics.RECORDED_LATE.inc(len(chunk))

    async def labels(self, batch: Sequence[Message]) -> list[bytes]:
        """Record a batch of label events; returns the dead letters."""
        dead: list[bytes] = []
        labels = []
        for message in batch:
            try:
                labels.append(decode_label(message.value))
            except InvalidEvent as exc:
                dead.append(self._dead_letter(message, str(exc)))
        try:
            await self.store.add_labels(labels)
        except REDIS_DOWN as exc:
            # Labels are never decided on: they always wait for Redis.
            raise StateUnavailable(str(exc)) from exc
        return dead

    def _dead(self, result: BatchResult, message: Message, reason: str) -> None:
        result.dead_letters.append(self._dead_letter(message, reason))

    def _dead_letter(self, message: Message, reason: str) -> bytes:
        src = message.source
        log.info("dead letter %s[%d]@%d: %s", src.topic, src.partition, src.offset, reason)
        metrics.DEAD_LETTERS.labels(src.topic).inc()
        return dead_letter(message.value, src, reason, at=self.clock())


async def retry_while_unavailable(
    attempt: Callable[[], object], *, max_delay: float, what: str
) -> object:
    """Run ``attempt`` (a coroutine function) until Redis answers, with capped backoff."""
    delay = 0.1
    while True:
        try:
            return await attempt()  # type: ignore[misc]
        except StateUnavailable as exc:
            metrics.STATE_UNAVAILABLE.inc()
            log.warning("%s: Redis unavailable (%s); holding, retry in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
