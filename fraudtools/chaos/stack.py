"""A private Kafka broker and Redis for the fault scenarios, through the project's stack
scripts (``stack/kafka.sh``, ``stack/redis.sh``) on free loopback ports in a directory of
their own: the default stack on 9092/6379 is never touched."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis

from fraudtools.worker_process import ROOT, free_port

__all__ = ["PrivateStack", "StackError"]

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The private broker or Redis would not start or stop."""


# -- the private stack ---------------------------------------------------------------------


class PrivateStack:
    """A Kafka broker and a Redis of our own, through the project's stack scripts."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.kafka_port = free_port()
        self.controller_port = free_port()
        self.redis_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _script(self, name: str, action: str, timeout: float = 180.0) -> None:
        env = {
            **os.environ,
            "STACK_DIR": str(self.directory),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "REDIS_PORT": str(self.redis_port),
        }
        done = subprocess.run(
            ["bash", str(ROOT / "stack" / f"{name}.sh"), action],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise StackError(f"stack/{name}.sh {action} failed:\n{done.stdout}\n{done.stderr}")
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
        for stop in (self.kafka_down, self.redis_down):
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

    def redis_keys(self, pattern: str) -> list[bytes]:
        client = Redis.from_url(self.redis_url)
        try:
            return list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
