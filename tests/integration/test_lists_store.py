"""The lists' Redis store (service.list_store) on a real Redis, a real Redis Cluster and a
real Sentinel setup: changes applied atomically with their version, idempotent, refused when
the list holds another field or is full; a card list holds keyed hashes, never a card id;
expired entries removed only while they still have the expiry seen."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.list_store import RedisLists
from service.lists import ListChange

from .conftest import open_store

CARD = "4000111122223333"
SECRET = b"a card key of the test's own"


async def _keys_and_contents(store: object, prefix: str) -> bytes:
    """Every key of the prefix and everything it holds, as one byte string."""
    client = store.redis  # type: ignore[attr-defined]
    found = b""
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        found += key
        kind = await client.type(key)
        if kind in (b"hash", "hash"):
            for k, v in (await client.hgetall(key)).items():
                found += b" " + k + b"=" + v
        elif kind in (b"set", "set"):
            found += b" " + b" ".join(await client.smembers(key))
    return found


@pytest.mark.parametrize("mode", ["single", "cluster", "sentinel"])
def test_changes_versions_and_reads_on_every_redis_mode(mode: str) -> None:
    prefix = f"it-lists-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with open_store(mode, prefix, card_key_secret=SECRET) as store:
            clock = [1_000.0]
            lists = RedisLists(store.redis, keys=store.keys, max_entries=2,
                               clock=lambda: clock[0])
            assert await lists.names() == []
            assert await lists.versions(["blocked_cards"]) == {"blocked_cards": 0}
            add = ListChange("blocked_cards", "add", CARD, reason="chargeback", by="it")
            assert (await lists.apply(add, "card_id")).outcome == "changed"
            assert (await lists.apply(add, "card_id")).outcome == "unchanged"  # idempotent
            later = ListChange("blocked_cards", "add", CARD, expires_at=2_000.0)
            assert (await lists.apply(later, "card_id")).detail == "2"  # a new expiry: changed
            terminals = ListChange("trusted_terminals", "add", "T-{1}")
            await lists.apply(terminals, "terminal_id")
            assert await lists.names() == ["blocked_cards", "trusted_terminals"]
            assert await lists.versions(["blocked_cards", "trusted_terminals"]) == {
                "blocked_cards": 2, "trusted_terminals": 1}

            table = await lists.load("blocked_cards")
            tag = store.card_tag(CARD)
            assert (table.field, table.version, dict(table.entries)) == (
                "card_id", 2, {tag: 2000.0})
            [entry] = await lists.entries("blocked_cards", lists.key_of("card_id", CARD))
            assert (entry.key, entry.expires_at, entry.why["by"]) == (tag, 2000.0, "")
            assert await lists.field_of("blocked_cards") == "card_id"
            assert CARD.encode() not in await _keys_and_contents(store, prefix)

            # another field than the list holds: refused, nothing written
            wrong = await lists.apply(ListChange("blocked_cards", "add", "T-1"), "terminal_id")
            assert (wrong.outcome, wrong.detail) == ("other-field", "card_id")
            # full (2 entries at most), unless an expired entry can make room
            await lists.apply(ListChange("blocked_cards", "add", "4000", expires_at=1_500.0),
                              "card_id")
            full = await lists.apply(ListChange("blocked_cards", "add", "4001"), "card_id")
            assert (full.outcome, full.detail) == ("full", "2")
            clock[0] = 1_600.0  # 4000's entry has expired: room is made
            assert (await lists.apply(ListChange("blocked_cards", "add", "4001"),
                                      "card_id")).outcome == "changed"
            assert set((await lists.load("blocked_cards")).entries) == {
                tag, store.card_tag("4001")}

            # expired entries are removed only while they hold the expiry seen
            removed = await lists.forget_expired("blocked_cards", {tag: 1999.0})
            assert removed == 0 and tag in (await lists.load("blocked_cards")).entries
            assert await lists.forget_expired("blocked_cards", {tag: 2000.0}) == 1
            assert tag not in (await lists.load("blocked_cards")).entries
            assert await lists.entries("blocked_cards", tag) == []

            remove = ListChange("trusted_terminals", "remove", "T-{1}")
            assert (await lists.apply(remove, "terminal_id")).outcome == "changed"
            assert (await lists.apply(remove, "terminal_id")).outcome == "unchanged"
            assert (await lists.load("trusted_terminals")).entries == {}

    asyncio.run(scenario())
