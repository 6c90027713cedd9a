"""The worker's state store from its settings: one Redis, a Redis Cluster, or the primary
that Redis Sentinel names (``FRAUD_REDIS_MODE``).

``FRAUD_REDIS_URL`` is one address in single mode; in cluster mode one or more seed nodes,
in sentinel mode the sentinels, comma-separated. The user, password and scheme
(``rediss://`` = TLS, checked against ``FRAUD_REDIS_CA_FILE`` when set) of the first address
apply to every node; the sentinels get the TLS options and ``FRAUD_REDIS_SENTINEL_PASSWORD``.
Nothing is contacted when the store is built; :func:`check_redis` looks at every primary
before the worker starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from redis import Redis as SyncRedis
from redis import RedisCluster as SyncRedisCluster
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisClusterException, RedisError
from redis.sentinel import Sentinel as SyncSentinel

from service.cluster import ClusterStore
from service.commands import Call
from service.settings import DEVELOPMENT_CARD_KEY_SECRET, Settings, StartupError
from service.state import RedisStore

__all__ = [
    "EVICTING",
    "SentinelStore",
    "build_store",
    "check_redis",
    "refuse_the_development_secret",
]

log = logging.getLogger(__name__)

#: The socket timeout of every Redis connection: a batch's part must be answered in it.
TIMEOUT = 5.0


class SentinelStore(RedisStore):
    """:class:`~service.state.RedisStore` on the primary Redis Sentinel names. Before each
    round trip it asks the sentinels which server is the primary (a fraction of a
    millisecond): after a failover, idle connections to the old one are dropped, so a
    planned failover does not keep writing to a server that is about to be a replica. A
    demoted primary's READONLY is unavailability, retried like any other."""

    async def _round_trip(
        self,
        calls: Sequence[Call],
        arrived: Callable[[list[Any]], None] | None = None,
        part: int = 1 << 30,
    ) -> list[Any]:
        await self._pool.get_master_address()  # type: ignore[no-untyped-call]
        return await super()._round_trip(calls, arrived, part)

    @property
    def _pool(self) -> SentinelConnectionPool:
        pool = self.redis.connection_pool  # type: ignore[union-attr]
        assert isinstance(pool, SentinelConnectionPool)  # noqa: S101 - built so below
        return pool

    async def aclose(self) -> None:
        sentinels = self._pool.sentinel_manager.sentinels
        await super().aclose()
        for sentinel in sentinels:
            await sentinel.aclose()


def _addresses(s: Settings) -> list[SplitResult]:
    raw = s.redis_url.get_secret_value()
    urls = [urlsplit(u.strip()) for u in raw.split(",") if u.strip()]
    for url in urls if s.redis_mode != "single" else []:  # one Redis: redis-py reads it
        if url.scheme not in ("redis", "rediss") or not url.hostname:
            raise StartupError(
                f"FRAUD_REDIS_URL: {url.scheme}://{url.hostname or ''}... is not a "
                "redis://host:port or rediss://host:port address"
            )
    if not urls:
        raise StartupError("FRAUD_REDIS_URL is empty")
    if len(urls) > 1 and s.redis_mode == "single":
        raise StartupError(
            "FRAUD_REDIS_URL lists several addresses: set FRAUD_REDIS_MODE=cluster (seed "
            "nodes of a Redis Cluster) or sentinel (the sentinels)"
        )
    if s.redis_mode == "sentinel" and not s.redis_sentinel_master:
        raise StartupError("FRAUD_REDIS_MODE=sentinel needs FRAUD_REDIS_SENTINEL_MASTER")
    return urls


def _tls(s: Settings, first: SplitResult) -> dict[str, Any]:
    """TLS options: the CA of a rediss:// server (FRAUD_REDIS_CA_FILE)."""
    if first.scheme != "rediss":
        if s.redis_ca_file is not None:
            # redis:// connections take no ssl_* option (TypeError at the first command).
            raise StartupError("FRAUD_REDIS_CA_FILE needs a rediss:// FRAUD_REDIS_URL")
        return {}
    tls: dict[str, Any] = {"ssl": True}
    if s.redis_ca_file is not None:
        tls["ssl_ca_certs"] = str(s.redis_ca_file)
    return tls


def _options(s: Settings, first: SplitResult) -> dict[str, Any]:
    """Connection options of every data node: credentials, TLS, timeout."""
    options: dict[str, Any] = {"socket_timeout": TIMEOUT, **_tls(s, first)}
    if first.username:
        options["username"] = unquote(first.username)
    if first.password:
        options["password"] = unquote(first.password)
    return options


def _sentinel_options(s: Settings, first: SplitResult) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": TIMEOUT, **_tls(s, first)}
    if s.redis_sentinel_password is not None:
        options["password"] = s.redis_sentinel_password.get_secret_value()
    return options


def _port(url: SplitResult) -> int:
    return url.port or 6379


def _client(s: Settings) -> Redis | RedisCluster:
    urls = _addresses(s)
    options = _options(s, urls[0])
    if s.redis_mode == "cluster":
        nodes = [ClusterNode(u.hostname, _port(u)) for u in urls]  # type: ignore[arg-type]
        return RedisCluster(startup_nodes=nodes, **options)
    if s.redis_mode == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [(u.hostname, _port(u)) for u in urls], sentinel_kwargs=_sentinel_options(s, urls[0])
        )
        primary: Redis = sentinel.master_for(
            s.redis_sentinel_master or "", redis_class=Redis, **options
        )
        return primary
    tls = {k: v for k, v in options.items() if k.startswith("ssl_")}  # from_url sees rediss
    return Redis.from_url(s.redis_url.get_secret_value(), socket_timeout=TIMEOUT, **tls)


def refuse_the_development_secret(s: Settings) -> None:
    """The development card-key secret is public: with it anyone can compute the keyed hash
    of any card number, so only a development stack may use it."""
    if s.env != "development" and (
        s.card_key_secret.get_secret_value() == DEVELOPMENT_CARD_KEY_SECRET
    ):
        raise StartupError(
            "FRAUD_CARD_KEY_SECRET is not set (the development value is public: anyone could "
            "compute the Redis key of a card number). Set a secret of your own, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, and keep it: "
            "changing it starts every card from an empty history. For a local stack, "
            "FRAUD_ENV=development allows the development value."
        )


def build_store(s: Settings) -> RedisStore:
    """The worker's Redis client and store, from its settings (mode, addresses, TLS,
    card-key secret, prefix, id index, replicas to wait for): ``fraud-backfill`` writes
    through the same one. Contacts nothing.

    Raises :class:`StartupError` for the public development secret outside development,
    and for addresses that do not fit the mode."""
    refuse_the_development_secret(s)
    client = _client(s)
    kind: dict[str, type[RedisStore]] = {
        "single": RedisStore, "cluster": ClusterStore, "sentinel": SentinelStore
    }
    try:
        return kind[s.redis_mode](
            client,
            card_key_secret=s.card_key_secret.get_secret_value().encode(),
            prefix=s.redis_key_prefix,
            ids=s.unique_ids_across_cards,
            wait_replicas=s.wait_replicas,
            engine=s.engine,
        )
    except ValueError as exc:  # the key layout refuses the prefix
        raise StartupError(f"FRAUD_REDIS_KEY_PREFIX: {exc}") from exc


#: Redis maxmemory policies that drop keys: the feature state would vanish without a word
#: (every key of the store has a TTL, so the volatile-* policies take them too).
EVICTING = frozenset({
    "allkeys-lru", "allkeys-lfu", "allkeys-random",
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
})


def _primaries(s: Settings) -> list[SyncRedis]:
    """A synchronous client of each primary (the one Redis; every primary of the cluster;
    the primary the sentinels name)."""
    urls = _addresses(s)
    options = _options(s, urls[0])
    if s.redis_mode == "cluster":
        cluster = SyncRedisCluster(
            host=urls[0].hostname, port=_port(urls[0]), **options
        )
        try:
            primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
            return [SyncRedis(host=n.host, port=n.port, **options) for n in primaries]
        finally:
            cluster.close()
    if s.redis_mode == "sentinel":
        sentinel = SyncSentinel(  # type: ignore[no-untyped-call]
            [(u.hostname, _port(u)) for u in urls], sentinel_kwargs=_sentinel_options(s, urls[0])
        )
        name = s.redis_sentinel_master or ""
        return [sentinel.master_for(name, **options)]  # type: ignore[no-untyped-call]
    tls = {k: v for k, v in options.items() if k.startswith("ssl_")}
    return [SyncRedis.from_url(s.redis_url.get_secret_value(), socket_timeout=TIMEOUT, **tls)]


def check_redis(s: Settings) -> None:
    """Before the worker starts: refuse a Redis that evicts keys, on any primary. A Redis
    that does not answer yet, or does not let this user read its configuration (managed
    services often do not), is a warning: the batch path holds until Redis answers. Fewer
    replicas than ``FRAUD_REDIS_WAIT_REPLICAS`` is a warning too: batches hold until they
    are back, and say so on /health."""
    try:
        primaries = _primaries(s)
    except (RedisError, RedisClusterException) as exc:
        log.warning(
            "could not reach Redis to check it (%s: %s); the worker holds until it answers",
            type(exc).__name__,
            exc,
        )
        return
    for client in primaries:
        try:
            _check_primary(client, s)
        finally:
            client.close()


def _check_primary(client: SyncRedis, s: Settings) -> None:
    try:
        policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except RedisError as exc:
        log.warning(
            "could not read Redis' maxmemory-policy (%s: %s); make sure it is noeviction: "
            "an evicting Redis drops feature state silently",
            type(exc).__name__,
            exc,
        )
        return
    if policy in EVICTING:
        raise StartupError(
            f"Redis evicts keys (maxmemory-policy {policy}): cards and terminals would lose "
            "their history without a word. Set `maxmemory-policy noeviction` (the worker "
            "holds, and says so, when Redis is full) and give Redis the memory it needs."
        )
    if s.wait_replicas:
        try:
            replicas = int(client.info("replication").get("connected_slaves", 0))
        except RedisError:
            return
        if replicas < s.wait_replicas:
            log.warning(
                "a Redis primary has %d connected replicas, and FRAUD_REDIS_WAIT_REPLICAS "
                "asks for %d: batches will hold until enough replicas acknowledge them",
                replicas,
                s.wait_replicas,
            )
