"""Fixtures for tests against the real stack: Kafka and Redis from `make up`, and the real
worker process (``python -m service worker``), each test with its own topics, consumer
group and Redis key prefix.

A stack that is not running fails these tests (it never skips them): run ``make up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.exceptions import RedisError

from fraudtools.isolated import IsolatedWorker
from fraudtools.kafka_admin import PARTITIONS, create_topics, delete_topics
from fraudtools.worker_process import WorkerProcess, free_port
from service.cluster import ClusterStore
from service.keys import KeyLayout
from service.state import RedisStore
from service.stores import SentinelStore

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("FRAUD_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("FRAUD_REDIS_URL", "redis://127.0.0.1:6379/0")
#: `make up-cluster`: 3 primaries and 3 replicas (stack/redis-cluster.sh).
CLUSTER_URL = os.environ.get("FRAUD_TEST_CLUSTER_URL", "redis://127.0.0.1:7100")
#: `make up-sentinel`: a primary, a replica and three sentinels (stack/redis-sentinel.sh).
SENTINEL_URL = os.environ.get(
    "FRAUD_TEST_SENTINEL_URL",
    "redis://127.0.0.1:7126,redis://127.0.0.1:7127,redis://127.0.0.1:7128",
)
SENTINEL_MASTER = os.environ.get("FRAUD_TEST_SENTINEL_MASTER", "fraud")


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def stack() -> None:
    redis_host = REDIS_URL.split("//", 1)[1].split("/", 1)[0]
    missing = [
        name for name, addr in (("Kafka", BOOTSTRAP), ("Redis", redis_host)) if not _reachable(addr)
    ]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not reachable: start the stack with `make up`")


def require(what: str, url: str, start: str) -> None:
    """Fail (never skip) a test whose Redis setup is not running."""
    hosts = [u.split("//", 1)[1].split("/", 1)[0] for u in url.split(",")]
    if not any(_reachable(h) for h in hosts):
        pytest.fail(f"{what} not reachable at {url}: start it with `{start}`")


@pytest.fixture
def cluster_url() -> str:
    require("the Redis Cluster", CLUSTER_URL, "make up-cluster")
    return CLUSTER_URL


@pytest.fixture
def sentinel_url() -> str:
    require("the Redis Sentinel setup", SENTINEL_URL, "make up-sentinel")
    return SENTINEL_URL


def redis_env(mode: str) -> dict[str, str]:
    """The worker's settings for ``mode`` on the local setups (`make up-cluster`,
    `make up-sentinel`); single mode: the shared Redis, as the run sets it."""
    if mode == "cluster":
        require("the Redis Cluster", CLUSTER_URL, "make up-cluster")
        return {"FRAUD_REDIS_MODE": "cluster", "FRAUD_REDIS_URL": CLUSTER_URL}
    if mode == "sentinel":
        require("the Redis Sentinel setup", SENTINEL_URL, "make up-sentinel")
        return {"FRAUD_REDIS_MODE": "sentinel", "FRAUD_REDIS_URL": SENTINEL_URL,
                "FRAUD_REDIS_SENTINEL_MASTER": SENTINEL_MASTER}
    return {}


def remove_keys(mode: str, prefix: str) -> None:
    """Delete a run's keys on the cluster or the Sentinel primary."""

    async def remove() -> None:
        async with open_store(mode, prefix, card_key_secret=b"cleanup only"):
            pass  # the store removes its prefix's keys on the way out

    asyncio.run(remove())


@contextlib.asynccontextmanager
async def open_store(mode: str, prefix: str, **kwargs: Any) -> AsyncIterator[RedisStore]:
    """A store of ``mode`` (single, cluster, sentinel) on the local setups, under its own
    prefix; its keys are removed afterwards."""
    client: Any
    if mode == "cluster":
        require("the Redis Cluster", CLUSTER_URL, "make up-cluster")
        client = AsyncRedisCluster.from_url(CLUSTER_URL, socket_timeout=5.0)
        store: RedisStore = ClusterStore(client, prefix=prefix, **kwargs)
    elif mode == "sentinel":
        require("the Redis Sentinel setup", SENTINEL_URL, "make up-sentinel")
        sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]))
                     for h in (u.split("//", 1)[1] for u in SENTINEL_URL.split(","))]
        client = AsyncSentinel(sentinels, socket_timeout=2.0).master_for(
            SENTINEL_MASTER, socket_timeout=5.0
        )
        store = SentinelStore(client, prefix=prefix, **kwargs)
    else:
        client = AsyncRedis.from_url(REDIS_URL, socket_timeout=5.0)
        store = RedisStore(client, prefix=prefix, **kwargs)
    try:
        yield store
    finally:
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        finally:
            await store.aclose()


@dataclass
class Run:
    """One test's own names: topics ``it-<id>-*``, consumer group and Redis key prefix
    ``it-<id>`` (an :class:`~fraudtools.isolated.IsolatedWorker` on the local stack)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def isolated(self) -> IsolatedWorker:
        return IsolatedWorker.named(
            f"it-{self.run_id}",
            bootstrap=BOOTSTRAP,
            redis_url=REDIS_URL,
            partitions=PARTITIONS,
            model_dir=ROOT / "models",
            data_dir=Path(f"/tmp/fraud-it/{self.run_id}"),
            settings={"FRAUD_BATCH_WAIT_SECONDS": "0.01"},
        )

    def topic(self, name: str) -> str:
        return self.isolated.topic(name)

    @property
    def prefix(self) -> str:
        return self.isolated.prefix

    @property
    def keys(self) -> KeyLayout:
        """The worker's Redis key names (patterns only: the card key secret is not it)."""
        return KeyLayout(card_key_secret=b"patterns only", prefix=self.prefix)

    def env(self, **overrides: str) -> dict[str, str]:
        return self.isolated.env(**overrides)

    @property
    def topics(self) -> list[str]:
        return self.isolated.topics


async def _admin(action: str, names: list[str]) -> None:
    await (create_topics if action == "create" else delete_topics)(BOOTSTRAP, names)


@pytest.fixture
def run() -> Iterator[Run]:
    """Fresh topics and key prefix; removed afterwards."""
    r = Run()
    asyncio.run(_admin("create", r.topics))
    yield r
    remove(r)


def remove(r: Run) -> None:
    """Delete a run's topics and its Redis keys."""
    asyncio.run(_admin("delete", r.topics))
    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{r.prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class Worker(WorkerProcess):
    """The real worker process; a start-up failure fails the test with the worker's log."""

    def wait_ready(self, timeout: float = 90.0) -> Worker:
        try:
            super().wait_ready(timeout)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        return self


@pytest.fixture
def worker(run: Run, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(run.env(), tmp_path / "worker.log").start().wait_ready()
    yield w
    w.stop()


async def consume(
    topic: str, *, until: int, timeout: float = 120.0, quiet: float = 2.0
) -> list[dict]:
    """Read ``topic`` from the beginning until ``until`` records, then on until nothing
    new came for ``quiet`` seconds (so a copy beyond the ``until``-th shows up: a test of
    "decided once" sees it), or the timeout."""
    return await read_records(topic, until=until, quiet=quiet, timeout=timeout)


async def drain(topic: str, *, quiet: float = 3.0, timeout: float = 120.0) -> list[dict]:
    """Read ``topic`` from the beginning until nothing new arrives for ``quiet`` seconds."""
    return await read_records(topic, quiet=quiet, timeout=timeout)


async def read_records(
    topic: str,
    *,
    until: int | None = None,
    quiet: float | None = None,
    timeout: float,
    **client: Any,
) -> list[dict]:
    """``topic`` from the beginning, as JSON: until ``until`` records (and then, with
    ``quiet`` too, until nothing new came for ``quiet`` seconds, so extra copies show up),
    or until ``quiet`` seconds without a record, or the timeout. ``client``: aiokafka
    options (default: the local broker)."""
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        **(client or {"bootstrap_servers": BOOTSTRAP}),
    )
    await consumer.start()
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            enough = until is not None and len(records) >= until
            still = quiet is not None and time.monotonic() - last >= quiet
            if (enough and (quiet is None or still)) or (until is None and still):
                break
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                records += [orjson.loads(m.value) for m in messages]
                last = time.monotonic()
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (its memory limit is changed)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url, timeout=10)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def wait_for_redis(url: str, *, timeout: float) -> None:
    """Until the Redis at ``url`` answers PING (a server this test just started)."""
    client = Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except RedisError:  # refused, or still loading its data (BusyLoadingError)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def send_keyed(topic: str, values: list[bytes]) -> None:
    """Produce each value keyed by its card id, as the project's producers send them
    (``no-card`` for one without: a value that is not a transaction)."""

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            for value in values:
                try:
                    key = str(orjson.loads(value)["card_id"]).encode()
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    key = b"no-card"
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())
