"""Fixtures for tests against the real stack: Kafka and Redis from `make up`, and the real
worker process (``python -m service worker``), each test with its own topics, consumer
group and Redis key prefix.

A stack that is not running fails these tests (it never skips them): run ``make up``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from redis import Redis

from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.worker_process import WorkerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("FRAUD_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("FRAUD_REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 4


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


@dataclass
class Run:
    """One test's own names: topics, consumer group, Redis key prefix."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def topic(self, name: str) -> str:
        return f"it-{self.run_id}-{name}"

    @property
    def prefix(self) -> str:
        return f"it-{self.run_id}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
        env.update(
            {
                "FRAUD_APP_ID": f"it-{self.run_id}",
                "FRAUD_KAFKA_BOOTSTRAP": BOOTSTRAP,
                "FRAUD_REDIS_URL": REDIS_URL,
                "FRAUD_REDIS_KEY_PREFIX": self.prefix,
                "FRAUD_TOPIC_TRANSACTIONS": self.topic("transactions"),
                "FRAUD_TOPIC_LABELS": self.topic("labels"),
                "FRAUD_TOPIC_DECISIONS": self.topic("decisions"),
                "FRAUD_TOPIC_ALERTS": self.topic("alerts"),
                "FRAUD_TOPIC_DLQ": self.topic("dlq"),
                "FRAUD_PARTITIONS": str(PARTITIONS),
                "FRAUD_MODEL_DIR": str(ROOT / "models"),
                "FRAUD_DATA_DIR": f"/tmp/fraud-it/{self.run_id}",
                "FRAUD_WEB_PORT": str(free_port()),
                "FRAUD_BATCH_WAIT_SECONDS": "0.01",
            }
        )
        env.update(overrides)
        return env

    @property
    def topics(self) -> list[str]:
        return [self.topic(n) for n in ("transactions", "labels", "decisions", "alerts", "dlq")]


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


async def consume(topic: str, *, until: int, timeout: float = 120.0) -> list[dict]:
    """Read ``topic`` from the beginning until ``until`` records or the timeout."""
    return await read_records(topic, until=until, timeout=timeout)


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


