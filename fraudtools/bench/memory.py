"""Memory: Redis bytes per card and per terminal after the run, projected to 10 million
cards (the worker's resident set is measured by the latency phase)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
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


def _scan(client: Redis, prefix: str) -> tuple[list[bytes], list[int | None]]:
    """The keys of ``prefix`` on one server, and their MEMORY USAGE (SAMPLES 0)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
    sizes: list[int | None] = []
    for i in range(0, len(keys), 2000):
        pipe = client.pipeline(transaction=False)
        for k in keys[i: i + 2000]:
            pipe.memory_usage(k, samples=0)
        sizes += pipe.execute()
    return keys, sizes


def _zcards(client: Redis, names: list[bytes]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for k in names:
        pipe.zcard(k)
    return [int(n) for n in pipe.execute()] if names else []


@dataclass
class _Tally:
    """Bytes and owners of the run's keys, by kind."""

    cards: set[str] = field(default_factory=set)
    terminals: set[str] = field(default_factory=set)
    card_bytes: int = 0
    terminal_bytes: int = 0
    id_bytes: int = 0
    id_keys: int = 0

    def add(self, keys: list[bytes], sizes: list[int | None], layout: KeyLayout
            ) -> dict[str, list[bytes]]:
        """Count one server's keys; its card and terminal ``tx`` keys."""
        tx_keys: dict[str, list[bytes]] = {"card": [], "terminal": []}
        for key, size in zip(keys, sizes, strict=True):
            found = kind_of(key.decode(), layout)
            if found is None:
                continue
            if found.kind == "id":  # the index of transaction ids: a cost of the cards
                self.id_bytes += size or 0
                self.id_keys += 1
            elif found.kind == "card":
                self.cards.add(found.owner)
                self.card_bytes += size or 0
                if found.part == "tx":
                    tx_keys["card"].append(key)
            else:
                self.terminals.add(found.owner)
                self.terminal_bytes += size or 0
                if found.part == "tx":
                    tx_keys["terminal"].append(key)
        return tx_keys


def phase(bench: Bench) -> None:
    """``redis_bytes_per_card``, ``redis_bytes_per_terminal`` and ``redis``: MEMORY USAGE
    of every key of the run's prefix, by kind (card, terminal, transaction-id index); on
    a cluster, every primary's keys."""
    tally = _Tally()
    entries: dict[str, list[int]] = {"card": [], "terminal": []}
    n_keys = 0
    with bench.redis.primary_clients() as clients:
        for _, client in clients:
            keys, sizes = _scan(client, bench.prefix)
            n_keys += len(keys)
            tx_keys = tally.add(keys, sizes, layout(bench))
            for which, names in tx_keys.items():  # history lengths, 5,000 keys in all
                entries[which] += _zcards(client, names[: 5000 // len(clients)])
    used = bench.redis.used_memory()
    card_bytes, terminal_bytes = tally.card_bytes, tally.terminal_bytes
    id_bytes, id_keys = tally.id_bytes, tally.id_keys
    cards, terminals = len(tally.cards), len(tally.terminals)
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
        "keys": n_keys, "cards": cards, "terminals": terminals,
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
        "method": "MEMORY USAGE (SAMPLES 0) of every key of the run's prefix (on a cluster, "
                  "of every primary); used_memory delta from INFO memory, summed over the "
                  "primaries (shared with any other client)",
    }
    progress(f"memory: {r['redis_bytes_per_card']} B/card, "
             f"{r['redis_bytes_per_terminal']} B/terminal over {history_days} days")


def id_key_bytes(bench: Bench) -> int:
    """MEMORY USAGE of one id-index key as the worker writes it (a 36-character id)."""
    key = layout(bench).transaction_id(str(uuid.uuid4()))
    client = bench.redis.client_for(key)  # on a cluster: the primary of its slot
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
