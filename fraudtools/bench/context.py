"""One run's resources on the shared stack, and what every phase does with them.

:class:`Bench` owns the run's names (``bench-<id>``: topics, consumer groups, the Redis
key prefix, a directory under ``.stack/``), the processes it started, the generated data
and the result being filled in; :meth:`Bench.cleanup` removes all of it, also after an
error or Ctrl-C. The phases (:mod:`fraudtools.bench.limit`, ``floor``, ``java_hop``,
``throughput``, ``latency``, ``baseline``, ``two_workers``, ``memory``, ``replay``) are
functions of a :class:`Bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudtools.bench import system
from fraudtools.bench.data import Data, Slice
from fraudtools.bench.kafka import BenchError, Decisions, end_total
from fraudtools.bench.metrics import progress
from fraudtools.bench.plan import Plan
from fraudtools.bench.redis_nodes import RedisTarget, cpu_groups, grouped
from fraudtools.bench.worker import Worker
from fraudtools.isolated import IsolatedWorker, Topics
from fraudtools.kafka_admin import PARTITIONS, delete_groups, delete_topics, list_topics
from fraudtools.worker_process import ROOT

__all__ = ["Bench", "Watched"]


@dataclass
class Watched:
    """Progress of a phase every 0.1 s: (CPU sample, records in the output topic).
    ``groups``: sums reported beside the processes (a cluster's ``redis``, its
    ``redis_primaries`` and ``redis_replicas``: :func:`.redis_nodes.cpu_groups`)."""

    samples: list[tuple[system.CpuSample, int]]
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def first(self) -> int:
        """The index of the first sample with an output record (0 if none)."""
        return next((i for i, (_, n) in enumerate(self.samples) if n > 0), 0)

    def cpu(self, names: Sequence[str]) -> dict[str, Any]:
        """CPU from just before the first output record to the first sample after the last:
        per process (and group, then each group's members), core-seconds per million
        records and cores in use."""
        s0, n0 = self.samples[max(0, self.first - 1)]
        s1, n1 = self.samples[-1]
        records = n1 - n0
        wall = s1.at - s0.at
        raw = {n: s1.cpu[n] - s0.cpu.get(n, math.nan) for n in s1.cpu}
        used_by = grouped(raw, self.groups)
        names = list(dict.fromkeys([*names, *self.groups, *(
            m for members in self.groups.values() for m in members)]))
        per_million: dict[str, float | None] = {}
        cores: dict[str, float | None] = {}
        for name in names:
            used = used_by.get(name, math.nan)
            per_million[name] = round(used / records * 1e6, 1) if records else None
            cores[name] = round(used / wall, 3) if wall > 0 else None
        measured = sum(u for u in raw.values() if not math.isnan(u))
        other = (s1.busy - s0.busy) - measured
        known = [v for n in names if n in ("worker", "redis", "kafka", "limit")
                 and (v := per_million[n]) is not None and not math.isnan(v)]
        return {
            "records": records,
            "wall_seconds": round(wall, 2),
            "core_seconds_per_million": {**per_million, "total": round(sum(known), 1)},
            "cores": cores,
            "machine_busy_cores": round((s1.busy - s0.busy) / wall, 2) if wall > 0 else None,
            "other_processes_cores": round(other / wall, 2) if wall > 0 else None,
        }


class Bench:
    """A run's names, processes, data and result (``name``: ``bench`` or ``soak``)."""

    def __init__(self, args: argparse.Namespace, plan: Plan, *, name: str = "bench") -> None:
        self.args, self.plan = args, plan
        self.bootstrap: str = args.bootstrap
        # One Redis (--redis-url) or a Redis Cluster (--redis-mode cluster, --cluster-url)
        self.redis_mode: str = getattr(args, "redis_mode", "single")
        self.redis_url: str = (args.cluster_url if self.redis_mode == "cluster"
                               else args.redis_url)
        self.redis = RedisTarget(self.redis_mode, self.redis_url)
        #: the CPU sums over a cluster's nodes (set with the pids, :meth:`stack_pids`)
        self.cpu_groups: dict[str, list[str]] = {}
        self.run_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.prefix = self.run_id  # one Redis key prefix for every phase's workers
        self.workdir = ROOT / ".stack" / self.run_id
        self.report_name: str = getattr(args, "report_name", None) or name
        self.logs = Path(args.reports) / f"{self.report_name}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers: list[Worker] = []
        self.children: list[subprocess.Popen[bytes] | BaseProcess] = []  # ended at cleanup
        self.groups: list[str] = []
        self.pids: dict[str, int] = {}
        self.result: dict[str, Any] = {}
        self.cursor = 0
        self.redis_used_start = 0
        self._data: Data | None = None
        # FRAUD_* settings given with --worker-env (the service's defaults otherwise)
        self.worker_env: dict[str, str] = dict(kv.split("=", 1) for kv in args.worker_env)

    # ---------------------------------------------------------------- data
    @property
    def data(self) -> Data:
        if self._data is None:
            raise BenchError("no data generated yet (Bench.data is set at the start of a run)")
        return self._data

    @data.setter
    def data(self, data: Data) -> None:
        self._data = data

    def take(self, transactions: int) -> Slice:
        """The next ``transactions`` of the generated stream (event time goes on)."""
        piece = self.data.take(transactions, start=self.cursor)
        self.cursor += len(piece)
        return piece

    # ---------------------------------------------------------------- workers
    @property
    def worker_settings(self) -> dict[str, str]:
        """INFO logs (at WARNING Faust's spinner puts the root logger on DEBUG), the Redis
        mode when it is a cluster (the URL lists its seeds), then ``--worker-env``."""
        mode = {"FRAUD_REDIS_MODE": "cluster"} if self.redis_mode == "cluster" else {}
        return {"FRAUD_LOG_LEVEL": "INFO", **mode, **self.worker_env}

    def isolated(self, phase: str) -> IsolatedWorker:
        """A phase's worker settings: topics ``<run>-<phase>-*`` and group ``<run>-<phase>``
        of its own, the run's key prefix and :attr:`worker_settings`."""
        return IsolatedWorker(
            run_id=self.run_id, app_id=f"{self.run_id}-{phase}", bootstrap=self.bootstrap,
            redis_url=self.redis_url, prefix=self.prefix,
            names=Topics.named(f"{self.run_id}-{phase}"), data_dir=self.workdir,
            settings=self.worker_settings,
        )

    def worker(self, name: str, where: IsolatedWorker, **extra: str) -> Worker:
        """A worker (not started) of ``where``'s group, its data in ``.stack/<run>/<name>``,
        its log in ``<reports>/<bench>-logs/<name>.log``; stopped at cleanup."""
        env = replace(where, data_dir=self.workdir / name).env(**extra)
        if where.app_id not in self.groups:
            self.groups.append(where.app_id)
        w = Worker(name, env, self.logs / f"{name}.log")
        self.workers.append(w)
        return w

    # ---------------------------------------------------------------- measuring
    def cpu_pids(self, **more: int) -> dict[str, int]:
        return {**self.pids, "bench": os.getpid(), **more}

    async def watch(self, topic: str, expected: int, pids: dict[str, int], *, what: str,
                    alive: Sequence[Worker | subprocess.Popen[bytes]] = (), stall: float = 60.0,
                    on_first: Callable[[], None] | None = None) -> Watched:
        """Until ``topic`` holds ``expected`` records; fails when a process dies or nothing
        moves for ``stall`` seconds."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await consumer.start()
        samples: list[tuple[system.CpuSample, int]] = []
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            last, moved = -1, time.monotonic()
            deadline = time.monotonic() + 300 + expected / 100  # bounded even when slow
            while True:
                total = await end_total(consumer, partitions)
                samples.append((system.sample(pids), total))
                if on_first is not None and total > 0:
                    on_first()
                    on_first = None
                if total >= expected:
                    return Watched(samples, self.cpu_groups)
                for p in alive:
                    if isinstance(p, Worker):
                        p.check()
                    elif p.poll() is not None:
                        raise BenchError(f"{what}: a process exited ({p.returncode})")
                now = time.monotonic()
                if total != last:
                    last, moved = total, now
                elif now - moved > stall:
                    raise BenchError(
                        f"{what}: stuck at {total:,} of {expected:,} for {stall:.0f} s")
                if now > deadline:
                    raise BenchError(f"{what}: {total:,} of {expected:,} by the deadline")
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()

    def check_complete(self, what: str, decisions: Decisions, expected: int) -> dict[str, Any]:
        out = {"sent": expected, "decided": decisions.count, "distinct": decisions.distinct,
               "repeated": decisions.repeated, "flagged_duplicate": decisions.flagged_duplicate,
               "missing": expected - decisions.distinct}
        if decisions.distinct != expected or decisions.repeated:
            progress(f"  WARNING {what}: {out}")
        return out

    def rss(self, w: Worker) -> dict[str, float]:
        kb = system.memory_kb(w.pid)
        return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "peak_mb": round(kb["VmHWM"] / 1024, 1)}

    @property
    def model_version(self) -> str:
        return (ROOT / "models" / "current").read_text().strip()

    def stack_pids(self, redis_info: dict[str, Any] | None = None) -> dict[str, int]:
        """The broker's and redis-server's pids (``--kafka-pid``/``--redis-pid``, else found
        by their ports), for their CPU time; on a cluster, every node's (``redis@host:port``,
        from each node's INFO server), and :attr:`cpu_groups` over them."""
        pids = {}
        port = int(self.bootstrap.rsplit(":", 1)[1])
        kafka = self.args.kafka_pid or system.listening_pid(port)
        if kafka:
            pids["kafka"] = kafka
        else:
            progress(f"WARNING: no process found listening on {port}: broker CPU not measured")
        given = None
        if self.redis_mode == "single":
            given = self.args.redis_pid or (redis_info or {}).get("process_id")
        found, missing = self.redis.pids(int(given) if given else None)
        pids.update(found)
        self.cpu_groups = cpu_groups(self.redis.nodes)  # a node without a pid: sums NaN
        if missing:
            progress(f"WARNING: redis-server's process not found for {', '.join(missing)}: "
                     "its CPU not measured")
        return pids

    # ---------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Stop everything started here; remove the run's topics, groups and Redis keys."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop()
        for child in self.children:
            with contextlib.suppress(Exception):
                if isinstance(child, subprocess.Popen):
                    if child.poll() is None:
                        child.terminate()
                        child.wait(10)
                elif child.is_alive():
                    child.terminate()
                    child.join(10)

        async def kafka() -> None:
            names = [t for t in await list_topics(self.bootstrap) if t.startswith(self.run_id)]
            await delete_topics(self.bootstrap, names)
            await delete_groups(self.bootstrap, self.groups)

        try:
            asyncio.run(asyncio.wait_for(kafka(), 60))
        except Exception as exc:  # noqa: BLE001 - report, go on with the rest
            progress(f"cleanup: could not remove the run's topics ({exc!r}); names start "
                     f"with {self.run_id}")
        try:  # on a cluster: every primary's keys, one slot at a time
            self.redis.delete_prefix(self.prefix)
        except Exception as exc:  # noqa: BLE001
            progress(f"cleanup: could not remove Redis keys {self.prefix}:* ({exc!r})")
        shutil.rmtree(self.workdir, ignore_errors=True)
