"""``make bench``: the worker's speed, latency, memory and cost on the real local stack.

    python -m fraudtools.bench            # the full run (about 7 minutes)
    python -m fraudtools.bench --quick    # a short run (about 2 minutes)

One run measures, on the broker and Redis of ``make up`` and the real worker process
(``python -m service``, started here on topics, a consumer group and a Redis key prefix
of the run's own, all removed at the end, also on error or Ctrl-C):

1. limit: a bare aiokafka consume -> produce pass-through in its own process (same
   records, decision-sized output, 4 partitions, batches of 500, acks awaited per batch);
2. throughput: the worker on a pre-loaded backlog, first to last decision;
3. latency: offered rates of 500, 1,000, 2,000, 5,000 a second and the highest sustained
   one, each for a fixed time, from the producer's send to the decision's arrival at a
   consumer (another process), with the worker's own time per stage from its /metrics;
4. baseline: the same worker with ``FRAUD_BATCH_SIZE=1``;
5. two workers in one consumer group: every transaction decided exactly once, the
   combined rate;
6. memory: the worker's resident set, Redis bytes per card and per terminal, projected
   to 10 million cards;
7. cost: CPU seconds of the worker, Redis and the broker (from /proc) per million
   decisions.

It writes ``reports/bench.json`` (stable keys), ``reports/bench.md`` and
``reports/bench_latency.png``; worker logs go to ``reports/bench-logs/``. A benchmark, not
a test: it asserts nothing about speed (conventions, 11), it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from fraudcore import SPEC
from fraudtools import bench_system as system
from fraudtools.bench_kafka import (
    BenchError,
    Decisions,
    arrivals_process,
    end_total,
    freeze_gc,
    preload,
    read_decisions,
    runner,
    send_paced,
)
from fraudtools.kafka_admin import (
    PARTITIONS,
    KafkaNotReady,
    create_topics,
    delete_groups,
    delete_topics,
    group_members,
    list_topics,
)
from fraudtools.worker_process import WorkerProcess, free_port

__all__ = ["FULL", "QUICK", "Plan", "main"]

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("transactions", "labels", "decisions", "alerts", "dlq")
#: What a decision adds to its transaction's JSON (the limit pads its output by as much).
DECISION_EXTRA = (',"score":0.123456,"action":"approve","model_version":"{version}",'
                  '"decided_at":"2026-11-29T14:03:11.482+00:00","duplicate":false,'
                  '"degraded":false')


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does."""

    limit: int  # transactions through the pass-through
    throughput: int  # the backlog of the throughput phase
    rates: tuple[int, ...]  # offered rates of the latency phases
    seconds: float  # length of each latency phase
    max_rate_cap: int  # the highest rate a "highest sustained" phase may offer
    baseline: int  # the backlog of the batch-size-1 worker
    two_workers: int  # the backlog of the two-worker phase
    warm: int  # transactions that warm a phase up (not measured)
    drain: float  # longest wait for a latency phase's last decisions


FULL = Plan(limit=200_000, throughput=200_000, rates=(500, 1_000, 2_000, 5_000), seconds=15,
            max_rate_cap=10_000, baseline=10_000, two_workers=100_000, warm=400, drain=30)
QUICK = Plan(limit=30_000, throughput=30_000, rates=(500, 1_000, 2_000, 5_000), seconds=5,
             max_rate_cap=10_000, baseline=3_000, two_workers=30_000, warm=200, drain=15)
#: Fractions of the measured throughput tried, in order, for the highest sustained rate.
MAX_RATE_TRIES = (0.9, 0.7)


def _log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    if not len(values_ms):
        return {k: float("nan") for k in ("p50", "p95", "p99", "max", "mean")}
    p50, p95, p99, top = np.percentile(values_ms, [50, 95, 99, 100])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "max": round(float(top), 2), "mean": round(float(np.mean(values_ms)), 2)}


# ------------------------------------------------------------------------ the worker process

_METRIC = re.compile(r'^(fraud_[a-z_]+?)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN)$')


def parse_metrics(text: str) -> dict[str, float]:
    """The worker's Prometheus text as ``{"name{labels}": value}`` (fraud_* series only)."""
    out = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[f"{m[1]}{{{m[2] or ''}}}"] = float(m[3])
    return out


STAGES = ("decode", "redis", "features", "model", "emit")


def stage_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Per-stage time of the worker between two scrapes: mean per batch and per event."""
    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    events = delta("fraud_batch_size_sum{}")
    batches = delta("fraud_batch_size_count{}")
    per_batch, per_event = {}, {}
    for stage in STAGES:
        seconds = delta(f'fraud_stage_seconds_sum{{stage="{stage}"}}')
        count = delta(f'fraud_stage_seconds_count{{stage="{stage}"}}')
        per_batch[stage] = round(seconds / count * 1000, 4) if count else None
        per_event[stage] = round(seconds / events * 1000, 4) if events else None
    e2d_n = delta("fraud_event_to_decision_seconds_count{}")
    gc_pauses = gc_long = gc_seconds = 0.0
    for generation in range(3):
        labels = f'generation="{generation}"'
        n = delta(f"fraud_gc_pause_seconds_count{{{labels}}}")
        gc_pauses += n
        gc_long += n - delta(f'fraud_gc_pause_seconds_bucket{{{labels},le="0.01"}}')
        gc_seconds += delta(f"fraud_gc_pause_seconds_sum{{{labels}}}")
    return {
        "events": int(events),
        "batches": int(batches),
        "mean_batch_size": round(events / batches, 1) if batches else None,
        "ms_per_batch": per_batch,
        "ms_per_event": per_event,
        "ms_per_event_total": round(sum(v for v in per_event.values() if v), 4),
        "worker_record_to_decision_ms_mean": (
            round(delta("fraud_event_to_decision_seconds_sum{}") / e2d_n * 1000, 2)
            if e2d_n else None),
        # the worker's garbage-collector pauses: how many, over 10 ms, and their total
        "gc": {"pauses": int(gc_pauses), "over_10ms": int(gc_long),
               "ms_total": round(gc_seconds * 1000, 1)},
    }


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


# ------------------------------------------------------------------------------ the run


@dataclass
class Watched:
    """Progress of a phase every 0.1 s: (CPU sample, records in the output topic)."""

    samples: list[tuple[system.CpuSample, int]]

    def cpu(self, names: Sequence[str]) -> dict[str, Any]:
        """CPU from just before the first output record to the first sample after the last:
        per process, core-seconds per million records and cores in use."""
        start = next((i for i, (_, n) in enumerate(self.samples) if n > 0), 0)
        s0, n0 = self.samples[max(0, start - 1)]
        s1, n1 = self.samples[-1]
        records = n1 - n0
        wall = s1.at - s0.at
        per_million, cores = {}, {}
        for name in names:
            used = s1.cpu.get(name, math.nan) - s0.cpu.get(name, math.nan)
            per_million[name] = round(used / records * 1e6, 1) if records else None
            cores[name] = round(used / wall, 3) if wall > 0 else None
        used_all = [s1.cpu[n] - s0.cpu[n] for n in s1.cpu]
        measured = sum(u for u in used_all if not math.isnan(u))
        other = (s1.busy - s0.busy) - measured
        known = [per_million[n] for n in names if per_million[n] is not None
                 and not math.isnan(per_million[n]) and n in ("worker", "redis", "kafka", "limit")]
        return {
            "records": records,
            "wall_seconds": round(wall, 2),
            "core_seconds_per_million": {**per_million, "total": round(sum(known), 1)},
            "cores": cores,
            "machine_busy_cores": round((s1.busy - s0.busy) / wall, 2) if wall > 0 else None,
            "other_processes_cores": round(other / wall, 2) if wall > 0 else None,
        }


@dataclass
class Arrivals:
    """A consumer in its own process stamping each record's arrival on ``topic``."""

    process: Any
    conn: Any
    stop: Any
    received: Any  # shared count of records so far

    @classmethod
    async def start(cls, bootstrap: str, topic: str) -> Arrivals:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        stop, received = ctx.Event(), ctx.Value("q", 0)
        process = ctx.Process(target=arrivals_process, daemon=True,
                              args=(bootstrap, topic, child, stop, received))
        process.start()
        if not await asyncio.to_thread(parent.poll, 60) or parent.recv() != "ready":
            raise BenchError(f"the consumer of {topic} did not start within 60 s")
        return cls(process, parent, stop, received)

    async def collect(self) -> list[tuple[str, float]]:
        """Stop it; every (transaction id, arrival time) it saw."""
        self.stop.set()
        got = await asyncio.to_thread(lambda: self.conn.recv() if self.conn.poll(120) else None)
        self.process.join(30)
        if got is None:
            raise BenchError("the arrival consumer sent nothing back")
        return list(got)


class Bench:
    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args, self.plan = args, plan
        self.bootstrap: str = args.bootstrap
        self.redis_url: str = args.redis_url
        self.run_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.prefix = self.run_id
        self.workdir = ROOT / ".stack" / self.run_id
        self.logs = Path(args.reports) / "bench-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers: list[Worker] = []
        self.children: list[Any] = []  # processes to end at cleanup (Popen or mp.Process)
        self.groups: list[str] = []
        self.pids: dict[str, int] = {}
        self.result: dict[str, Any] = {}
        self.cursor = 0
        self.data: Any = None
        # FRAUD_* settings given with --worker-env (the service's defaults otherwise)
        self.worker_env = dict(kv.split("=", 1) for kv in args.worker_env)

    # ---------------------------------------------------------------- helpers
    def topics(self, phase: str) -> dict[str, str]:
        return {n: f"{self.run_id}-{phase}-{n}" for n in NAMES}

    def take(self, transactions: int) -> Any:
        """The next ``transactions`` of the generated stream (event time goes on)."""
        piece = self.data.take(transactions, start=self.cursor)
        self.cursor += len(piece)
        return piece

    def worker(self, name: str, phase: str, topics: dict[str, str], **extra: str) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
        env.update({
            "FRAUD_APP_ID": f"{self.run_id}-{phase}",
            "FRAUD_KAFKA_BOOTSTRAP": self.bootstrap,
            "FRAUD_REDIS_URL": self.redis_url,
            "FRAUD_REDIS_KEY_PREFIX": self.prefix,
            "FRAUD_TOPIC_TRANSACTIONS": topics["transactions"],
            "FRAUD_TOPIC_LABELS": topics["labels"],
            "FRAUD_TOPIC_DECISIONS": topics["decisions"],
            "FRAUD_TOPIC_ALERTS": topics["alerts"],
            "FRAUD_TOPIC_DLQ": topics["dlq"],
            "FRAUD_PARTITIONS": str(PARTITIONS),
            "FRAUD_MODEL_DIR": str(ROOT / "models"),
            "FRAUD_DATA_DIR": str(self.workdir / name),
            "FRAUD_WEB_PORT": str(free_port()),
            # INFO, not WARNING: at WARN Faust's spinner puts the root logger on DEBUG.
            "FRAUD_LOG_LEVEL": "INFO",
        })
        env.update(self.worker_env)
        env.update(extra)
        if f"{self.run_id}-{phase}" not in self.groups:
            self.groups.append(f"{self.run_id}-{phase}")
        w = Worker(name, env, self.logs / f"{name}.log")
        self.workers.append(w)
        return w

    def cpu_pids(self, **more: int) -> dict[str, int]:
        return {**self.pids, "bench": os.getpid(), **more}

    async def watch(self, topic: str, expected: int, pids: dict[str, int], *, what: str,
                    alive: Sequence[Any] = (), stall: float = 60.0,
                    on_first: Any = None) -> Watched:
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
                    return Watched(samples)
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
            _log(f"  WARNING {what}: {out}")
        return out

    def rss(self, w: Worker) -> dict[str, float]:
        kb = system.memory_kb(w.pid)
        return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "peak_mb": round(kb["VmHWM"] / 1024, 1)}

    # ---------------------------------------------------------------- phases
    async def phase_limit(self, backlog: Any) -> None:
        topics = {"source": f"{self.run_id}-limit-in", "sink": f"{self.run_id}-limit-out"}
        await create_topics(self.bootstrap, list(topics.values()))
        tx_only = backlog.transactions_only()
        took = await preload(self.bootstrap, tx_only, transactions=topics["source"], labels="")
        _log(f"limit: {len(tx_only):,} transactions pre-loaded in {took:.1f} s; pass-through ...")
        group = f"{self.run_id}-limit"
        self.groups.append(group)
        pad = len(DECISION_EXTRA.format(version=self.model_version))
        with (self.logs / "limit.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fraudtools.bench_limit", "--bootstrap", self.bootstrap,
                 "--source", topics["source"], "--sink", topics["sink"], "--group", group,
                 "--count", str(len(tx_only)), "--pad", str(pad)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.children.append(process)
        pids = self.cpu_pids(limit=process.pid)
        watched = await self.watch(topics["sink"], len(tx_only), pids, what="limit",
                                   alive=[process])
        process.wait(30)
        out = await read_decisions(self.bootstrap, topics["sink"])
        self.result["limit_eps"] = round(out.rate())
        self.result["phases"]["limit"] = {
            "records": out.count, "output_pad_bytes": pad, "batch": 500,
            "cpu": watched.cpu(["limit", "kafka", "redis", "bench"]),
        }
        _log(f"limit: {self.result['limit_eps']:,} records/s")
        await delete_topics(self.bootstrap, list(topics.values()))

    async def phase_floor(self, records: Any) -> None:
        """One Kafka hop (producer, acks all, to a consumer in another process) at 1,000/s:
        the floor under the latency figures, as a decision takes two hops and the worker."""
        topic = f"{self.run_id}-floor"
        await create_topics(self.bootstrap, [topic])
        arrivals = await Arrivals.start(self.bootstrap, topic)
        self.children.append(arrivals.process)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        try:
            sent_at = await send_paced(producer, records, rate=1_000, transactions=topic,
                                       labels=topic)
            deadline = time.monotonic() + 30
            while arrivals.received.value < len(sent_at) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()
        first: dict[str, float] = {}
        for tx_id, at in await arrivals.collect():
            first.setdefault(tx_id, at)
        lat = [(first[i] - t) * 1000 for i, t in sent_at.items() if i in first]
        self.result["kafka_hop_ms"] = {**_percentiles(lat), "rate": 1_000, "sent": len(sent_at),
                                       "received": len(lat)}
        _log(f"floor: one Kafka hop at 1,000/s: p50 {self.result['kafka_hop_ms']['p50']} "
             f"p99 {self.result['kafka_hop_ms']['p99']} ms")
        await delete_topics(self.bootstrap, [topic])

    async def phase_throughput(self, backlog: Any) -> tuple[Worker, dict[str, str]]:
        topics = self.topics("main")
        await create_topics(self.bootstrap, list(topics.values()))
        took = await preload(self.bootstrap, backlog, transactions=topics["transactions"],
                             labels=topics["labels"])
        n = backlog.transactions
        _log(f"throughput: {n:,} transactions (+{len(backlog) - n:,} labels) pre-loaded in "
             f"{took:.1f} s; starting the worker ...")
        w = self.worker("worker", "main", topics).start()
        profile = Path(self.args.reports) / "bench-profile-throughput.txt"
        profiler: list[subprocess.Popen[bytes]] = []

        def start_profiler() -> None:  # from the first decision: no start-up in the profile
            profiler.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(w.pid),
                 "-f", "raw", "-r", "100", "--nonblocking", "-o", str(profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.children.append(profiler[0])

        pids = self.cpu_pids(worker=w.pid)
        watched = await self.watch(topics["decisions"], n, pids, what="throughput", alive=[w],
                                   on_first=start_profiler if self.args.profile else None)
        summary = None
        if profiler:
            profiler[0].send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler[0].wait(30)
            if profile.exists():
                from fraudtools.bench_profile import summarize

                summary = {"file": profile.name, **summarize(profile)}
        decisions = await read_decisions(self.bootstrap, topics["decisions"])
        metrics = await w.metrics()
        self.result["throughput_eps"] = round(decisions.rate())
        cpu = watched.cpu(["worker", "redis", "kafka", "bench"])
        self.result["core_seconds_per_million"] = cpu["core_seconds_per_million"]
        self.result["phases"]["throughput"] = {
            **self.check_complete("throughput", decisions, n),
            "stages": stage_figures({}, metrics),
            "cpu": cpu,
            "worker_memory": self.rss(w),
            "profile": summary,
        }
        _log(f"throughput: {self.result['throughput_eps']:,} decisions/s; cpu {cpu['cores']}")
        return w, topics

    async def phase_latency(self, w: Worker, topics: dict[str, str]) -> None:
        plan = self.plan
        arrivals = await Arrivals.start(self.bootstrap, topics["decisions"])
        self.children.append(arrivals.process)
        consumer, received = arrivals.process, arrivals.received
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        phases: list[dict[str, Any]] = []
        expected = 0
        throughput = self.result["throughput_eps"]
        try:
            queue: list[tuple[int, str]] = [(r, "fixed") for r in sorted(plan.rates)]
            tries = sorted({min(plan.max_rate_cap, int(throughput * f) // 250 * 250)
                            for f in MAX_RATE_TRIES} - set(plan.rates) - {0}, reverse=True)
            while queue:
                rate, kind = queue.pop(0)
                piece = self.take(int(rate * plan.seconds))
                pids = self.cpu_pids(worker=w.pid, consumer=consumer.pid or 0)
                before, c0 = await w.metrics(), system.sample(pids)
                _log(f"latency: {rate:,}/s for {plan.seconds:g} s ({kind}) ...")
                sent_at = await send_paced(producer, piece, rate=rate,
                                           transactions=topics["transactions"],
                                           labels=topics["labels"])
                sent_done = time.monotonic()
                expected += len(sent_at)
                deadline = sent_done + plan.drain
                while received.value < expected and time.monotonic() < deadline:
                    w.check()
                    await asyncio.sleep(0.02)
                drain_seconds = time.monotonic() - sent_done
                c1, after = system.sample(pids), await w.metrics()
                send_seconds = sent_done - min(sent_at.values())
                phases.append({
                    "rate": rate, "kind": kind, "sent_at": sent_at,
                    "send_seconds": send_seconds, "drain_seconds": drain_seconds,
                    "stages": stage_figures(before, after), "rss": self.rss(w),
                    "cpu": {k: c1.cpu[k] - c0.cpu[k] for k in c1.cpu},
                    "wall": c1.at - c0.at, "busy": c1.busy - c0.busy,
                })
                if received.value < expected:
                    # The backlog would spill into the next phase: let it clear first.
                    _log(f"  not drained {plan.drain:g} s after sending; waiting for the rest")
                    deadline = time.monotonic() + 120
                    while received.value < expected and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                # Kept up: sent on time and the last decisions came within a second.
                kept_up = drain_seconds < 1.0 and send_seconds < plan.seconds * 1.05
                if kind == "max" and kept_up:
                    tries.clear()
                if not queue and tries:  # after the fixed rates: the highest sustained
                    queue.append((tries.pop(0), "max"))
                await asyncio.sleep(1.0)
        finally:
            await producer.stop()
        first: dict[str, float] = {}
        seen: dict[str, int] = {}
        for tx_id, at in await arrivals.collect():
            seen[tx_id] = seen.get(tx_id, 0) + 1
            first.setdefault(tx_id, at)
        latency_ms: dict[str, Any] = {}
        stages: dict[str, Any] = {}
        rss = []
        best = None
        for phase in phases:
            sent_at = phase["sent_at"]
            lat = [(first[i] - t) * 1000 for i, t in sent_at.items() if i in first]
            arrived = [first[i] for i in sent_at if i in first]
            span = (max(arrived) - min(sent_at.values())) if arrived else math.nan
            decided = len(lat)
            achieved = decided / span if span and span > 0 else math.nan
            fifth = max(1, len(lat) // 5)
            ordered = [(first[i] - t) * 1000 for i, t in sorted(sent_at.items(), key=lambda x: x[1])
                       if i in first]
            growing = (np.median(ordered[-fifth:]) > 2 * np.median(ordered[:fifth]) + 5
                       if ordered else True)
            sustained = (decided == len(sent_at) and achieved >= 0.95 * phase["rate"]
                         and not growing)
            busy_cpu = phase["cpu"]
            per_million = {k: round(v / decided * 1e6, 1) if decided else None
                           for k, v in busy_cpu.items()}
            entry = {
                **_percentiles(lat),
                "offered_eps": phase["rate"],
                "achieved_eps": round(achieved) if not math.isnan(achieved) else None,
                "sent": len(sent_at), "decided": decided,
                "missing": len(sent_at) - decided,
                "send_seconds": round(phase["send_seconds"], 2),
                "drain_seconds": round(phase["drain_seconds"], 2),
                "repeated": sum(seen.get(i, 0) > 1 for i in sent_at),
                "sustained": bool(sustained),
                "kind": phase["kind"],
                "worker_stages": phase["stages"],
                "cpu_cores": {k: round(v / phase["wall"], 3) for k, v in busy_cpu.items()},
                "core_seconds_per_million": per_million,
                "machine_busy_cores": round(phase["busy"] / phase["wall"], 2),
                "other_processes_cores": round(
                    (phase["busy"] - sum(v for v in busy_cpu.values() if not math.isnan(v)))
                    / phase["wall"], 2),
            }
            latency_ms[str(phase["rate"])] = entry
            stages[str(phase["rate"])] = phase["stages"]
            rss.append(phase["rss"]["rss_mb"])
            if sustained and (best is None or phase["rate"] > best):
                best = phase["rate"]
            _log(f"  {phase['rate']:>6,}/s: p50 {entry['p50']} p99 {entry['p99']} max "
                 f"{entry['max']} ms, achieved {entry['achieved_eps']}/s, sustained {sustained}")
        self.result["latency_ms"] = latency_ms
        self.result["max_sustained_eps"] = best
        self.result["worker_rss_mb"] = round(float(np.median(rss)), 1) if rss else None
        self.result["worker_rss_peak_mb"] = phases[-1]["rss"]["peak_mb"] if phases else None

    async def phase_baseline(self, backlog: Any) -> None:
        topics = self.topics("base")
        await create_topics(self.bootstrap, list(topics.values()))
        await preload(self.bootstrap, backlog, transactions=topics["transactions"],
                      labels=topics["labels"])
        n = backlog.transactions
        _log(f"baseline: {n:,} transactions pre-loaded; worker with FRAUD_BATCH_SIZE=1 ...")
        w = self.worker("worker-batch1", "base", topics, FRAUD_BATCH_SIZE="1").start()
        watched = await self.watch(topics["decisions"], n, self.cpu_pids(worker=w.pid),
                                   what="baseline", alive=[w])
        decisions = await read_decisions(self.bootstrap, topics["decisions"])
        metrics = await w.metrics()
        w.stop()
        self.result["baseline_eps"] = round(decisions.rate())
        self.result["phases"]["baseline"] = {
            **self.check_complete("baseline", decisions, n),
            "stages": stage_figures({}, metrics),
            "cpu": watched.cpu(["worker", "redis", "kafka", "bench"]),
        }
        _log(f"baseline: {self.result['baseline_eps']:,} decisions/s")

    async def phase_two_workers(self, warm: Any, backlog: Any) -> None:
        topics = self.topics("two")
        await create_topics(self.bootstrap, list(topics.values()))
        pair = [self.worker(f"worker-{i}", "two", topics).start() for i in (1, 2)]
        for w in pair:
            await w.healthy()
        group = f"{self.run_id}-two"
        deadline = time.monotonic() + 90
        while True:  # both members in, the group settled: no rebalance during the count
            state, members = await group_members(self.bootstrap, group)
            if state == "Stable" and members == 2:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"two workers: group {state} with {members} members after 90 s")
            for w in pair:
                w.check()
            await asyncio.sleep(0.3)
        await preload(self.bootstrap, warm, transactions=topics["transactions"],
                      labels=topics["labels"])
        await self.watch(topics["decisions"], warm.transactions, self.cpu_pids(),
                         what="two workers warm-up", alive=pair)
        counts0 = [(await w.metrics()) for w in pair]
        n = backlog.transactions
        _log(f"two workers: both in the group; sending {n:,} transactions ...")
        loaded_from = time.time() * 1000
        took = await preload(self.bootstrap, backlog, transactions=topics["transactions"],
                             labels=topics["labels"])
        loaded = time.time() * 1000
        await self.watch(topics["decisions"], warm.transactions + n, self.cpu_pids(),
                         what="two workers", alive=pair)
        decisions = await read_decisions(self.bootstrap, topics["decisions"])
        counts1 = [(await w.metrics()) for w in pair]
        for w in pair:
            w.stop()

        def decided(m: dict[str, float]) -> float:
            return sum(v for k, v in m.items() if k.startswith("fraud_decisions_total{"))

        check = self.check_complete("two workers", decisions, warm.transactions + n)
        self.result["two_workers_eps"] = round(decisions.rate(since_ms=loaded))
        self.result["phases"]["two_workers"] = {
            **check,
            "exactly_once": check["missing"] == 0 and check["repeated"] == 0,
            "rate_after_load_eps": self.result["two_workers_eps"],
            "rate_from_first_send_eps": round(decisions.rate(since_ms=loaded_from)),
            "load_seconds": round(took, 2),
            "per_worker_decisions": [int(decided(b) - decided(a))
                                     for a, b in zip(counts0, counts1, strict=True)],
        }
        _log(f"two workers: {self.result['two_workers_eps']:,} decisions/s combined; "
             f"{check}")

    def memory(self) -> None:
        from redis import Redis

        client = Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=5000))
            sizes = []
            for i in range(0, len(keys), 2000):
                pipe = client.pipeline(transaction=False)
                for k in keys[i: i + 2000]:
                    pipe.memory_usage(k, samples=0)
                sizes += pipe.execute()
            card, terminal = {}, {}
            card_bytes = terminal_bytes = id_bytes = id_keys = 0
            entries = {"card": [], "terminal": []}
            tx_keys = {"card": [], "terminal": []}
            for key, size in zip(keys, sizes, strict=True):
                # prefix : v<spec> : card|t : {id} : what, or prefix : v<spec> : id : {tx id}
                _, _, kind, rest = key.decode().split(":", 3)
                if kind == "id":  # the index of transaction ids: a cost of the cards
                    id_bytes += size or 0
                    id_keys += 1
                    continue
                ident, what = rest.rsplit(":", 1)
                if kind == "card":
                    card[ident] = 1
                    card_bytes += size or 0
                    if what == "tx":
                        tx_keys["card"].append(key)
                elif kind == "t":
                    terminal[ident] = 1
                    terminal_bytes += size or 0
                    if what == "tx":
                        tx_keys["terminal"].append(key)
            for which, names in tx_keys.items():
                pipe = client.pipeline(transaction=False)
                for k in names[:5000]:
                    pipe.zcard(k)
                entries[which] = pipe.execute() if names else []
            used = int(client.info("memory")["used_memory"])
        finally:
            client.close()
        cards, terminals = len(card), len(terminal)
        # The id index keeps a transaction's id until it is older than a card's history
        # (event time): the generated data are from 2018, so none is kept here. In steady
        # state a card carries one id key per transaction of its history: measure one.
        per_id = self.id_key_bytes()
        held = float(np.mean(entries["card"])) if entries["card"] else 0.0
        per_card = card_bytes / cards + per_id * held if cards else None
        per_terminal = terminal_bytes / terminals if terminals else None
        ratio = terminals / cards if cards else 0
        delta = used - self.redis_used_start
        projected = None
        if per_card and per_terminal:
            projected = {
                "cards": 10_000_000,
                "terminals": round(10_000_000 * ratio),
                "gb_memory_usage": round(10_000_000 * (per_card + ratio * per_terminal) / 1e9, 2),
                "gb_used_memory_delta": round(delta / cards * 10_000_000 / 1e9, 2),
                "assumption": ("the generated data's terminals per card and transactions per "
                               "card a day (about 1.9), a card's 33 days and a terminal's 40 "
                               "days of history"),
            }
        history_days = self.data_days_used
        self.result["redis_bytes_per_card"] = round(per_card) if per_card else None
        self.result["redis_bytes_per_terminal"] = round(per_terminal) if per_terminal else None
        self.result["redis"] = {
            "keys": len(keys), "cards": cards, "terminals": terminals,
            "bytes_cards": card_bytes, "bytes_terminals": terminal_bytes,
            "bytes_id_index": id_bytes, "id_keys": id_keys,
            "bytes_per_id_key": per_id,
            "mean_transactions_per_card_key": round(float(np.mean(entries["card"])), 1)
            if entries["card"] else None,
            "mean_transactions_per_terminal_key": round(float(np.mean(entries["terminal"])), 1)
            if entries["terminal"] else None,
            "used_memory_delta_bytes": delta,
            "history_days_loaded": history_days,
            "steady_state": history_days >= 40,
            "projection_10m_cards": projected,
            "method": "MEMORY USAGE (SAMPLES 0) of every key of the run's prefix; "
                      "used_memory delta from INFO memory (shared with any other client)",
        }
        _log(f"memory: {self.result['redis_bytes_per_card']} B/card, "
             f"{self.result['redis_bytes_per_terminal']} B/terminal over {history_days} days")

    def id_key_bytes(self) -> int:
        """MEMORY USAGE of one id-index key as the worker writes it (a 36-character id)."""
        from redis import Redis

        client = Redis.from_url(self.redis_url)
        key = f"{self.prefix}:v{SPEC.version}:id:{{{uuid.uuid4()}}}"  # as RedisStore names it
        try:
            client.set(key, "0123456789abcdef", px=60_000)
            return int(client.memory_usage(key, samples=0) or 0)
        finally:
            client.delete(key)
            client.close()

    # ---------------------------------------------------------------- the whole run
    async def run(self) -> dict[str, Any]:
        from redis import Redis

        from fraudtools import bench_data

        plan = self.plan
        started = time.monotonic()
        self.result = {"schema": 1, "mode": "quick" if self.args.quick else "full",
                       "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                       "phases": {}}
        client = Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            info = client.info("server")
            self.redis_used_start = int(client.info("memory")["used_memory"])
        finally:
            client.close()
        self.pids = self.stack_pids(info)
        self.result["git"] = system.git_info(ROOT)
        self.result["machine"] = system.machine_info(kafka_pid=self.pids.get("kafka"),
                                                     redis_version=info.get("redis_version"))
        redis_where = urlsplit(self.redis_url)
        self.result["stack"] = {
            "bootstrap": self.bootstrap,
            "redis": f"{redis_where.hostname}:{redis_where.port or 6379}{redis_where.path}",
            "pids": dict(self.pids),
            "worker_settings": {"FRAUD_LOG_LEVEL": "INFO", **self.worker_env,
                                "model_version": self.model_version},
        }

        budget = (plan.throughput + int(sum(plan.rates) * plan.seconds)
                  + int(plan.max_rate_cap * plan.seconds * len(MAX_RATE_TRIES))
                  + plan.baseline + plan.warm + plan.two_workers)
        _log(f"{self.run_id}: generating {budget:,} transactions ...")
        self.data = bench_data.build(budget)
        freeze_gc()
        d = self.data
        self.result["data"] = {"customers": d.customers, "terminals": d.terminals,
                               "days": d.days, "transactions": d.records.transactions,
                               "records": len(d.records)}
        backlog = self.take(plan.throughput)
        await self.phase_limit(backlog)
        await self.phase_floor(backlog.transactions_only().head(int(1_000 * plan.seconds)))
        worker, topics = await self.phase_throughput(backlog)
        await self.phase_latency(worker, topics)
        worker.stop()
        await self.phase_baseline(self.take(plan.baseline))
        warm = self.take(plan.warm)
        await self.phase_two_workers(warm, self.take(plan.two_workers))
        self.data_days_used = self.days_used()
        self.memory()
        r = self.result
        r["throughput_vs_limit"] = round(r["throughput_eps"] / r["limit_eps"], 3)
        r["batching_speedup"] = round(r["throughput_eps"] / r["baseline_eps"], 2)
        r["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        r["duration_seconds"] = round(time.monotonic() - started)
        r["bar"] = bar(r)
        return r

    def days_used(self) -> float:
        """Days of event time sent through the run's Redis prefix (history depth)."""
        import orjson

        records = self.data.records
        first = orjson.loads(records.values[0])["timestamp"]
        last = orjson.loads(records.values[self.cursor - 1])
        last = last.get("known_at") or last["timestamp"]
        span = datetime.fromisoformat(last) - datetime.fromisoformat(first)
        return round(span.total_seconds() / 86400, 1)

    @property
    def model_version(self) -> str:
        return (ROOT / "models" / "current").read_text().strip()

    def stack_pids(self, redis_info: dict[str, Any]) -> dict[str, int]:
        pids = {}
        port = int(self.bootstrap.rsplit(":", 1)[1])
        kafka = self.args.kafka_pid or system.listening_pid(port)
        if kafka:
            pids["kafka"] = kafka
        else:
            _log(f"WARNING: no process found listening on {port}: broker CPU not measured")
        redis = self.args.redis_pid or redis_info.get("process_id")
        comm = Path(f"/proc/{redis}/comm")
        if redis and comm.exists() and comm.read_text().startswith("redis"):
            pids["redis"] = int(redis)
        else:  # e.g. Redis in a container: its pid is not ours; try the port
            found = system.listening_pid(urlsplit(self.redis_url).port or 6379)
            if found:
                pids["redis"] = found
            else:
                _log("WARNING: redis-server's process not found: its CPU not measured")
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
            _log(f"cleanup: could not remove the run's topics ({exc!r}); names start "
                 f"with {self.run_id}")
        try:
            from redis import Redis

            client = Redis.from_url(self.redis_url, socket_timeout=10)
            batch = []
            for key in client.scan_iter(match=f"{self.prefix}:*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
            client.close()
        except Exception as exc:  # noqa: BLE001
            _log(f"cleanup: could not remove Redis keys {self.prefix}:* ({exc!r})")
        shutil.rmtree(self.workdir, ignore_errors=True)


def bar(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's bar, figure by figure: the measured value, the target, met or not."""
    lat = r.get("latency_ms", {})

    def p99(rate: int) -> float | None:
        return lat.get(str(rate), {}).get("p99")

    checks = {
        "throughput_eps >= 8000": (r["throughput_eps"], r["throughput_eps"] >= 8000),
        "throughput >= 60% of limit": (r["throughput_vs_limit"], r["throughput_vs_limit"] >= 0.6),
        "p99 at 1000/s <= 10 ms": (p99(1000), p99(1000) is not None and p99(1000) <= 10),
        "p99 at 5000/s <= 25 ms": (p99(5000), p99(5000) is not None and p99(5000) <= 25
                                   and lat["5000"]["sustained"]),
        "batching >= 3x baseline": (r["batching_speedup"], r["batching_speedup"] >= 3),
    }
    return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()}


def execute(job: Bench, name: str) -> tuple[dict[str, Any] | None, int]:
    """Run ``job`` (SIGTERM acts as Ctrl-C) and always clean up after it: (result, 0), or
    (None, exit status) when it failed or was interrupted, having said so."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return runner()(job.run()), 0
    except (BenchError, KafkaNotReady) as exc:
        print(f"{name} failed: {exc}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print(f"{name} interrupted", file=sys.stderr)
        return None, 130
    finally:
        _log("cleaning up (topics, consumer groups, Redis keys, processes) ...")
        job.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka brokers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="where to write")
    parser.add_argument("--profile", action="store_true",
                        help="record the worker with py-spy during the throughput phase "
                             "(reports/bench-profile-throughput.txt; slows it a little)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="FRAUD_X=VALUE",
                        help="a worker setting for this run (repeatable), e.g. "
                             "FRAUD_BATCH_WAIT_SECONDS=0.002; the service's defaults otherwise")
    parser.add_argument("--kafka-pid", type=int, help="the broker's pid, if not found by port")
    parser.add_argument("--redis-pid", type=int, help="redis-server's pid, if not found")
    args = parser.parse_args(argv)
    bad = [kv for kv in args.worker_env if not kv.startswith("FRAUD_") or "=" not in kv]
    if bad:
        parser.error(f"--worker-env takes FRAUD_NAME=VALUE, not {bad}")

    from fraudtools import bench_report

    if not (ROOT / "models" / "current").exists():
        print("no model in models/current: train one first (make train)", file=sys.stderr)
        return 2
    for name, where in (("Kafka", args.bootstrap),
                        ("Redis", f"{urlsplit(args.redis_url).hostname}:"
                                  f"{urlsplit(args.redis_url).port or 6379}")):
        host, _, port = where.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError:
            print(f"{name} is not reachable on {where}: start the stack (make up)",
                  file=sys.stderr)
            return 2

    Path(args.reports).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries while a topic settles
    result, code = execute(Bench(args, QUICK if args.quick else FULL), "bench")
    if result is None:
        return code
    paths = bench_report.write(result, Path(args.reports))
    _log("wrote " + ", ".join(str(p) for p in paths))
    print(bench_report.summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
