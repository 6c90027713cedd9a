"""The allow and block lists in Redis: one hash per list, its version counter beside it.

Keys (:class:`service.keys.KeyLayout`; ``R`` = ``FRAUD_REDIS_KEY_PREFIX``)::

    R:list:{<name>}       HASH  value -> expiry (Unix seconds; "0": none)
    R:list:{<name>}:why   HASH  value -> {"reason", "by", "at", "sent_at"} (JSON)
    R:list:{<name>}:meta  HASH  field -> the field the list holds; version -> its counter
    R:lists               SET   the names of the lists ever changed

A card list's values are the keyed hashes the state store uses for card keys
(:meth:`service.keys.KeyLayout.card_tag`): a card id never reaches Redis in clear. A list's
three keys share the hash tag ``{<name>}``, so each change is one Lua call on one shard of a
Redis Cluster (single Redis and Sentinel alike): the entry, its reason and the version move
together, or not at all. The version counts the changes that changed something: adding an
entry again with the same expiry, or removing one that is not there, changes nothing.

Every Redis fault comes out as :class:`~fraudcore.errors.StateUnavailable`, as from the
state store: the caller holds and tries again, never dead-letters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from redis.asyncio import Redis, RedisCluster

from service.keys import KeyLayout
from service.lists import CARD_FIELD, ListChange, ListTable
from service.state import REDIS_FAULTS, unavailable

__all__ = ["Applied", "Entry", "RedisLists"]

#: Refused a change (the list holds another field), or did it (changed something or not).
Outcome = Literal["changed", "unchanged", "other-field", "full"]

# KEYS: entries, why, meta. ARGV: value, expiry, why (JSON), field, most entries, now.
_ADD = """
local field = redis.call('HGET', KEYS[3], 'field')
if field and field ~= ARGV[4] then return {'other-field', field} end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local e = tonumber(all[i + 1])
    if e > 0 and e <= tonumber(ARGV[6]) then
      redis.call('HDEL', KEYS[1], all[i])
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
  local n = redis.call('HLEN', KEYS[1])
  if n >= tonumber(ARGV[5]) then return {'full', tostring(n)} end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], 'field', ARGV[4])
if old == ARGV[2] then
  return {'unchanged', tostring(redis.call('HGET', KEYS[3], 'version') or 0)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'changed', tostring(redis.call('HINCRBY', KEYS[3], 'version', 1))}
"""
# KEYS: entries, why, meta. ARGV: value, field.
_REMOVE = """
local field = redis.call('HGET', KEYS[3], 'field')
if field and field ~= ARGV[2] then return {'other-field', field} end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return {'unchanged', tostring(redis.call('HGET', KEYS[3], 'version') or 0)}
end
return {'changed', tostring(redis.call('HINCRBY', KEYS[3], 'version', 1))}
"""
# KEYS: entries, meta. The version, the field and the entries, read together (a read-only
# script: it runs on a Redis out of memory too).
_LOAD = """#!lua flags=no-writes
return {redis.call('HGET', KEYS[2], 'version') or '0', redis.call('HGET', KEYS[2], 'field') or '',
        redis.call('HGETALL', KEYS[1])}
"""
# KEYS: entries, why. ARGV: value, expiry seen, ... (removed only if the expiry is the same).
_FORGET = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""
_FORGET_CHUNK = 500  # entries per call: a call blocks Redis while it runs


def _expiry(seconds: float) -> str:
    return "0" if not seconds else repr(round(seconds, 3))


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, slots=True)
class Applied:
    """What a change did: ``outcome``, and the list's version after it (or, refused, the
    field the list holds, or how many entries it has)."""

    outcome: Outcome
    detail: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry as ``show`` prints it: the key (a card list: the keyed hash), its expiry
    (0: none), and why it was listed."""

    key: str
    expires_at: float
    why: Mapping[str, Any]


class RedisLists:
    """The lists under one prefix, on the worker's Redis client (one Redis, a Redis Cluster
    or the primary Sentinel names): a :class:`~service.lists.ListSource`, the change path's
    writer and the CLI's reader."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        keys: KeyLayout,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_entries = max_entries
        self.clock = clock

    def key_of(self, field: str, value: str) -> str:
        """What the list stores for ``value`` of ``field``: a card id's keyed hash, or the
        value."""
        return self.keys.card_tag(value) if field == CARD_FIELD else value

    async def _call(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.redis.eval(script, len(keys), *keys, *args)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc

    async def apply(self, change: ListChange, field: str) -> Applied:
        """Apply one change to a list of ``field`` values (idempotent: the same change
        again changes nothing). Raises StateUnavailable."""
        k = self.keys.list_keys(change.list)
        key = self.key_of(field, change.value)
        if change.op == "add":
            why = orjson.dumps({
                "reason": change.reason, "by": change.by,
                "at": datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds"),
                "sent_at": (datetime.fromtimestamp(change.sent_at, UTC).isoformat(
                    timespec="seconds") if change.sent_at is not None else None),
            })
            reply = await self._call(_ADD, [k.entries, k.why, k.meta], [
                key, _expiry(change.expires_at), why, field, self.max_entries, repr(self.clock()),
            ])
        else:
            reply = await self._call(_REMOVE, [k.entries, k.why, k.meta], [key, field])
        outcome, detail = _text(reply[0]), _text(reply[1])
        if outcome in ("changed", "unchanged"):
            try:
                await self.redis.sadd(self.keys.lists, change.list)
            except REDIS_FAULTS as exc:
                raise unavailable(exc) from exc
        return Applied(outcome, detail)  # type: ignore[arg-type]

    # -- reading: the worker's ListSource --------------------------------------------------

    async def names(self) -> list[str]:
        try:
            members = await self.redis.smembers(self.keys.lists)
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        return sorted(_text(m) for m in members)

    async def versions(self, names: Sequence[str]) -> dict[str, int]:
        if not names:
            return {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hget(self.keys.list_keys(name).meta, "version")
                replies = await pipe.execute()
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        return {n: int(r) if r is not None else 0 for n, r in zip(names, replies, strict=True)}

    async def load(self, name: str) -> ListTable:
        k = self.keys.list_keys(name)
        version, field, flat = await self._call(_LOAD, [k.entries, k.meta], [])
        entries = {_text(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}
        return ListTable(name, _text(field), int(version), entries)

    async def forget_expired(self, name: str, expired: Mapping[str, float]) -> int:
        k = self.keys.list_keys(name)
        pairs = [(key, _expiry(e)) for key, e in expired.items()]
        removed = 0
        for i in range(0, len(pairs), _FORGET_CHUNK):
            args = [x for pair in pairs[i : i + _FORGET_CHUNK] for x in pair]
            removed += int(await self._call(_FORGET, [k.entries, k.why], args))
        return removed

    # -- reading: the CLI ------------------------------------------------------------------

    async def field_of(self, name: str) -> str:
        """The field list ``name`` holds (``""``: never changed)."""
        try:
            raw = await self.redis.hget(self.keys.list_keys(name).meta, "field")
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        return _text(raw) if raw is not None else ""

    async def entries(self, name: str, key: str | None = None) -> list[Entry]:
        """The list's entries (expired ones too), or only ``key``'s, with why."""
        k = self.keys.list_keys(name)
        try:
            if key is None:
                held = await self.redis.hgetall(k.entries)
                whys = await self.redis.hgetall(k.why)
            else:
                expiry = await self.redis.hget(k.entries, key)
                held = {} if expiry is None else {key.encode(): expiry}
                why = await self.redis.hget(k.why, key)
                whys = {} if why is None else {key.encode(): why}
        except REDIS_FAULTS as exc:
            raise unavailable(exc) from exc
        reasons = {_text(k_): orjson.loads(v) for k_, v in whys.items()}
        return sorted(
            (Entry(_text(k_), float(v), reasons.get(_text(k_), {})) for k_, v in held.items()),
            key=lambda e: e.key,
        )
