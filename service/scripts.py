"""The Lua scripts of the Redis store (:mod:`service.state`), one per key group.

Each call touches the keys of one hash tag (a card's, or a terminal's), so it is atomic and
stays on one shard of a Redis Cluster. The steps, and their order, are
:class:`fraudcore.InMemoryStore`'s, so both stores keep the same entries; the size bounds
(``FeatureSpec.*_max_*``) come as an argument.
"""

from __future__ import annotations

__all__ = ["CARD", "LABEL", "TERMINAL"]


def _keep_newest(keep: str) -> str:
    """Lua: drop the oldest members of the sorted set KEYS[1] (and their fields of the hash
    KEYS[2]) until ``keep`` are left, 1,000 at a time; ``over`` = how many went."""
    return f"""local over = redis.call('ZCARD', KEYS[1]) - ({keep})
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  for i = 1, #oldest, 1000 do
    redis.call('HDEL', KEYS[2], unpack(oldest, i, math.min(i + 999, #oldest)))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
else
  over = 0
end
"""


# Both scripts trim the hash before the sorted set, and unpack at most 1,000 values at a time
# (Lua's C stack takes ~8,000): a trim never stops half-way, whatever a key's size, and a
# trim that fails leaves the sorted set listing what is still to remove.

# KEYS: card zset, card hash. ARGV: id, time, content, trim at or before, ttl, keep at most.
# Returns {-1} on a conflicting duplicate, else {duplicate flag, the card's other contents
# concatenated, entries dropped by the size bound} (contents in no particular order: HVALS,
# the cheapest read, as one string, so a long history costs one reply element to parse; the
# worker sorts it). The steps are fraudcore.InMemoryStore's, in its order.
CARD = """
local id, content = ARGV[1], ARGV[3]
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
for i = 1, #old, 1000 do
  redis.call('HDEL', KEYS[2], unpack(old, i, math.min(i + 999, #old)))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4]) end
local seen = redis.call('HGET', KEYS[2], id)
local duplicate = 0
if seen then
  if seen ~= content then return {-1} end
  duplicate = 1
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
end
""" + _keep_newest("tonumber(ARGV[6]) - 1") + """local history = redis.call('HVALS', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], id)
redis.call('HSET', KEYS[2], id, content)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {duplicate, table.concat(history), over}
"""

# KEYS: terminal zset, fraud zset, known hash. ARGV: id, time, trim at or before (labels
# after it are read), ttl, keep at most, then (low, high) pairs. Returns {added, count...,
# "time,known,time,known...", entries dropped by the size bound}.
TERMINAL = """
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) else over = 0 end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for i = 1, #old, 1000 do
  redis.call('HDEL', KEYS[3], unpack(old, i, math.min(i + 999, #old)))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3]) end
local out = {added}
for i = 6, #ARGV, 2 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[i], ARGV[i + 1])
end
local frauds = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[3], '+inf', 'WITHSCORES')
local labels = {}
for first = 1, #frauds, 2000 do
  local ids = {}
  for i = first, math.min(first + 1999, #frauds), 2 do ids[#ids + 1] = frauds[i] end
  local known = redis.call('HMGET', KEYS[3], unpack(ids))
  for j = 1, #ids do
    labels[#labels + 1] = frauds[first + 2 * j - 1]
    labels[#labels + 1] = known[j]
  end
end
out[#out + 1] = table.concat(labels, ',')
out[#out + 1] = over
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return out
"""

# KEYS: fraud zset, known hash. ARGV: id, time, known at, ttl, keep at most. (Trimmed by
# age in TERMINAL.) Returns the labels dropped by the size bound.
LABEL = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
""" + _keep_newest("tonumber(ARGV[5])") + """redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return over
"""
