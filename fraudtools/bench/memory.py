"""Memory: Redis bytes per card and per terminal after the run, projected to 10 million
cards (the worker's resident set is measured by the latency phase)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from redis import Redis

from fraudtools.bench.metrics import progress
from service.keys import KeyLayout

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench

__all__ = ["KeyKind", "days_used", "id_key_bytes", "kind_of", "layout", "phase"]


def layout(bench: Bench) -> KeyLayout:
    """The run's key names (for patterns and the id key: no card is hashed here)."""
    return KeyLayout(card_key_secret=b"bench", prefix=bench.prefix)


@dataclass(frozen=True, slots=True)
class KeyKind:
    """What a key of the state holds: ``kind`` "card", "t" (terminal) or "id" (the index
    of transaction ids); ``owner`` the card's or terminal's part of the name (shared by
    all its keys); ``part`` the last part ("tx", "val", "fraud", "known")."""

    kind: str
    owner: str
    part: str


def kind_of(name: str, keys: KeyLayout) -> KeyKind | None:
    """The kind of key ``name`` under ``keys``' root, or None for any other key."""
    for kind in ("card", "t", "id"):
        if name.startswith(keys.pattern(kind).removesuffix("*")):
            owner, part = name.rsplit(":", 1) if kind != "id" else (name, "")
            return KeyKind(kind, owner, part)
    return None


def phase(bench: Bench) -> None:
    """``redis_bytes_per_card``, ``redis_bytes_per_terminal`` and ``redis``: MEMORY USAGE
    of every key of the run's prefix, by kind (card, terminal, transaction-id index)."""
    keys_of = layout(bench)
    client = Redis.from_url(bench.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{bench.prefix}:*", count=5000))
        sizes = []
        for i in range(0, len(keys), 2000):
            pipe = client.pipeline(transaction=False)
            for k in keys[i: i + 2000]:
                pipe.memory_usage(k, samples=0)
            sizes += pipe.execute()
        card: dict[str, int] = {}
        terminal: dict[str, int] = {}
        card_bytes = terminal_bytes = id_bytes = id_keys = 0
        entries: dict[str, list[int]] = {"card": [], "terminal": []}
        tx_keys: dict[str, list[bytes]] = {"card": [], "terminal": []}
        for key, size in zip(keys, sizes, strict=True):
            found = kind_of(key.decode(), keys_of)
            if found is None:
                continue
            if found.kind == "id":  # the index of transaction ids: a cost of the cards
                id_bytes += size or 0
                id_keys += 1
            elif found.kind == "card":
                card[found.owner] = 1
                card_bytes += size or 0
                if found.part == "tx":
                    tx_keys["card"].append(key)
            else:
                terminal[found.owner] = 1
                terminal_bytes += size or 0
                if found.part == "tx":
                    tx_keys["terminal"].append(key)
        for which, names in tx_keys.items():
            pipe = client.pipeline(transaction=False)
            for k in names[:5000]:
                pipe.zcard(k)
            entries[which] = pipe.execute() if names else []
        used = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    cards, terminals = len(card), len(terminal)
    # The id index keeps a transaction's id until it is older than a card's history
    # (event time): the generated data are from 2018, so none is kept here. In steady
    # state a card carries one id key per transaction of its history: measure one.
    per_id = id_key_bytes(bench)
    held = float(np.mean(entries["card"])) if entries["card"] else 0.0
    per_card = card_bytes / cards + per_id * held if cards else None
    per_terminal = terminal_bytes / terminals if terminals else None
    ratio = terminals / cards if cards else 0
    delta = used - bench.redis_used_start
    projected = None
    if per_card and per_terminal:
        projected = {
            "cards": 10_000_000,
            "terminals": round(10_000_000 * ratio),
            "gb_memory_usage": round(10_000_000 * (per_card + ratio * per_terminal) / 1e9, 2),
            "gb_used_memory_delta": round(delta / cards * 10_000_000 / 1e9, 2),
            "assumption": ("the generated data's terminals per card and transactions per "
                           "card a day (about 1.9), a card's 33 days and a terminal's 40 "
                           "days of history"),
        }
    history_days = days_used(bench)
    r = bench.result
    r["redis_bytes_per_card"] = round(per_card) if per_card else None
    r["redis_bytes_per_terminal"] = round(per_terminal) if per_terminal else None
    r["redis"] = {
        "keys": len(keys), "cards": cards, "terminals": terminals,
        "bytes_cards": card_bytes, "bytes_terminals": terminal_bytes,
        "bytes_id_index": id_bytes, "id_keys": id_keys,
        "bytes_per_id_key": per_id,
        "mean_transactions_per_card_key": round(float(np.mean(entries["card"])), 1)
        if entries["card"] else None,
        "mean_transactions_per_terminal_key": round(float(np.mean(entries["terminal"])), 1)
        if entries["terminal"] else None,
        "used_memory_delta_bytes": delta,
        "history_days_loaded": history_days,
        "steady_state": history_days >= 40,
        "projection_10m_cards": projected,
        "method": "MEMORY USAGE (SAMPLES 0) of every key of the run's prefix; "
                  "used_memory delta from INFO memory (shared with any other client)",
    }
    progress(f"memory: {r['redis_bytes_per_card']} B/card, "
             f"{r['redis_bytes_per_terminal']} B/terminal over {history_days} days")


def id_key_bytes(bench: Bench) -> int:
    """MEMORY USAGE of one id-index key as the worker writes it (a 36-character id)."""
    client = Redis.from_url(bench.redis_url)
    key = layout(bench).transaction_id(str(uuid.uuid4()))
    try:
        client.set(key, "0123456789abcdef", px=60_000)
        return int(client.memory_usage(key, samples=0) or 0)
    finally:
        client.delete(key)
        client.close()


def days_used(bench: Bench) -> float:
    """Days of event time sent through the run's Redis prefix (history depth)."""
    records = bench.data.records
    first: Any = orjson.loads(records.values[0])["timestamp"]
    last: Any = orjson.loads(records.values[bench.cursor - 1])
    last = last.get("known_at") or last["timestamp"]
    span = datetime.fromisoformat(last) - datetime.fromisoformat(first)
    return round(span.total_seconds() / 86400, 1)
