"""The Redis store on a Redis Cluster: the same batch, grouped by the node owning each slot.

Every command of the store touches keys of one hash tag (:mod:`service.keys`), so it runs on
one node. A round trip groups a batch's packed commands by the primary that owns their slot
(redis-py's slot map), writes each group to its node in one write, all nodes at once, and
puts the replies back in batch order; answers are handed over ``PART`` transactions at a
time as soon as every node has answered up to there, as on one Redis. redis-py's
``ClusterPipeline`` is not used: it packs in Python (three times the CPU), refuses
``EVALSHA``, and on a retry runs again commands that had already run
(docs/research/redis-cluster.md).

What a cluster answers while it changes (a slot migrating, a failover) is followed, never
passed on: ``MOVED`` re-reads the slot map and sends the moved commands to the new owner,
``ASK`` sends them with ``ASKING`` to the importing node, ``TRYAGAIN`` and ``CLUSTERDOWN``
are sent again after a pause — all in their order, and within the store's timeout; none of
them had run. A command refused while a later one of its slot ran (the cluster changed in
the middle of the write) would run out of order, so the round trip fails instead. A node
that does not answer fails the round trip, and the slot map is read again before the
next: every fault is :class:`~fraudcore.errors.StateUnavailable` to the caller, as on one
Redis. A promoted replica has none of the scripts (Redis does not replicate its script
cache): ``NOSCRIPT`` loads them on every primary (:meth:`RedisStore._run`).

The state's marker (:mod:`service.lineage`) is kept in every one of the 16,384 slots: each
shard holds the markers of its slots (they move with them when slots are resharded), and
the marker is read from one slot of every primary, so a shard that lost its data is seen.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from fraudcore import Transaction
from fraudcore.errors import StateUnavailable
from service import metrics
from service.commands import Call, command, pack
from service.lineage import Found, Lineage
from service.ports import Answer, OnPart
from service.state import REDIS_FAULTS, RedisStore, unavailable

__all__ = ["SLOTS", "ClusterStore", "hash_tag", "slot_of", "slot_tags"]

SLOTS = 16_384

_ASKING = pack("ASKING")
#: A command refused by a changing cluster that had not run: sent again.
_REFUSED = (AskError, TryAgainError, ClusterDownError)


def hash_tag(key: str) -> bytes:
    """What Redis hashes of a key: between the first ``{`` and the next ``}``, when that
    is not empty; else the whole key."""
    # On the text: in UTF-8 the bytes of '{' and '}' stand only for those characters.
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end].encode()
    return key.encode()


def slot_of(key: str) -> int:
    """The slot of a key: CRC16 of its hash tag, modulo 16,384."""
    return binascii.crc_hqx(hash_tag(key), 0) % SLOTS


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each slot, the shortest hex number that hashes to it (found once, ~0.3 s)."""
    tags: list[str | None] = [None] * SLOTS
    left, n = SLOTS, 0
    while left:
        tag = format(n, "x")
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        n += 1
    return tuple(t for t in tags if t is not None)


def _reply_name(refusal: Exception) -> str:
    """The refusal's error code (MovedError is an AskError: asked first)."""
    if isinstance(refusal, MovedError):
        return "MOVED"
    if isinstance(refusal, AskError):
        return "ASK"
    return "TRYAGAIN" if isinstance(refusal, TryAgainError) else "CLUSTERDOWN"


def _worst(markers: Sequence[Lineage]) -> Lineage:
    """The marker that says least about the state: a partial one before a complete one,
    the latest start first (one order, so every worker picks the same)."""
    return min(markers, key=lambda m: (m.complete, -m.since, m.generation))


class _Trip:
    """One write per node of a group of calls, read concurrently; replies in call order."""

    def __init__(self, store: ClusterStore, calls: Sequence[Call], nodes: list[ClusterNode],
                 asking: bool) -> None:
        self.store = store
        self.calls = calls
        self.replies: list[Any] = [None] * len(calls)
        self.done = [False] * len(calls)
        self.progress = asyncio.Event()
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, node in enumerate(nodes):
            group = groups.get(node.name)
            if group is None:
                group = groups[node.name] = (node, [])
            group[1].append(i)
        self.tasks = [
            asyncio.ensure_future(self._node(node, index, asking))
            for node, index in groups.values()
        ]

    async def _node(self, node: ClusterNode, index: list[int], asking: bool) -> None:
        store = self.store
        connection = node.acquire_connection()
        try:
            await node.disconnect_if_needed(connection)
            packed = [self.calls[i].packed for i in index]
            if asking:
                packed = [_ASKING + p for p in packed]
            await connection.send_packed_command(b"".join(packed) + store._wait)
            for n, i in enumerate(index, 1):
                if asking:
                    await connection.read_response(timeout=math.inf)
                try:
                    self.replies[i] = await connection.read_response(timeout=math.inf)
                except ResponseError as exc:
                    self.replies[i] = exc
                self.done[i] = True
                if not n % 64:
                    self.progress.set()  # the caller looks how far every node has answered
            self.progress.set()
            if store._wait:
                store.replicated(await connection.read_response(timeout=math.inf))
        except BaseException:
            await connection.disconnect()  # replies may be left on the wire
            raise
        finally:
            node.release(connection)

    async def replies_in_order(
        self, arrived: Callable[[list[Any]], None] | None, part: int, timeout: float
    ) -> list[Any]:
        """Wait for every reply, each part within ``timeout``; ``arrived`` gets the parts
        in order while no reply is an error."""
        loop = asyncio.get_running_loop()
        n = len(self.calls)
        frontier = handed = 0
        clean = arrived is not None
        deadline = loop.time() + timeout
        try:
            while True:
                self.progress.clear()
                reached = frontier
                while frontier < n and self.done[frontier]:
                    clean = clean and not isinstance(self.replies[frontier], ResponseError)
                    frontier += 1
                if frontier // part > reached // part or frontier == n > reached:
                    deadline = loop.time() + timeout  # a part is in: the next one's time
                    upto = n if frontier == n else frontier - frontier % part
                    if clean and upto > handed:
                        arrived(self.replies[handed:upto])  # type: ignore[misc]
                        handed = upto
                failed = next((t for t in self.tasks if t.done() and t.exception()), None)
                if failed is not None:
                    failed.result()
                if frontier == n and all(t.done() for t in self.tasks):
                    return self.replies
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RedisTimeoutError(f"no answer from Redis in {timeout:g} s")
                waiter = asyncio.ensure_future(self.progress.wait())
                pending = [t for t in self.tasks if not t.done()]
                try:
                    await asyncio.wait(
                        [waiter, *pending], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waiter.cancel()
        except BaseException:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            raise


class ClusterStore(RedisStore):
    """:class:`~service.state.RedisStore` on a Redis Cluster (a
    :class:`~service.ports.StateStore`): the same keys, scripts and answers."""

    def __init__(self, cluster: RedisCluster, **kwargs: Any) -> None:
        super().__init__(cluster, **kwargs)
        self.cluster = cluster
        self._stale = True  # read the slot map before the next round trip (first, a node failed)
        self._started = False
        self._samples: tuple[object, list[str]] | None = None  # (slot map, marker keys)

    @staticmethod
    def _socket_timeout(redis: Any) -> float:
        return float(redis.connection_kwargs.get("socket_timeout") or 5.0)

    async def ping(self) -> bool:
        try:
            return bool(await self.cluster.ping(target_nodes=RedisCluster.PRIMARIES))
        except Exception:  # noqa: BLE001 - a health probe reports, never raises
            return False

    async def memory(self) -> dict[str, tuple[int, int]]:
        infos = await self.cluster.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return {
            name: (int(info["used_memory"]), int(info.get("maxmemory", 0)))
            for name, info in infos.items()
        }

    async def exchange_checked(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> tuple[list[Answer], Found | StateUnavailable]:
        """The markers are read from every primary beside the batch's round trip (which
        touches only its slots), not in it."""
        read = asyncio.ensure_future(self._marker_or_error())
        try:
            answers = await self.exchange(transactions, on_part)
        finally:
            found = await read  # never raises
        return answers, found

    async def _marker_or_error(self) -> Found | StateUnavailable:
        try:
            return await self.lineage()
        except StateUnavailable as exc:
            return exc
        except ValueError as exc:  # a marker key holding something else
            return Lineage.unreadable(exc)

    async def _refresh(self) -> None:
        if self._started:
            await self.cluster.nodes_manager.initialize()
        else:  # the client's own set-up (reads the map; aclose closes only what it set up)
            await self.cluster.initialize()
            self._started = True
        self._stale = False

    async def _round_trip(
        self,
        calls: Sequence[Call],
        arrived: Callable[[list[Any]], None] | None = None,
        part: int = 1 << 30,
    ) -> list[Any]:
        try:
            if self._stale:
                await self._refresh()
            replies = await self._trip(calls, self._owners(calls), False, arrived, part)
            return await self._follow(calls, replies)
        except REDIS_FAULTS:
            self._stale = True
            raise

    def _owners(self, calls: Sequence[Call]) -> list[ClusterNode]:
        owner = self.cluster.nodes_manager.get_node_from_slot
        return [owner(slot_of(c.key)) for c in calls]

    async def _trip(
        self,
        calls: Sequence[Call],
        nodes: list[ClusterNode],
        asking: bool,
        arrived: Callable[[list[Any]], None] | None = None,
        part: int = 1 << 30,
    ) -> list[Any]:
        return await _Trip(self, calls, nodes, asking).replies_in_order(
            arrived, part, self._timeout
        )

    async def _follow(self, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
        """Send again, where the cluster says, what it refused while changing: a redirect
        at once, then (or for TRYAGAIN and CLUSTERDOWN) after a pause that doubles."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        rounds = 0
        while refused := [i for i, r in enumerate(replies) if isinstance(r, _REFUSED)]:
            self._in_order(calls, replies, refused)
            for i in refused:
                metrics.CLUSTER_REFUSED.labels(_reply_name(replies[i])).inc()
            redirects = all(isinstance(replies[i], AskError) for i in refused)  # MOVED too
            pause = 0.0 if rounds == 0 and redirects else min(0.05 * 2**rounds, 0.5)
            if loop.time() + pause > deadline:
                return replies  # the caller raises the first refusal
            if pause:
                await asyncio.sleep(pause)
            rounds += 1
            asks = [i for i in refused if type(replies[i]) is AskError]
            others = [i for i in refused if type(replies[i]) is not AskError]
            if others:
                await self._refresh()  # MOVED: a new owner; CLUSTERDOWN: perhaps a new map
                again = await self._trip([calls[i] for i in others], self._owners(
                    [calls[i] for i in others]), False)
                for i, reply in zip(others, again, strict=True):
                    replies[i] = reply
            targets = [self._node_at(replies[i]) for i in asks]
            if any(t is None for t in targets):
                await self._refresh()  # an importing node the map does not know yet
            elif asks:
                again = await self._trip([calls[i] for i in asks], targets, True)  # type: ignore[arg-type]
                for i, reply in zip(asks, again, strict=True):
                    replies[i] = reply
        return replies

    def _node_at(self, ask: AskError) -> ClusterNode | None:
        return self.cluster.get_node(host=ask.host, port=ask.port)

    @staticmethod
    def _in_order(calls: Sequence[Call], replies: list[Any], refused: list[int]) -> None:
        """Refuse to send a command again after a later one of its hash tag (a card's, a
        terminal's, an id's keys) ran."""
        first: dict[bytes, int] = {}
        for i in refused:
            first.setdefault(hash_tag(calls[i].key), i)
        for i in range(min(refused), len(calls)):
            tag = hash_tag(calls[i].key)
            if i > first.get(tag, len(calls)) and not isinstance(replies[i], ResponseError):
                raise ClusterDownError(
                    f"the cluster refused a command of slot {slot_of(calls[i].key)} and ran a "
                    f"later one of its keys while it changed ({replies[first[tag]]}): the "
                    "batch is sent again"
                )

    # The marker: one in every slot, read from one slot of every primary.

    def _sample_keys(self) -> list[str]:
        manager = self.cluster.nodes_manager
        if self._samples is None or self._samples[0] is not manager.slots_cache:
            first: dict[str, int] = {}  # each primary's first slot
            for slot, nodes in manager.slots_cache.items():
                if nodes and slot < first.get(nodes[0].name, SLOTS):
                    first[nodes[0].name] = slot
            tags = slot_tags()
            keys = [self.keys.slot_lineage(tags[s]) for s in sorted(first.values())]
            self._samples = (manager.slots_cache, keys)
        return self._samples[1]

    def _marker_keys(self) -> list[str]:
        return [self.keys.slot_lineage(tag) for tag in slot_tags()]

    async def _markers(self, calls: list[Call]) -> list[Any]:
        try:
            return await self._run(calls)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def lineage(self) -> Lineage | None:
        if self._stale:
            try:
                await self._refresh()
            except REDIS_FAULTS as exc:
                raise unavailable(exc) from exc
        found = await self._markers([command("GET", key) for key in self._sample_keys()])
        if any(raw is None for raw in found):
            return None  # a shard without its markers lost its data (or none was written)
        return _worst([Lineage.decode(raw) for raw in found])

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        keys = self._marker_keys()
        mine = lineage.encode()
        old = await self._markers([command("SET", key, mine, "NX", "GET") for key in keys])
        # Every slot holds what it held, or now ours: the worst of them is the marker,
        # written to every slot that holds another.
        held = [lineage if raw is None else Lineage.decode(raw) for raw in old]
        marker = _worst(held)
        if any(m != marker for m in held):
            await self._set_markers(marker, keys)
        return marker

    async def _write_marker(self, marker: Lineage) -> None:
        await self._set_markers(marker, self._marker_keys())

    async def _set_markers(self, marker: Lineage, keys: list[str]) -> None:
        await self._markers([command("SET", key, marker.encode()) for key in keys])
