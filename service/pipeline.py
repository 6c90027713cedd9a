"""One batch, from consumed messages to outputs the broker has acknowledged.

::

    messages ─► decode, validate ─► state exchange ─► features ─► score ─► policy, rules ─► send
                 │ (dead letters)    StateStore port   fraudcore   ONNX   service.rules   Sink
                 ▼
           the batch's result: decisions and dead letters, in batch order

:class:`BatchPipeline` owns that whole path and talks to the outside only through its ports
(:mod:`service.ports`): a state store, a sink, the model in service. No Kafka, Redis or
Faust here, so unit tests run it on the in-memory store and a recording sink.

Whose fault it is decides where a message goes:

- the message's (invalid, too far in the future, a conflicting id): the dead-letter topic
  with the reason, in the batch's result;
- the state store's (any Redis error: unreachable, out of memory, read-only, ...):
  :func:`~service.retry.hold` — the batch waits and is tried again
  (``fail_policy="hold"``), or it is decided on empty history and marked degraded
  (``"open"``), its transactions kept to be recorded once the store is back;
- the model's (it fails at run time): the batch is held and scored again, by whichever
  model is current then (under either policy: there is no score to fall back on);
- while it holds on the store or the model, :class:`~service.readiness.Readiness` says
  so (``/health`` 503, ``fraud_faults``, one log line per change);
- a bug (any other exception): the batch is tried again a message at a time; the messages
  that fail alone are dead-lettered with the error (poison, their recorded state undone),
  the rest decided; when every one fails alone it is the system's fault and the batch is
  held (``/health`` 503) until it works;
- the broker's (a send that fails): the batch's outputs are sent again until every one
  is acknowledged (:class:`Delivery`).

Batches overlap: while one batch is scored and sent, the next one's state exchange runs in
the store, and batches with no card in common exchange state at the same time. The turns
(:mod:`service.turns`) keep the order: batches that share a card exchange state one after
the other, in batch order (so a card's transactions are recorded in the order they came),
and outputs are queued in batch order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from fraudcore import SPEC, CardHistory, TerminalHistory, Transaction, compute
from fraudcore.errors import DuplicateConflict, StateUnavailable
from service import metrics
from service.backlog import MAX_UNRECORDED, Backlog
from service.dead_letters import DeadLetters, check_each, internal, systemic
from service.delivery import Delivery, Output, send_until_acknowledged, watched
from service.labels import LabelOptions, LabelPath, Progress
from service.lineage import StateLineage
from service.ports import Answer, Models, Rules, Sink, StateStore
from service.readiness import Readiness
from service.records import DeadLetter, Decision, Message, decode_transaction
from service.retry import Sleep, Unavailable, hold, retry
from service.scoring import score_batch
from service.turns import Turn, Turns, claims

__all__ = ["MAX_UNRECORDED", "BatchPipeline", "BatchResult", "Delivery", "Options", "Output",
           "OutputTopics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutputTopics:
    decisions: str
    alerts: str
    dlq: str
    decision_log: str | None = None  # every decision with what it was made on (None: off)


@dataclass(frozen=True, slots=True)
class Options:
    """How the pipeline decides; the worker takes them from its settings."""

    fail_policy: Literal["hold", "open"] = "hold"
    include_features: bool = False  # the feature vector in every decision
    max_future_seconds: float = 3600.0  # events dated further ahead are dead-lettered
    retry_max_seconds: float = 5.0  # longest backoff while holding or sending again
    max_unrecorded: int = MAX_UNRECORDED
    # a record keyed other than by its card id: dead-lettered, or accepted (and counted)
    miskeyed: Literal["dead-letter", "accept"] = "dead-letter"
    label_wait_seconds: float = 30.0  # a label waits this long for its transaction


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch came to: its decisions and its dead letters, each in batch order."""

    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A batch after validation: the transactions to exchange; the messages refused
    (their fault, with the reason) and the poison (a bug on that message alone)."""

    valid: list[tuple[Transaction, Message]]
    refused: list[tuple[Message, str]]
    poison: list[tuple[Message, str]]


@dataclass(frozen=True, slots=True)
class _Exchanged:
    """A batch after its state exchange: each transaction's features, ready to score.

    A batch that failed has no rows and every message among its dead letters."""

    dead_letters: list[DeadLetter]
    rows: list[list[float]] = field(default_factory=list)
    scored: list[tuple[Transaction, bool]] = field(default_factory=list)  # (tx, duplicate)
    degraded: bool = False


class BatchPipeline:
    """Decides batches of transactions, records batches of labels, and sends the outputs."""

    def __init__(
        self,
        store: StateStore,
        models: Models,
        sink: Sink,
        *,
        topics: OutputTopics,
        options: Options = Options(),
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        readiness: Readiness | None = None,
        decode: Callable[[bytes | None], Transaction] = decode_transaction,
        features: Callable[[Transaction, CardHistory, TerminalHistory], list[float]] = compute,
        rules: Rules | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.rules = rules  # the analysts' rules, applied after the policy (None: no rules)
        self.sink = sink
        self.topics = topics
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.readiness = readiness if readiness is not None else Readiness()
        self.decode = decode  # bytes -> a validated transaction (InvalidEvent if not)
        self.features = features  # the feature vector of a transaction and its histories
        self._backlog = Backlog(limit=options.max_unrecorded)  # fail-open: not yet recorded
        self._dead = DeadLetters(clock=clock, miskeyed=options.miskeyed)
        self._recorded = Progress()  # wakes labels waiting for their transactions
        self.lineage = StateLineage(store, clock=clock)  # is the state whole?
        self._labels = LabelPath(
            store,
            dead=self._dead,
            readiness=self.readiness,
            deliver=self._send_until_acknowledged,
            dlq=topics.dlq,
            options=LabelOptions(
                max_future_seconds=options.max_future_seconds,
                retry_max_seconds=options.retry_max_seconds,
                wait_seconds=options.label_wait_seconds,
            ),
            progress=self._recorded,
            clock=clock,
            sleep=sleep,
        )
        # Batches are decoded in turn; those without a card in common exchange state at
        # once; outputs are queued in batch order (service.turns).
        self._decode_turn = asyncio.Lock()
        self._turns = Turns()

    # -- transactions --------------------------------------------------------------------

    async def transactions(
        self, batch: Sequence[Message], record_times: Sequence[float] = ()
    ) -> Delivery:
        """Decide a batch and queue its outputs; the :class:`Delivery` tells when the
        broker has them all. The next batch may be started as soon as this returns.

        ``record_times``: when each message was written to Kafka, for the latency metric.
        """
        metrics.BATCH_SIZE.observe(len(batch))
        turn = self._turns.arrive()
        try:
            exchanged = await self._exchange(batch, turn)
            await turn.send_turn()
            return await self._queue(await self._decide(exchanged), record_times)
        finally:
            turn.leave()

    async def decide(self, batch: Sequence[Message]) -> BatchResult:
        """Decide a batch without sending anything (the in-process benchmark)."""
        turn = self._turns.arrive()
        try:
            return await self._decide(await self._exchange(batch, turn))
        finally:
            turn.leave()

    async def _exchange(self, batch: Sequence[Message], turn: Turn) -> _Exchanged:
        """Validate, then one state exchange for the batch (held while the store is away),
        once every earlier batch holding one of its cards has had its own
        (:mod:`service.turns`). The state is recorded when this returns.

        A batch that fails with an unexpected error (a bug: in the store's replies, say) is
        tried again one message at a time, so that only the messages that fail alone are
        dead-lettered (poison); when every one fails alone, the fault is the system's and
        the batch is held until it works."""
        try:
            return await self._exchange_in_turn(batch, turn)
        finally:
            turn.exchanged()

    async def _exchange_in_turn(self, batch: Sequence[Message], turn: Turn) -> _Exchanged:
        self._turns.enter(turn)
        decoded: _Decoded | Exception
        async with self._decode_turn:  # the batches claim their cards in batch order
            try:
                decoded = await self._decode_held(batch)
            except Exception as exc:  # noqa: BLE001 - a bug: a message at a time, below
                decoded = exc
            turn.claim(None if isinstance(decoded, Exception)
                       else claims([tx for tx, _ in decoded.valid]))
        await turn.clear()
        try:
            if isinstance(decoded, Exception):
                raise decoded
            return await self._exchange_decoded(decoded)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the batch
            if len(batch) < 2:
                return _Exchanged(self._dead.batch(batch, "scoring", exc))
            log.exception("scoring a batch of %d failed; trying it a message at a time", len(batch))
        try:
            return await hold(
                partial(self._one_at_a_time, batch,
                        None if isinstance(decoded, Exception) else decoded),
                what="scoring",
                max_delay=self.options.retry_max_seconds,
                sleep=self.sleep,
            )
        except Exception as exc:  # noqa: BLE001 - a bug in the isolation itself
            return _Exchanged(self._dead.batch(batch, "scoring", exc))

    async def _one_at_a_time(
        self, batch: Sequence[Message], decoded: _Decoded | None
    ) -> _Exchanged | Unavailable:
        # What the batch's decoding refused stays refused (its cards unclaimed: not exchanged).
        kept = {id(m): tx for tx, m in decoded.valid} if decoded is not None else {}
        parts: list[_Exchanged] = []
        poison: list[tuple[Message, str]] = []
        for message in batch:
            if decoded is not None and id(message) not in kept:
                parts.append(_Exchanged(self._dead.many(
                    [r for r in decoded.refused if r[0] is message],
                    [p for p in decoded.poison if p[0] is message])))
                continue
            try:
                one = (await self._decode_held([message]) if decoded is None
                       else _Decoded([(kept[id(message)], message)], [], []))
                parts.append(await self._exchange_decoded(one))
            except Exception as exc:  # noqa: BLE001 - this message alone fails: poison
                log.exception("scoring %s failed alone", message.where)
                poison.append((message, internal(exc)))
                await self._forget_quietly(message)
        if systemic(len(poison), len(parts)):
            reason = f"every message of a batch fails alone: {poison[0][1]}"
            self._turns.fault(self.readiness, "scoring", reason)
            return Unavailable(reason, part="scoring")
        self._turns.clear(self.readiness, "scoring")
        return _Exchanged(
            [*(d for part in parts for d in part.dead_letters), *self._dead.many([], poison)],
            [row for part in parts for row in part.rows],
            [scored for part in parts for scored in part.scored],
            degraded=any(part.degraded for part in parts),  # marks more, never fewer
        )

    async def _forget_quietly(self, message: Message) -> None:
        """Undo what a failed exchange may have recorded for a poison message (its
        redelivery, once the bug is fixed, is then decided as new)."""
        try:
            await self.store.forget([self.decode(message.value)])
        except Exception as exc:  # noqa: BLE001 - best effort: it is dead-lettered anyway
            log.warning("could not undo the state of %s: %r", message.where, exc)

    async def _decode_held(self, batch: Sequence[Message]) -> _Decoded:
        return await hold(
            partial(self._decode_unless_systemic, batch),
            what="decoding",
            max_delay=self.options.retry_max_seconds,
            sleep=self.sleep,
        )

    async def _exchange_decoded(self, decoded: _Decoded) -> _Exchanged:
        if not decoded.valid:
            return _Exchanged(self._dead.many(decoded.refused, decoded.poison))
        return await hold(
            partial(self._exchange_state, decoded),
            what="scoring",
            max_delay=self.options.retry_max_seconds,
            sleep=self.sleep,
        )

    async def _decode_unless_systemic(self, batch: Sequence[Message]) -> _Decoded | Unavailable:
        decoded = self._decode(batch)
        if systemic(len(decoded.poison), len(decoded.valid)):
            reason = f"every message of a batch fails to decode: {decoded.poison[0][1]}"
            self._turns.fault(self.readiness, "decoding", reason)
            return Unavailable(reason, part="decoding")
        self._turns.clear(self.readiness, "decoding")
        return decoded

    def _decode(self, batch: Sequence[Message]) -> _Decoded:
        started = time.perf_counter()
        horizon = self.clock() + self.options.max_future_seconds

        def refuse(tx: Transaction, message: Message) -> str | None:
            if tx.epoch > horizon:
                # State is trimmed relative to event time: one event from the far future
                # would wipe its card's and terminal's history.
                return (
                    f"timestamp: more than {self.options.max_future_seconds:g} s "
                    "ahead of the worker's clock"
                )
            return self._dead.miskeyed(message, tx.card_id)

        checked = check_each(batch, self.decode, refuse)
        metrics.STAGE_SECONDS.labels("decode").observe(time.perf_counter() - started)
        return _Decoded(checked.kept, checked.refused, checked.poison)

    async def _exchange_state(self, decoded: _Decoded) -> _Exchanged | Unavailable:
        started = time.perf_counter()
        valid = decoded.valid
        # Features are computed part by part as the store answers, while it runs the rest.
        rows: list[list[float]] = []
        scored: list[tuple[Transaction, bool]] = []
        conflicts: list[tuple[Message, str]] = []
        poison: list[tuple[Message, str]] = []
        unrecord: list[Transaction] = []  # poison recorded by this exchange: undone
        feature_seconds = 0.0

        def take(part: Sequence[Answer]) -> None:
            nonlocal feature_seconds
            begin = time.perf_counter()
            done = len(scored) + len(conflicts) + len(poison)
            for (tx, message), answer in zip(valid[done:], part, strict=False):
                if isinstance(answer, DuplicateConflict):
                    conflicts.append((message, str(answer)))
                    continue
                try:
                    rows.append(self.features(tx, answer.card, answer.terminal))
                except Exception as exc:  # noqa: BLE001 - a bug on this message: poison
                    log.exception("features of %s failed", message.where)
                    poison.append((message, internal(exc)))
                    if not answer.duplicate:
                        unrecord.append(tx)
                    continue
                scored.append((tx, answer.duplicate))
                if answer.card_capped:
                    metrics.CAPPED.labels("card").inc(answer.card_capped)
                if answer.terminal_capped:
                    metrics.CAPPED.labels("terminal").inc(answer.terminal_capped)
            feature_seconds += time.perf_counter() - begin

        try:
            await self._backlog.record(self.store)
            # The state's marker is read in the same round trip (service.lineage).
            _, found = await self.store.exchange_checked([tx for tx, _ in valid], on_part=take)
            partial = await self.lineage.settle(found)
            if unrecord:
                # No decision: no recorded state either, so a redelivery is decided as new.
                await self.store.forget(unrecord)
        except StateUnavailable as exc:
            self._turns.fault(self.readiness, "state", str(exc))
            if self.options.fail_policy == "hold":
                return Unavailable(str(exc))
            return self._decided_on_empty_history(decoded, exc)
        self._turns.clear(self.readiness, "state")
        self._recorded.moved()
        if systemic(len(poison), len(scored)):
            reason = f"the features of every transaction of a batch fail: {poison[0][1]}"
            self._turns.fault(self.readiness, "features", reason)
            return Unavailable(reason, part="features")
        self._turns.clear(self.readiness, "features")
        dead = self._dead.many(decoded.refused + conflicts, decoded.poison + poison)
        state_seconds = time.perf_counter() - started - feature_seconds
        metrics.STAGE_SECONDS.labels("redis").observe(state_seconds)
        metrics.STAGE_SECONDS.labels("features").observe(feature_seconds)
        if partial:
            metrics.PARTIAL_STATE.inc(len(scored))
        return _Exchanged(dead, rows, scored, degraded=partial)

    def _decided_on_empty_history(self, decoded: _Decoded, exc: Exception) -> _Exchanged:
        """Fail-open: features of a first-seen card and terminal; recorded later."""
        valid = [tx for tx, _ in decoded.valid]
        log.warning("state unavailable, deciding %d events on empty history: %s", len(valid), exc)
        metrics.DEGRADED.inc(len(valid))
        self._backlog.keep(valid)
        empty = TerminalHistory(counts=[0] * len(SPEC.terminal_windows_days))
        rows = [self.features(tx, CardHistory(), empty) for tx in valid]
        dead = self._dead.many(decoded.refused, decoded.poison)
        return _Exchanged(dead, rows, [(tx, False) for tx in valid], True)

    @property
    def unrecorded(self) -> int:
        """Degraded transactions waiting to be recorded."""
        return len(self._backlog)

    async def _decide(self, exchanged: _Exchanged) -> BatchResult:
        """Score the batch and apply the policy; held while the model fails."""
        if not exchanged.rows:
            return BatchResult([], exchanged.dead_letters)
        decisions = await retry(
            partial(self._score_or_fault, exchanged),
            what="scoring",
            max_delay=self.options.retry_max_seconds,
            sleep=self.sleep,
        )
        return BatchResult(decisions, exchanged.dead_letters)

    async def _score_or_fault(self, exchanged: _Exchanged) -> list[Decision]:
        try:
            decisions = self._score(exchanged)
        except Exception as exc:
            metrics.MODEL_FAILURES.inc()
            self.readiness.fault("model", f"{self.models.model.version}: {exc!r}")
            raise
        self.readiness.clear("model")
        return decisions

    def _score(self, exchanged: _Exchanged) -> list[Decision]:
        """One model call for the batch (one model, even across a swap), then the policy,
        the rules, the shadow and the reasons (:mod:`service.scoring`)."""
        return score_batch(
            self.models,
            self.rules,
            exchanged.rows,
            exchanged.scored,
            now=self.clock(),
            degraded=exchanged.degraded,
            keep_features=self.options.include_features or self.topics.decision_log is not None,
        )

    async def _queue(self, result: BatchResult, record_times: Sequence[float]) -> Delivery:
        """Queue the batch's outputs on the sink: each decision (and its alert, unless it
        approves; its log record, while the decision log is on), then the dead letters."""
        started = time.perf_counter()
        outputs: list[Output] = []
        actions: Counter[str] = Counter()
        topics, features = self.topics, self.options.include_features
        for decision in result.decisions:
            key = decision.transaction.card_id.encode()
            value = decision.to_json(features=features)
            outputs.append(Output(topics.decisions, key, value))
            if decision.action != "approve":
                outputs.append(Output(topics.alerts, key, value))
            if topics.decision_log is not None:
                outputs.append(Output(topics.decision_log, key, decision.log_json()))
            actions[decision.action] += 1
        outputs += [Output(self.topics.dlq, d.key, d.value) for d in result.dead_letters]
        queued: list[Awaitable[object]] = []
        try:
            # A send waits for its topic's metadata: forever for a topic that does not exist.
            with watched(self.readiness, (o.topic for o in outputs)):
                for output in outputs:
                    queued.append(await self.sink.send(output.topic, output.key, output.value))
        except Exception as exc:  # noqa: BLE001 - the delivery sends them all again
            log.warning("queueing %d records failed (%r)", len(outputs), exc)
        metrics.STAGE_SECONDS.labels("emit").observe(time.perf_counter() - started)
        return Delivery(
            outputs,
            queued,
            send_again=self._send_until_acknowledged,
            record_times=record_times,
            clock=self.clock,
            actions=actions,
            duplicates=sum(d.duplicate for d in result.decisions),
            readiness=self.readiness,
        )

    async def _send_until_acknowledged(self, outputs: list[Output]) -> None:
        await send_until_acknowledged(
            self.sink,
            outputs,
            max_delay=self.options.retry_max_seconds,
            sleep=self.sleep,
            readiness=self.readiness,
        )

    # -- labels --------------------------------------------------------------------------

    async def labels(self, batch: Sequence[Message]) -> int:
        """Check and record a batch of label events (:mod:`service.labels`) and deliver its
        dead letters; returns how many labels were recorded."""
        return await self._labels.record(batch)
