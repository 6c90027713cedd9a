"""The whole benchmark run: the phases in order, the bar, and :func:`execute`, which always
cleans up after a run (also on an error, SIGTERM or Ctrl-C)."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fraudtools.bench import (
    baseline,
    burst,
    decision_layer,
    floor,
    java_hop,
    latency,
    limit,
    memory,
    replay,
    system,
    throughput,
)
from fraudtools.bench import data as bench_data
from fraudtools.bench import two_workers as pair
from fraudtools.bench.context import Bench
from fraudtools.bench.kafka import TICK, BenchError, freeze_gc, runner
from fraudtools.bench.metrics import progress
from fraudtools.bench.plan import MAX_RATE_TRIES
from fraudtools.bench.redis_nodes import wait_replicas
from fraudtools.kafka_admin import KafkaNotReady
from fraudtools.worker_process import ROOT

__all__ = ["bar", "execute", "run"]


async def run(bench: Bench) -> dict[str, Any]:
    """Every phase of ``bench.plan`` on the stack; the report's content (``bench.json``)."""
    plan = bench.plan
    started = time.monotonic()
    bench.result = {"schema": 1, "mode": "quick" if bench.args.quick else "full",
                    "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "phases": {}}
    info = bench.redis.info_server()  # on a cluster: its nodes read, one primary's INFO
    bench.redis_used_start = bench.redis.used_memory()
    bench.pids = bench.stack_pids(info)
    r = bench.result
    r["git"] = system.git_info(ROOT)
    r["machine"] = system.machine_info(kafka_pid=bench.pids.get("kafka"),
                                       redis_version=info.get("redis_version"))
    # Replicas each round trip of the worker waits for (WAIT): 1 by default on a cluster
    r["redis_mode"] = bench.redis_mode
    r["redis_wait_replicas"] = wait_replicas(bench.redis_mode, bench.worker_env)
    # How the latency phase offers its load: sends paced in ticks (fraudtools.bench.kafka),
    # batched for this long by the producer.
    r["load"] = {"pacing_tick_ms": TICK * 1000, "producer_linger_ms":
                 getattr(bench.args, "producer_linger_ms", 0)}
    seeds = [urlsplit(u) for u in bench.redis_url.split(",")]
    r["stack"] = {
        "bootstrap": bench.bootstrap,
        "redis": ",".join(f"{u.hostname}:{u.port or 6379}{u.path}" for u in seeds),
        "redis_mode": bench.redis_mode,
        "redis_nodes": [{**n, "pid": bench.pids.get(node.name)} for n, node in
                        zip(bench.redis.describe(), bench.redis.nodes, strict=True)],
        "pids": dict(bench.pids),
        "worker_settings": {**bench.worker_settings, "model_version": bench.model_version},
    }

    budget = (plan.throughput + int(sum(plan.rates) * plan.seconds)
              + int(plan.max_rate_cap * plan.seconds * len(MAX_RATE_TRIES))
              + plan.baseline + plan.warm + plan.two_workers)
    progress(f"{bench.run_id}: generating {budget:,} transactions ...")
    bench.data = bench_data.build(budget)
    freeze_gc()
    d = bench.data
    r["data"] = {"customers": d.customers, "terminals": d.terminals, "days": d.days,
                 "transactions": d.records.transactions, "records": len(d.records)}
    backlog = bench.take(plan.throughput)
    await limit.phase(bench, backlog)
    await floor.phase(bench, backlog.transactions_only().head(int(1_000 * plan.seconds)))
    await java_hop.phase(bench)  # no worker running yet
    worker, where = await throughput.phase(bench, backlog)
    await latency.phase(bench, worker, where)
    worker.stop()
    await baseline.phase(bench, bench.take(plan.baseline))
    await burst.phase(bench)
    warm = bench.take(plan.warm)
    await pair.phase(bench, warm, bench.take(plan.two_workers))
    memory.phase(bench)
    await decision_layer.phase(bench)  # in-process, with no worker running
    replay.phase(bench)  # in-process too
    r["throughput_vs_limit"] = round(r["throughput_eps"] / r["limit_eps"], 3)
    r["batching_speedup"] = round(r["throughput_eps"] / r["baseline_eps"], 2)
    r["burst_vs_throughput"] = round(r["burst_eps"] / r["throughput_eps"], 3)
    r["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    r["duration_seconds"] = round(time.monotonic() - started)
    r["bar"] = bar(r)
    return r


def bar(r: dict[str, Any]) -> dict[str, Any]:
    """The bar, figure by figure: the measured value and whether it is met (a figure the
    run lacks, or NaN, is not met)."""
    b2b = r.get("broker_to_broker_ms", {})
    cost = r.get("core_seconds_per_million", {})

    def number(value: Any) -> float | None:
        if value is None or isinstance(value, bool):
            return None
        value = float(value)
        return None if math.isnan(value) else value

    def at_most(value: float | None, limit: float, *, also: bool = True) -> bool:
        return value is not None and value <= limit and also

    def at_least(value: float | None, limit: float) -> bool:
        return value is not None and value >= limit

    def b2b_at(rate: int, key: str) -> float | None:
        return number(b2b.get(str(rate), {}).get(key))

    throughput, speedup = number(r.get("throughput_eps")), number(r.get("batching_speedup"))
    worker, redis = number(cost.get("worker")), number(cost.get("redis"))
    replay_eps = number(r.get("replay_eps"))
    sustained_5000 = bool(b2b.get("5000", {}).get("sustained"))
    checks = {
        "throughput_eps >= 10000": (throughput, at_least(throughput, 10_000)),
        "broker-to-broker p50 at 1000/s <= 3 ms": (b2b_at(1000, "p50"),
                                                   at_most(b2b_at(1000, "p50"), 3)),
        "broker-to-broker p99 at 1000/s <= 12 ms": (b2b_at(1000, "p99"),
                                                    at_most(b2b_at(1000, "p99"), 12)),
        "broker-to-broker p99 at 5000/s <= 20 ms, sustained": (
            b2b_at(5000, "p99"), at_most(b2b_at(5000, "p99"), 20, also=sustained_5000)),
        "worker core-seconds per million decisions <= 70": (worker, at_most(worker, 70)),
        "Redis core-seconds per million decisions <= 40": (redis, at_most(redis, 40)),
        "replay_eps >= 50000": (replay_eps, at_least(replay_eps, 50_000)),
        "batching >= 3x baseline": (speedup, at_least(speedup, 3)),
    }
    return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()}


def execute(bench: Bench, work: Coroutine[Any, Any, dict[str, Any]], name: str
            ) -> tuple[dict[str, Any] | None, int]:
    """Run ``work`` on ``bench`` (SIGTERM acts as Ctrl-C) and always clean up after it:
    (result, 0), or (None, exit status) when it failed or was interrupted, having said so."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return runner()(work), 0
    except (BenchError, KafkaNotReady) as exc:
        print(f"{name} failed: {exc}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print(f"{name} interrupted", file=sys.stderr)
        return None, 130
    finally:
        progress("cleaning up (topics, consumer groups, Redis keys, processes) ...")
        bench.cleanup()
