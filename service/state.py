"""Card and terminal state in Redis, with the semantics of ``fraudcore.InMemoryStore``.

One batch costs one round trip: a pipeline with, for each transaction, a ``SET NX GET`` on
its id (which card used it first), one Lua call on the card's keys and one on the
terminal's keys (each Lua call is atomic, and each touches keys of a single hash tag, so it
stays on one shard of a Redis Cluster). Redis runs them in order, so a card's second
transaction in a batch sees its first.

The commands are written by :mod:`service.exchange` (the compiled core, or the Python
reference: the same bytes) and sent on one pooled redis-py connection in one write, and
the replies are read back under one timeout: redis-py's own pipeline packs in Python,
checks the scripts with an extra round trip and times every reply, which cost about half
of the worker's CPU per transaction (see docs/benchmarks.md).

Key names are built by :class:`service.keys.KeyLayout` (the layout is drawn there).
Every key is trimmed to the spec's retention, relative to the transaction being scored,
and to its size bound (``FeatureSpec.*_max_*``), and expires after it, so memory and the
work per transaction are bounded; the scripts are in :mod:`service.scripts`. Labels are
checked against the transaction they name before they are recorded (:meth:`add_labels`),
and the state's marker (:mod:`service.lineage`) sits beside the keys. Card ids appear only
as keyed hashes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fraudcore import SPEC, FeatureSpec, LabelEvent, TerminalHistory, Transaction
from fraudcore.errors import DuplicateConflict, StateUnavailable
from fraudcore.state import LabelCheck
from service import scripts
from service.commands import Call, Script, command, pack
from service.engine import Engine
from service.exchange import exchange_calls
from service.keys import KeyLayout
from service.lineage import Found, Lineage
from service.ports import Answer, Exchange, LabelsAnswer, OnPart
from service.replies import check_label, floats, newest_score

__all__ = ["PART", "REDIS_FAULTS", "RedisStore", "ReplicasBehind", "unavailable"]

#: Redis' faults, never the transaction's: unreachable, timed out, out of memory (``maxmemory``
#: with ``noeviction``), read-only (a replica after a failover), busy or loading, a script
#: error, a cluster without a reachable node or with slots nobody serves (redis-py's
#: ``RedisClusterException`` is not a ``RedisError``). The store answers every one as
#: StateUnavailable, so the batch is held (or decided degraded), never dead-lettered.
REDIS_FAULTS = (RedisError, RedisClusterException, OSError)


class ReplicasBehind(RedisError):
    """Fewer replicas than asked for acknowledged a round trip's writes."""


def unavailable(exc: BaseException) -> StateUnavailable:
    return StateUnavailable(f"Redis: {type(exc).__name__}: {exc}")


#: Transactions answered at a time by :meth:`RedisStore.exchange` while the rest of the batch
#: is still running in Redis.
PART = 100

class RedisStore:
    """The feature state of cards and terminals, shared by every worker (a
    :class:`~service.ports.StateStore`)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        card_key_secret: bytes,
        prefix: str = "fraud",
        spec: FeatureSpec = SPEC,
        ids: bool = True,
        clock: Callable[[], float] = time.time,
        wait_replicas: int = 0,
        engine: Engine = "python",
    ) -> None:
        self.redis = redis
        self.spec = spec
        self.clock = clock  # the id index keeps an id a card's retention from now at least
        self.ids = ids  # index ids across cards: the same id with another card is refused
        self.keys = KeyLayout(card_key_secret=card_key_secret, prefix=prefix, spec=spec)
        self._card = Script.of(scripts.CARD)
        self._terminal = Script.of(scripts.TERMINAL)
        self._label = Script.of(scripts.LABEL)
        # A transaction's calls and the card's reply: compiled, or the Python reference.
        self._calls = exchange_calls(engine, self.keys, self._card, self._terminal, ids=ids,
                                     spec=spec)
        self._timeout = self._socket_timeout(redis)
        # Each round trip ends with WAIT: its writes are on that many replicas before the
        # batch is decided, so a failover loses none of them (service.cluster, README).
        self.wait_replicas = wait_replicas
        self._wait_ms = int(min(1.0, self._timeout / 2) * 1000)
        self._wait = pack("WAIT", wait_replicas, self._wait_ms) if wait_replicas else b""
        self._terminal_ttl = str(int(spec.terminal_retention_seconds * 1000))
        self._labels_max = str(spec.terminal_max_labels)
        self._grace = spec.grace_days * 86_400.0
        self._marker = command("GET", self.keys.lineage)  # read with every batch
        self.card_tag = self.keys.card_tag

    @staticmethod
    def _socket_timeout(redis: Any) -> float:
        timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        return float(timeout or 5.0)

    def _card_keys(self, card_id: str) -> list[str]:
        keys = self.keys.card(card_id)
        return [keys.tx, keys.val]

    def _terminal_keys(self, terminal_id: str) -> list[str]:
        keys = self.keys.terminal(terminal_id)
        return [keys.tx, keys.fraud, keys.known]

    async def aclose(self) -> None:
        """Close the store's connections."""
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:  # noqa: BLE001 - a health probe reports, never raises
            return False

    async def memory(self) -> dict[str, tuple[int, int]]:
        """Used and maximum memory (bytes; 0: no limit) of each primary, by node."""
        info = await self.redis.info("memory")
        return {"primary": (int(info["used_memory"]), int(info.get("maxmemory", 0)))}

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        """For each transaction in order: its histories before it, then it is recorded.

        ``on_part`` gets the answers in order, ``PART`` transactions at a time, as they
        arrive: the caller works on them while Redis runs the rest of the batch.
        """
        if not transactions:
            return []
        try:
            return (await self._exchange(transactions, on_part))[0]
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def exchange_checked(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> tuple[list[Answer], Found | StateUnavailable]:
        """:meth:`exchange`, with the marker's ``GET`` after the batch's commands in the
        same write: a loss before or during the batch shows in its own decisions."""
        try:
            answers, raw = await self._exchange(transactions, on_part, marker=True)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        if isinstance(raw, ResponseError):  # the marker's key alone: WRONGTYPE, say
            return answers, unavailable(raw)
        try:  # the batch is recorded: whatever the key holds, it is answered
            return answers, None if raw is None else Lineage.decode(raw)
        except ValueError as exc:
            return answers, Lineage.unreadable(exc, raw)

    async def _exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None, *,
        marker: bool = False,
    ) -> tuple[list[Answer], Any]:
        calls = []
        now = self.clock()
        for tx in transactions:
            calls += self._calls.calls(tx, now)
        exchanged = len(calls)
        if marker:
            calls.append(self._marker)
        results: list[Answer] = []
        undo: list[Call] = []

        per = 3 if self.ids else 2  # calls a transaction

        def answer(first: int, replies: list[Any]) -> None:
            # replies of calls[first:first + len(replies)]: whole transactions (and the
            # marker's reply, at the end)
            part: list[Answer] = []
            for j in range(0, min(len(replies), exchanged - first), per):
                tx = transactions[(first + j) // per]
                first_card = replies[j] if self.ids else None
                card_reply, terminal_reply = replies[j + per - 2], replies[j + per - 1]
                part.append(self._answer(tx, first_card, card_reply, terminal_reply, undo))
            results.extend(part)
            if on_part is not None and part:
                on_part(part)

        replies = await self._run(calls, answer, part=per * PART, spared=exchanged)
        if undo:
            # A refused transaction must not count anywhere it was recorded meanwhile.
            await self._run(undo)
        return results, replies[-1] if marker else None

    def _id_key(self, tx: Transaction) -> str:
        return self.keys.transaction_id(tx.transaction_id)

    def _answer(
        self,
        tx: Transaction,
        first_card: bytes | None,
        card_reply: Any,
        terminal_reply: Any,
        undo: list[Call],
    ) -> Answer:
        # Another card had the id first: refused, even when this card's keys already hold it
        # (a second copy in the same batch, or an earlier refusal whose undo never ran).
        own = self.card_tag(tx.card_id)[:16].encode()  # as the id key holds it
        other_card = first_card is not None and card_reply[0] != -1 and first_card != own
        if card_reply[0] == -1 or other_card:
            if terminal_reply[0] == 1:
                undo.append(
                    command("ZREM", self._terminal_keys(tx.terminal_id)[0], tx.transaction_id)
                )
            if other_card:
                zset, values = self._card_keys(tx.card_id)
                undo.append(command("ZREM", zset, tx.transaction_id))
                undo.append(command("HDEL", values, tx.transaction_id))
            what = "another card" if other_card else "another time, amount or terminal"
            return DuplicateConflict(
                f"transaction {tx.transaction_id!r} was seen before with {what}; the first "
                "one stands. Give a corrected transaction a new id."
            )
        windows = len(self.spec.terminal_windows_days)
        frauds = floats(terminal_reply[1 + windows])
        return Exchange(
            card=self._calls.card_history(card_reply[1]),
            terminal=TerminalHistory(
                counts=terminal_reply[1 : 1 + windows],
                fraud_timestamps=frauds[0::2],
                fraud_known_at=frauds[1::2],
            ),
            # Seen on this card: in its history, or (older than the history keeps, when it
            # comes again) in the id index.
            duplicate=bool(card_reply[0]) or first_card == own,
            card_capped=card_reply[2],
            terminal_capped=terminal_reply[2 + windows],
        )

    async def lineage(self) -> Lineage | None:
        """The state's marker (:mod:`service.lineage`), or None when there is none."""
        try:
            raw = await self.redis.get(self.keys.lineage)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        return Lineage.decode(raw) if raw is not None else None

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        """Write the marker unless there is one; the marker there afterwards."""
        try:
            old = await self.redis.set(self.keys.lineage, lineage.encode(), nx=True, get=True)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        return lineage if old is None else Lineage.decode(old)

    async def complete_lineage(self) -> Lineage:
        """Mark the state complete (``fraud-backfill`` rebuilt it): the current marker's
        generation, or a new one if there is none."""
        current = await self.lineage()
        done = Lineage(current.generation, current.since, True) if current else None
        done = done or Lineage.new(now=self.clock(), complete=True)
        await self._write_marker(done)
        return done

    async def _write_marker(self, marker: Lineage) -> None:
        """Write the marker wherever it is kept (here one key; a cluster: every slot)."""
        try:
            await self.redis.set(self.keys.lineage, marker.encode())
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def forget(self, transactions: Sequence[Transaction]) -> None:
        """Undo the recording of transactions that got no decision (one round trip)."""
        calls = []
        for tx in transactions:
            card = self.keys.card(tx.card_id)
            calls.append(command("ZREM", card.tx, tx.transaction_id))
            calls.append(command("HDEL", card.val, tx.transaction_id))
            terminal = self.keys.terminal(tx.terminal_id).tx
            calls.append(command("ZREM", terminal, tx.transaction_id))
            if self.ids:
                calls.append(command("DEL", self._id_key(tx)))
        if not calls:
            return
        try:
            await self._run(calls)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def add_labels(self, labels: Sequence[LabelEvent]) -> LabelsAnswer:
        """Record fraud labels on their terminals, each only if its card holds the
        transaction with the same content (time, amount, terminal): one round trip to
        check, one to record; the first label of a transaction wins."""
        if not labels:
            return LabelsAnswer([])
        try:
            return await self._add_labels(labels)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def _add_labels(self, labels: Sequence[LabelEvent]) -> LabelsAnswer:
        # What the card holds of the transaction; when the card let it go, when its
        # terminal recorded it and (with the id index) which card used the id: the rule of
        # fraudcore.InMemoryStore.check_label, and of MemoryStore.add_labels.
        commands: list[Call] = []
        for label in labels:
            card = self.keys.card(label.card_id)
            commands.append(command("HGET", card.val, label.transaction_id))
            commands.append(
                command("ZSCORE", self.keys.terminal(label.terminal_id).tx, label.transaction_id)
            )
            commands.append(command("GET", self.keys.transaction_id(label.transaction_id)))
            commands.append(command("ZRANGE", card.tx, "-1", "-1", "WITHSCORES"))
        held = await self._run(commands)
        checks: list[LabelCheck] = []
        for i, label in enumerate(labels):
            content, at, first_card, newest = held[4 * i : 4 * i + 4]
            check = check_label(label, content, at, newest_score(newest), self._grace)
            other_card = first_card is not None and (
                first_card != self.card_tag(label.card_id)[:16].encode()
            )
            if content is None and check == "match" and self.ids and other_card:
                check = "mismatch"  # the id index says another card used it
            checks.append(check)
        calls = [
            self._label.call(
                self._terminal_keys(label.terminal_id)[1:],
                [
                    label.transaction_id,
                    repr(label.epoch),
                    repr(label.known_epoch),
                    self._terminal_ttl,
                    self._labels_max,
                ],
            )
            for label, check in zip(labels, checks, strict=True)
            if check == "match"
        ]
        dropped = await self._run(calls) if calls else []
        return LabelsAnswer(checks, sum(dropped))

    async def _run(
        self,
        calls: Sequence[Call],
        on_replies: Callable[[int, list[Any]], None] | None = None,
        *,
        part: int = 1 << 30,
        spared: int | None = None,
    ) -> list[Any]:
        """Run the calls in order in one round trip; returns their replies, and hands them
        to ``on_replies(first call, replies)`` ``part`` at a time as they arrive. An error
        reply raises, except from the calls from index ``spared`` on: their errors are
        their replies.

        A script Redis does not have (restarted, flushed) fails with NOSCRIPT from that
        call on; it is loaded and the failed calls are sent again, in order (the replies
        from the first failure on are handed over once they are all in).
        """
        replies: list[Any] = [None] * len(calls)
        streamed = 0

        def arrived(chunk: list[Any]) -> None:
            nonlocal streamed
            replies[streamed : streamed + len(chunk)] = chunk
            if on_replies is not None:
                on_replies(streamed, chunk)
            streamed += len(chunk)

        answers = await self._round_trip(calls, arrived, part)
        todo = list(range(streamed, len(calls)))
        answers = answers[streamed:]
        for _ in range(3):
            missing = []
            for i, reply in zip(todo, answers, strict=True):
                if isinstance(reply, NoScriptError) and calls[i].script is not None:
                    missing.append(i)
                elif isinstance(reply, ResponseError) and (spared is None or i < spared):
                    raise reply
                else:
                    replies[i] = reply
            if not missing:
                break
            for script in {calls[i].script for i in missing}:
                await self.redis.script_load(script.source)  # type: ignore[union-attr]
            todo = missing
            answers = await self._round_trip([calls[i] for i in todo])
        else:
            raise NoScriptError("Redis keeps losing the worker's Lua scripts (SCRIPT FLUSH?)")
        if on_replies is not None:
            for first in range(streamed, len(calls), part):
                on_replies(first, replies[first : first + part])
        return replies

    async def _round_trip(
        self,
        calls: Sequence[Call],
        arrived: Callable[[list[Any]], None] | None = None,
        part: int = 1 << 30,
    ) -> list[Any]:
        """Send the commands in one write; read every reply. While no reply is an error,
        ``arrived`` gets them ``part`` at a time (and the rest when the last is in)."""
        packed = [c.packed for c in calls]
        assert isinstance(self.redis, Redis)  # noqa: S101 - a cluster has its own round trip
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(b"".join(packed) + self._wait)
            replies: list[Any] = []
            clean = arrived is not None  # no error so far: replies can be handed over
            handed = 0
            for start in range(0, len(packed), part):
                try:
                    async with asyncio.timeout(self._timeout):
                        for _ in range(min(part, len(packed) - start)):
                            try:
                                replies.append(await connection.read_response(timeout=math.inf))
                            except ResponseError as exc:
                                replies.append(exc)
                                clean = False
                except TimeoutError as exc:
                    raise RedisTimeoutError(f"no answer from Redis in {self._timeout:g} s") from exc
                if clean:
                    arrived(replies[handed:])  # type: ignore[misc]
                    handed = len(replies)
            if self._wait:
                async with asyncio.timeout(self._timeout):
                    self.replicated(await connection.read_response(timeout=math.inf))
            return replies
        except BaseException:
            await connection.disconnect()  # replies may be left on the wire
            raise
        finally:
            await pool.release(connection)

    def replicated(self, reply: Any) -> None:
        """The reply of the ``WAIT`` that ends a round trip (``wait_replicas``): raises
        unless enough replicas hold its writes."""
        if isinstance(reply, Exception):
            raise reply
        if int(reply) < self.wait_replicas:
            raise ReplicasBehind(
                f"{reply} of the {self.wait_replicas} replicas asked for acknowledged the "
                f"batch's writes within {self._wait_ms} ms (FRAUD_REDIS_WAIT_REPLICAS)"
            )
