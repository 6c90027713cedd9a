"""The real worker process with what the benchmark asks of it: its pid, its /metrics, and
a failure that says what the worker's log says."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from fraudtools.bench.kafka import BenchError
from fraudtools.bench.metrics import parse_metrics
from fraudtools.worker_process import WorkerProcess

__all__ = ["Worker"]


class Worker(WorkerProcess):
    """The real worker process (:class:`WorkerProcess`) with what the bench asks of it."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(env, log)
        self.name = name

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        """Raise :class:`BenchError` with the log's tail if the process has exited."""
        if self.process is not None and not self.alive():
            raise BenchError(f"worker {self.name} exited with {self.process.returncode}; "
                             f"log {self.log_path}:\n{self.tail(1500)}")

    async def healthy(self, timeout: float = 120) -> None:
        try:
            await asyncio.to_thread(self.wait_ready, timeout)
        except RuntimeError as exc:
            raise BenchError(f"worker {self.name}: {exc}") from None

    async def metrics(self) -> dict[str, float]:
        def get() -> bytes:
            url = f"http://127.0.0.1:{self.web_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return bytes(r.read())

        return parse_metrics((await asyncio.to_thread(get)).decode())
