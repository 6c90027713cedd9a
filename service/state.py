"""Card and terminal state in Redis, with the semantics of ``fraudcore.InMemoryStore``.

One batch costs one round trip: a pipeline with, for each transaction, one Lua call on
the card's keys and one on the terminal's keys (each Lua call is atomic, and each touches
keys of a single hash tag, so it stays on one shard of a Redis Cluster). Redis runs them
in order, so a card's second transaction in a batch sees its first.

Keys (``P`` = prefix and feature-spec version)::

    P:c:{<hmac of card id>}:tx     ZSET  transaction id -> time
    P:c:{<hmac of card id>}:val    HASH  transaction id -> "time,amount,crc32(terminal)" (the
                                         content, for
                                         idempotency and the amounts)
    P:t:{<terminal id>}:tx         ZSET  transaction id -> time
    P:t:{<terminal id>}:fraud      ZSET  fraud transaction id -> its time
    P:t:{<terminal id>}:known      HASH  fraud transaction id -> when the label was known

Every key is trimmed to the spec's retention, relative to the transaction being scored,
and expires after it, so memory is bounded. Card ids appear only as keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from fraudcore import SPEC, CardHistory, FeatureSpec, LabelEvent, TerminalHistory, Transaction
from fraudcore.errors import DuplicateConflict
from fraudcore.features import terminal_windows

__all__ = ["Exchange", "RedisStore"]

# KEYS: card zset, card hash. ARGV: id, time, content, read after, trim at or before, ttl.
# Returns {-1} on a conflicting duplicate, else {duplicate flag, "time,amount,tag,time,..."}
# in no particular order (HVALS: the cheapest read), as one string, so a long history costs
# one reply element to parse; the worker sorts it.
_CARD = """
local id, content = ARGV[1], ARGV[3]
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
  redis.call('HDEL', KEYS[2], unpack(old))
end
local seen = redis.call('HGET', KEYS[2], id)
local duplicate = 0
if seen then
  if seen ~= content then return {-1} end
  duplicate = 1
  redis.call('HDEL', KEYS[2], id)
end
local history = redis.call('HVALS', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], id)
redis.call('HSET', KEYS[2], id, content)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {duplicate, table.concat(history, ',')}
"""

# KEYS: terminal zset, fraud zset, known hash. ARGV: id, time, trim at or before, ttl,
# labels after, then (low, high) pairs. Returns {added, count..., "time,known,time,known..."}.
_TERMINAL = """
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
  redis.call('HDEL', KEYS[3], unpack(old))
end
local out = {added}
for i = 6, #ARGV, 2 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[i], ARGV[i + 1])
end
local frauds = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[5], '+inf', 'WITHSCORES')
local labels = {}
if #frauds > 0 then
  local ids = {}
  for i = 1, #frauds, 2 do ids[#ids + 1] = frauds[i] end
  local known = redis.call('HMGET', KEYS[3], unpack(ids))
  for i = 1, #ids do
    labels[#labels + 1] = frauds[2 * i]
    labels[#labels + 1] = known[i]
  end
end
out[#out + 1] = table.concat(labels, ',')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return out
"""

# KEYS: fraud zset, known hash. ARGV: id, time, known at, ttl. (Trimmed by _TERMINAL.)
_LABEL = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""


def _floats(joined: bytes) -> list[float]:
    return [float(x) for x in joined.split(b",")] if joined else []


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the store answers for one transaction."""

    card: CardHistory
    terminal: TerminalHistory
    duplicate: bool


class RedisStore:
    """The feature state of cards and terminals, shared by every worker."""

    def __init__(
        self,
        redis: Redis,
        *,
        card_key_secret: bytes,
        prefix: str = "fraud",
        spec: FeatureSpec = SPEC,
    ) -> None:
        self.redis = redis
        self.spec = spec
        self._secret = card_key_secret
        self._prefix = f"{prefix}:v{spec.version}"
        self._card = redis.register_script(_CARD)
        self._terminal = redis.register_script(_TERMINAL)
        self._label = redis.register_script(_LABEL)
        self._card_ttl = str(int(spec.card_retention_seconds * 1000))
        self._terminal_ttl = str(int(spec.terminal_retention_seconds * 1000))

    def card_tag(self, card_id: str) -> str:
        """The keyed hash that stands for a card id in Redis (and in logs)."""
        return hmac.new(self._secret, card_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _card_keys(self, card_id: str) -> list[str]:
        base = f"{self._prefix}:c:{{{self.card_tag(card_id)}}}"
        return [f"{base}:tx", f"{base}:val"]

    def _terminal_keys(self, terminal_id: str) -> list[str]:
        base = f"{self._prefix}:t:{{{terminal_id}}}"
        return [f"{base}:tx", f"{base}:fraud", f"{base}:known"]

    async def exchange(
        self, transactions: Sequence[Transaction]
    ) -> list[Exchange | DuplicateConflict]:
        """For each transaction in order: its histories before it, then it is recorded."""
        if not transactions:
            return []
        spec = self.spec
        pipe = self.redis.pipeline(transaction=False)
        for tx in transactions:
            t = tx.epoch
            card_trim = t - spec.card_retention_seconds
            terminal_trim = t - spec.terminal_retention_seconds
            await self._card(
                keys=self._card_keys(tx.card_id),
                args=[
                    tx.transaction_id,
                    repr(t),
                    f"{t!r},{tx.amount!r},{zlib.crc32(tx.terminal_id.encode())}",
                    repr(card_trim),
                    repr(card_trim),
                    self._card_ttl,
                ],
                client=pipe,
            )
            bounds = [repr(x) for window in terminal_windows(t, spec) for x in window]
            await self._terminal(
                keys=self._terminal_keys(tx.terminal_id),
                args=[
                    tx.transaction_id,
                    repr(t),
                    repr(terminal_trim),
                    self._terminal_ttl,
                    repr(terminal_trim),
                    *bounds,
                ],
                client=pipe,
            )
        replies = await pipe.execute()
        results: list[Exchange | DuplicateConflict] = []
        undo = []
        windows = len(spec.terminal_windows_days)
        for i, tx in enumerate(transactions):
            card_reply, terminal_reply = replies[2 * i], replies[2 * i + 1]
            if card_reply[0] == -1:
                results.append(
                    DuplicateConflict(
                        f"transaction {tx.transaction_id!r} was seen before with another time, "
                        "amount or terminal; the first one stands. Give a corrected transaction "
                        "a new id."
                    )
                )
                if terminal_reply[0] == 1:
                    undo.append(tx)
                continue
            card_values = _floats(card_reply[1])  # time, amount, terminal tag, ...
            card = sorted(zip(card_values[0::3], card_values[1::3], strict=True))
            frauds = _floats(terminal_reply[1 + windows])
            results.append(
                Exchange(
                    card=CardHistory([ts for ts, _ in card], [amount for _, amount in card]),
                    terminal=TerminalHistory(
                        counts=terminal_reply[1 : 1 + windows],
                        fraud_timestamps=frauds[0::2],
                        fraud_known_at=frauds[1::2],
                    ),
                    duplicate=bool(card_reply[0]),
                )
            )
        if undo:
            # A conflicting duplicate must not count at a terminal it was never made at.
            pipe = self.redis.pipeline(transaction=False)
            for tx in undo:
                pipe.zrem(self._terminal_keys(tx.terminal_id)[0], tx.transaction_id)
            await pipe.execute()
        return results

    async def add_labels(self, labels: Sequence[LabelEvent]) -> None:
        """Record fraud labels on their terminals (first label of a transaction wins)."""
        if not labels:
            return
        pipe = self.redis.pipeline(transaction=False)
        for label in labels:
            keys = self._terminal_keys(label.terminal_id)
            await self._label(
                keys=keys[1:],
                args=[
                    label.transaction_id,
                    repr(label.epoch),
                    repr(label.known_epoch),
                    self._terminal_ttl,
                ],
                client=pipe,
            )
        await pipe.execute()
