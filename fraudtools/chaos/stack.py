"""A private Kafka broker and Redis for the fault scenarios, through the project's stack
scripts (``stack/kafka.sh``, ``stack/redis.sh``) on free loopback ports in a directory of
their own: the default stack on 9092/6379 is never touched. A scenario on a Redis Cluster
or behind Redis Sentinel gets a private one too (``stack/redis-cluster.sh``,
``stack/redis-sentinel.sh``), started the first time a scenario needs it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis, RedisCluster
from redis.exceptions import RedisError

from fraudtools.worker_process import ROOT, free_port

__all__ = ["PrivateStack", "StackError"]

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The private broker or Redis would not start or stop."""


# -- the private stack ---------------------------------------------------------------------


def _free_block(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free, with their cluster
    bus ports (+10,000) free too."""
    for base in range(21_000, 30_000, 50):
        ports = [*range(base, base + count), *range(base + 10_000, base + 10_000 + count)]
        if all(_free(p) for p in ports):
            return base
    raise StackError(f"no {count} consecutive free ports from 21000 to 30000")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


#: The sentinels' name for the primary they watch (stack/redis-sentinel.sh).
SENTINEL_MASTER = "fraud"


class PrivateStack:
    """A Kafka broker and a Redis of our own, through the project's stack scripts; a
    Redis Cluster and a Sentinel setup of our own once a scenario asks for them."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.kafka_port = free_port()
        self.controller_port = free_port()
        self.redis_port = free_port()
        self.cluster_port: int | None = None  # the first of its six nodes, when started
        self.sentinel_port: int | None = None  # its primary; sentinels on +6..+8

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _script(self, name: str, *action: str, timeout: float = 180.0) -> None:
        env = {
            **os.environ,
            "STACK_DIR": str(self.directory),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "REDIS_PORT": str(self.redis_port),
            "REDIS_CLUSTER_PORT": str(self.cluster_port or 0),
            "REDIS_SENTINEL_PORT": str(self.sentinel_port or 0),
        }
        done = subprocess.run(
            ["bash", str(ROOT / "stack" / f"{name}.sh"), *action],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise StackError(
                f"stack/{name}.sh {' '.join(action)} failed:\n{done.stdout}\n{done.stderr}"
            )
        log.info("%s", done.stdout.strip())

    def _share_kafka_jars(self) -> None:
        """Use the default stack's Kafka jars (fetched once by ``make up``), no download."""
        default_dir = Path(os.environ.get("STACK_DIR", ".stack"))
        shared = (default_dir if default_dir.is_absolute() else ROOT / default_dir) / "kafka/libs"
        if not (shared / ".pom.sha256").exists():  # fetch only: starts nothing
            subprocess.run(["bash", str(ROOT / "stack/kafka.sh"), "fetch"], cwd=ROOT, check=True)
        own = self.directory / "kafka" / "libs"
        own.parent.mkdir(parents=True, exist_ok=True)
        if not own.exists():
            own.symlink_to(shared.resolve(), target_is_directory=True)

    def up(self) -> PrivateStack:
        self._share_kafka_jars()
        self.redis_up()
        self.kafka_up()
        return self

    def down(self) -> None:
        errors = []
        for stop in (self.kafka_down, self.redis_down, self.cluster_down, self.sentinel_down):
            try:
                stop()
            except (StackError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        if errors:
            raise StackError("; ".join(errors))

    def kafka_up(self) -> None:
        self._script("kafka", "up")

    def kafka_down(self) -> None:
        self._script("kafka", "down")

    def redis_up(self) -> None:
        self._script("redis", "up")

    def redis_down(self) -> None:
        self._script("redis", "down")

    # -- Redis Cluster and Sentinel -------------------------------------------------------

    def ensure(self, mode: str) -> None:
        """Start the private cluster or Sentinel setup a scenario in ``mode`` needs."""
        if mode == "cluster" and self.cluster_port is None:
            self.cluster_port = _free_block(6)
            self._script("redis-cluster", "up")
        elif mode == "sentinel" and self.sentinel_port is None:
            self.sentinel_port = _free_block(9)
            self._script("redis-sentinel", "up")

    def cluster_down(self) -> None:
        if self.cluster_port is not None:
            self._script("redis-cluster", "down")
            self.cluster_port = None

    def sentinel_down(self) -> None:
        if self.sentinel_port is not None:
            self._script("redis-sentinel", "down")
            self.sentinel_port = None

    def restart_cluster_node(self, port: int) -> None:
        """A killed node started again: it rejoins as a replica of whoever took over."""
        self._script("redis-cluster", "restart-node", str(port))

    def restart_sentinel_server(self, port: int) -> None:
        """A killed server started again as a replica of the current primary."""
        self._script("redis-sentinel", "restart-server", str(port))

    @property
    def sentinels(self) -> list[int]:
        assert self.sentinel_port is not None, "the Sentinel setup is not started"
        return [self.sentinel_port + 6, self.sentinel_port + 7, self.sentinel_port + 8]

    def worker_settings(self, mode: str) -> dict[str, str]:
        """The worker's ``FRAUD_REDIS_*`` settings for ``mode`` on this stack."""
        if mode == "cluster":
            return {"FRAUD_REDIS_MODE": "cluster",
                    "FRAUD_REDIS_URL": f"redis://127.0.0.1:{self.cluster_port}"}
        if mode == "sentinel":
            return {"FRAUD_REDIS_MODE": "sentinel",
                    "FRAUD_REDIS_URL": ",".join(f"redis://127.0.0.1:{p}" for p in self.sentinels),
                    "FRAUD_REDIS_SENTINEL_MASTER": SENTINEL_MASTER}
        return {}

    def client(self, mode: str) -> Redis | RedisCluster:
        """A client of the state in ``mode``: the one Redis, the cluster, the primary."""
        if mode == "cluster":
            return RedisCluster(host="127.0.0.1", port=self.cluster_port or 0)
        if mode == "sentinel":
            return Redis(host="127.0.0.1", port=self.sentinel_primary())
        return Redis.from_url(self.redis_url)

    def sentinel_primary(self) -> int:
        """The port of the server the sentinels name primary."""
        for port in self.sentinels:
            try:
                with Redis(host="127.0.0.1", port=port, socket_timeout=1.0) as sentinel:
                    _, primary = sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                    return int(primary)
            except (RedisError, OSError, TypeError, ValueError):
                continue
        raise StackError("no sentinel names a primary")

    def redis_stop_keeping_state(self) -> None:
        """``SHUTDOWN SAVE``: the snapshot is taken atomically, so no write is lost; the
        next ``redis.sh up`` loads it from its directory."""
        client = Redis.from_url(self.redis_url)
        try:
            client.shutdown(save=True)
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return
        raise StackError("Redis still answers after SHUTDOWN SAVE")

    def redis_keys(self, pattern: str, mode: str = "single") -> list[bytes]:
        client = self.client(mode)
        try:
            return list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
