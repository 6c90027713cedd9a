"""The store on a real Redis Cluster (`make up-cluster`), beyond the port's parity test:
hash tags that hold braces, the state's marker on every shard, and a slot migrating under
traffic (ASK, TRYAGAIN, then MOVED), each answered as the in-memory reference answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from redis import Redis

from fraudcore import LabelEvent, Transaction
from service.cluster import ClusterStore, slot_of, slot_tags
from service.keys import KeyLayout
from service.lineage import Lineage
from service.memory import MemoryStore

from .conftest import CLUSTER_URL, open_store

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
SECRET = b"cluster"


def _nodes() -> dict[str, Redis]:
    """A client of each primary, by node id."""
    seed = Redis.from_url(CLUSTER_URL)
    try:
        lines = seed.execute_command("CLUSTER", "NODES").decode().splitlines()
    finally:
        seed.close()
    out = {}
    for line in lines:
        fields = line.split()
        if "master" in fields[2] and "fail" not in fields[2]:
            host, port = fields[1].split("@")[0].rsplit(":", 1)
            out[fields[0]] = Redis(host=host, port=int(port))
    return out


def _owner(nodes: dict[str, Redis], slot: int) -> str:
    any_node = next(iter(nodes.values()))
    for start, end, primary, *_ in any_node.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            host, port = primary[0].decode(), primary[1]
            return next(i for i, n in nodes.items()
                        if n.connection_pool.connection_kwargs["port"] == port
                        and n.connection_pool.connection_kwargs["host"] == host)
    raise AssertionError(f"slot {slot} has no owner")


@pytest.fixture
def primaries(cluster_url: str) -> Iterator[dict[str, Redis]]:
    nodes = _nodes()
    yield nodes
    for client in nodes.values():
        client.close()


def _tx(n: int, card: str, terminal: str, tid: str | None = None) -> Transaction:
    return Transaction(tid or f"tx-{n}", card, terminal, 10.0 + n, T0 + timedelta(minutes=n))


def _refused(reply: str) -> float:
    return REGISTRY.get_sample_value("fraud_redis_cluster_refused_total", {"reply": reply}) or 0.0


def _same(a: object, b: object) -> bool:
    return repr(a) == repr(b)


def test_terminal_ids_with_braces_keep_their_keys_on_one_slot(cluster_url: str) -> None:
    """A terminal id starting with '}' gave its three keys three slots: CROSSSLOT, and the
    batch was held for ever on a cluster."""
    terminals = ["}x", "{}", "a{b}", "ab}c", "%7D", "plain"]
    layout = KeyLayout(card_key_secret=SECRET, prefix="p")
    for t in terminals:
        keys = layout.terminal(t)
        assert len({slot_of(keys.tx), slot_of(keys.fraud), slot_of(keys.known)}) == 1, t
    assert len({layout.terminal(t).tx for t in terminals}) == len(terminals)

    async def scenario() -> tuple[list[object], list[object]]:
        txs = [_tx(i, f"c{i % 2}", terminals[i % len(terminals)]) for i in range(24)]
        labels = [LabelEvent(tx.transaction_id, tx.card_id, tx.terminal_id, tx.amount,
                             tx.timestamp, tx.timestamp + timedelta(hours=1)) for tx in txs[:12]]
        async with open_store("cluster", f"it-braces-{uuid.uuid4().hex[:8]}",
                              card_key_secret=SECRET) as store:
            memory = MemoryStore()
            got = [await store.exchange(txs[:12]), (await store.add_labels(labels)).checks,
                   await store.exchange(txs[12:])]
            want = [await memory.exchange(txs[:12]), (await memory.add_labels(labels)).checks,
                    await memory.exchange(txs[12:])]
            return got, want

    got, want = asyncio.run(scenario())
    assert _same(got, want)
    assert got[1] == ["match"] * 12


def test_a_shard_that_lost_the_state_is_seen_and_the_marker_agrees_again(
    primaries: dict[str, Redis],
) -> None:
    prefix = f"it-marker-{uuid.uuid4().hex[:8]}"
    layout = KeyLayout(card_key_secret=SECRET, prefix=prefix)

    async def scenario() -> None:
        async with open_store("cluster", prefix, card_key_secret=SECRET) as store:
            assert isinstance(store, ClusterStore)
            assert await store.lineage() is None
            first = Lineage.new(now=1000.0, complete=True)
            assert await store.start_lineage(first) == first
            assert await store.lineage() == first
            # Every slot holds the marker: one shard's keys of this prefix go (its data
            # lost), the others keep theirs.
            victim = next(iter(primaries.values()))
            mine = [k for k in victim.scan_iter(match=f"{prefix}:*", count=1000)]
            assert len(mine) > 1000  # ~a third of the 16,384 markers
            pipe = victim.pipeline(transaction=False)
            for key in mine:
                pipe.delete(key)  # one by one: the keys are in many slots
            pipe.execute()
            assert await store.lineage() is None
            # A new generation, not complete (one shard started empty), wins everywhere.
            second = Lineage.new(now=2000.0, complete=False)
            assert await store.start_lineage(second) == second
            third = Lineage.new(now=3000.0, complete=True)  # another worker, later
            assert await store.start_lineage(third) == second
            assert await store.lineage() == second
            done = await store.complete_lineage()
            assert done == Lineage(second.generation, second.since, True)
            assert await store.lineage() == done

    asyncio.run(scenario())
    # One marker per slot, each in its own slot.
    assert len({slot_of(layout.slot_lineage(t)) for t in slot_tags()}) == 16_384


def test_a_slot_migrating_under_traffic_is_followed_in_order(
    primaries: dict[str, Redis],
) -> None:
    """The slot of a card moves to another primary while batches run: ASK for keys already
    moved, TRYAGAIN while the card's two keys are split, then MOVED; every answer is the
    reference's."""
    prefix = f"it-move-{uuid.uuid4().hex[:8]}"
    layout = KeyLayout(card_key_secret=SECRET, prefix=prefix)
    card = "card-moving"
    slot = slot_of(layout.card(card).tx)
    source = _owner(primaries, slot)
    target = next(i for i in primaries if i != source)
    src, dst = primaries[source], primaries[target]
    # Ids whose id key falls in the moving slot (new keys: ASK once it migrates).
    ids = [f"tx-{n}" for n in range(400_000) if slot_of(layout.transaction_id(f"tx-{n}")) == slot]
    assert len(ids) >= 12

    def set_slot(state: str, node: str) -> None:
        for client in primaries.values():
            client.execute_command("CLUSTER", "SETSLOT", slot, state, node)

    def migrate(keys: list[str]) -> None:
        port = dst.connection_pool.connection_kwargs["port"]
        src.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)

    async def scenario() -> None:
        async with open_store("cluster", prefix, card_key_secret=SECRET) as store:
            memory = MemoryStore()
            n = 0

            async def both(k: int, moved_ids: bool) -> None:
                nonlocal n
                batch = []
                for _ in range(k):
                    tid = ids[n] if moved_ids else None
                    batch.append(_tx(n, card, f"t{n % 3}", tid))
                    batch.append(_tx(n, f"other-{n % 5}", f"t{n % 3}", f"o-{n}"))
                    n += 1
                got, want = await store.exchange(batch), await memory.exchange(batch)
                assert _same(got, want), n

            await both(3, moved_ids=False)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target)
            try:
                await both(3, moved_ids=True)  # new id keys: ASK to the importing node
                # The card's hash moved, its zset not: TRYAGAIN until the zset follows.
                card_keys = layout.card(card)
                migrate([card_keys.val])
                loop = asyncio.get_running_loop()
                loop.call_later(0.4, migrate, [card_keys.tx])
                await both(2, moved_ids=False)
                await both(2, moved_ids=True)  # both moved: ASK, the script on the target
                rest = [k for k in src.scan_iter(match=f"{prefix}:*", count=1000)
                        if slot_of(k.decode()) == slot]
                if rest:
                    migrate([k.decode() for k in rest])
            finally:
                set_slot("NODE", target)
            await both(3, moved_ids=False)  # MOVED: the map is read again
            assert store.cluster.nodes_manager.get_node_from_slot(slot).port == (
                dst.connection_pool.connection_kwargs["port"]
            )
            # Back where it was, through the same steps.
            src.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", target)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", source)
            keys = [k for k in dst.scan_iter(match=f"{prefix}:*", count=1000)
                    if slot_of(k.decode()) == slot]
            if keys:
                port = src.connection_pool.connection_kwargs["port"]
                dst.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
            set_slot("NODE", source)
            await both(2, moved_ids=True)

    before = {r: _refused(r) for r in ("ASK", "TRYAGAIN", "MOVED")}
    asyncio.run(scenario())
    followed = {r: _refused(r) - before[r] for r in before}
    assert all(followed.values()), followed  # each path was taken


@pytest.mark.parametrize(("mode", "nodes"), [("single", 1), ("cluster", 3), ("sentinel", 1)])
def test_the_memory_of_every_primary_is_read(mode: str, nodes: int) -> None:
    async def scenario() -> dict[str, tuple[int, int]]:
        async with open_store(mode, f"it-mem-{uuid.uuid4().hex[:8]}",
                              card_key_secret=SECRET) as store:
            return await store.memory()

    memory = asyncio.run(scenario())
    assert len(memory) == nodes
    assert all(used > 100_000 and limit >= 0 for used, limit in memory.values()), memory


def test_a_primary_without_the_scripts_gets_them_again(primaries: dict[str, Redis]) -> None:
    """A promoted replica has none of the scripts (Redis does not replicate its script
    cache): NOSCRIPT on that node loads them and the batch goes through."""

    async def scenario() -> tuple[object, object]:
        async with open_store("cluster", f"it-noscript-{uuid.uuid4().hex[:8]}",
                              card_key_secret=SECRET) as store:
            memory = MemoryStore()
            first = [_tx(i, f"c{i}", f"t{i}") for i in range(30)]
            await store.exchange(first)
            await memory.exchange(first)
            next(iter(primaries.values())).script_flush()  # one primary loses them
            again = [_tx(i, f"c{i % 30}", f"t{i % 7}") for i in range(30, 90)]
            return await store.exchange(again), await memory.exchange(again)

    got, want = asyncio.run(scenario())
    assert _same(got, want)
