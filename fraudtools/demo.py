"""``make demo``: the whole stream, live, for about a minute.

It starts the real worker on topics of its own (so earlier runs never interfere), warms
the feature state with five weeks of generated history as fast as the worker takes it,
then streams the following days at a steady rate while it shows, every second: events a
second, latency from send to decision (p50, p99), alerts, and precision and recall of the
alerts against the generator's truth. Then it stops the worker, prints a summary and says
that the local stack (Kafka, Redis) is still running and that `make down` stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from fraudtools.feed import Record, feed
from fraudtools.isolated import IsolatedWorker, Topics
from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.producer import TopicNames, send_records
from fraudtools.worker_process import ROOT, WorkerProcess
from training import generator
from training.dataset import normalise

__all__ = ["Live", "closing_message", "main"]

REDIS_URL = "redis://127.0.0.1:6379/0"  # the worker's default


@dataclass
class Live:
    """What the view shows, updated as decisions arrive."""

    sent_at: dict[str, float] = field(default_factory=dict)
    truth: dict[str, bool] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    decided: int = 0
    alerts: int = 0
    true_alerts: int = 0
    frauds_decided: int = 0
    duplicates: int = 0
    warmup_decided: int = 0
    model: str = "?"

    def on_sent(self, record: Record, at: float) -> None:
        if record.kind == "transaction":
            self.sent_at[record.transaction_id] = at
            self.truth[record.transaction_id] = record.fraud

    def on_decision(self, d: dict[str, Any], at: float) -> None:
        tx_id = d["transaction_id"]
        if tx_id not in self.truth:
            self.warmup_decided += 1
            return
        self.decided += 1
        self.duplicates += bool(d.get("duplicate"))
        self.model = d["model_version"]
        self.latencies_ms.append((at - self.sent_at[tx_id]) * 1000)
        fraud = self.truth[tx_id]
        self.frauds_decided += fraud
        if d["action"] != "approve":
            self.alerts += 1
            self.true_alerts += fraud

    def line(self, elapsed: float, rate: float) -> str:
        lat = np.percentile(self.latencies_ms[-2000:], [50, 99]) if self.latencies_ms else (0, 0)
        precision = self.true_alerts / self.alerts if self.alerts else 0.0
        recall = self.true_alerts / self.frauds_decided if self.frauds_decided else 0.0
        return (
            f"{elapsed:5.0f}s  sent {len(self.sent_at):6,d}  decided {self.decided:6,d} "
            f"({rate:5.0f}/s)  latency p50 {lat[0]:6.1f} ms  p99 {lat[1]:6.1f} ms  "
            f"alerts {self.alerts:5,d}  precision {precision:.2f}  recall {recall:.2f}"
        )


async def _watch(topic: str, bootstrap: str, live: Live, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for messages in batch.values():
                for m in messages:
                    live.on_decision(orjson.loads(m.value), now)
    finally:
        await consumer.stop()


async def _show(live: Live, started: float, stop: asyncio.Event) -> None:
    last, last_count = time.monotonic(), 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        now = time.monotonic()
        rate = (live.decided - last_count) / (now - last)
        last, last_count = now, live.decided
        print(live.line(now - started, rate), flush=True)


async def run(args: argparse.Namespace, topics: Topics) -> Live:
    config = generator.GeneratorConfig(
        customers=args.customers,
        terminals=2 * args.customers,
        days=args.warmup_days + 10,
        start=date(2018, 4, 1),
        seed=args.seed,
    )
    frame = normalise(generator.generate(config), source="demo")
    cut = frame["TX_DATETIME"].min().normalize() + np.timedelta64(args.warmup_days, "D")
    records = feed(frame, delay_days=7)
    warmup = [r for r in records if r.event_time < cut]
    stream = [r for r in records if r.event_time >= cut]
    names = TopicNames(topics.transactions, topics.labels)

    live = Live()
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(topics.decisions, args.bootstrap, live, stop))
    expected = sum(r.kind == "transaction" for r in warmup)
    print(
        f"warm-up: {expected:,} transactions of {args.warmup_days} days of history, as fast "
        "as the worker takes them ...",
        flush=True,
    )
    started = time.monotonic()
    await send_records(warmup, bootstrap=args.bootstrap, topics=names, rate=3_000)
    while live.warmup_decided < expected:
        await asyncio.sleep(0.5)
    took = time.monotonic() - started
    print(
        f"warm-up decided in {took:.1f} s ({expected / took:,.0f}/s); now streaming at "
        f"{args.rate:g} transactions/s for {args.duration:g} s\n",
        flush=True,
    )
    started = time.monotonic()
    view = asyncio.create_task(_show(live, started, stop))
    limit = int(args.rate * args.duration)
    paced = []
    for record in stream:
        paced.append(record)
        if sum(r.kind == "transaction" for r in paced) >= limit:
            break
    await send_records(
        paced, bootstrap=args.bootstrap, topics=names, rate=args.rate, on_sent=live.on_sent
    )
    deadline = time.monotonic() + 20
    while live.decided < len(live.sent_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(watcher, view)
    return live


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraudtools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=200.0, help="transactions a second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of live stream")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--warmup-days", type=int, default=35)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FRAUD_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("FRAUD_REDIS_URL", REDIS_URL),
        help="the Redis of the worker (its keys under the run's own prefix, removed after)",
    )
    args = parser.parse_args(argv)
    try:
        return _demo(args)
    finally:  # also after a failure: the stack is up either way
        print(f"\n{closing_message(args.bootstrap, args.redis_url)}", flush=True)


def closing_message(bootstrap: str, redis_url: str) -> str:
    """What the demo leaves running and how to stop it (the Redis URL's host and port
    only: it may carry a password)."""
    redis = urlsplit(redis_url)
    try:
        port = redis.port or 6379
    except ValueError:  # not a number: the message must not fail the demo's end
        port = 6379
    where = f"{redis.hostname or '127.0.0.1'}:{port}"
    return (
        f"The local stack is still running: Kafka on {bootstrap}, Redis on {where} (the "
        "demo's own topics and keys are removed). Stop it with `make down`; `make up` or "
        "`make demo` starts it again."
    )


def _demo(args: argparse.Namespace) -> int:
    if not (ROOT / "models" / "current").exists():
        print("no model yet: training one on generated data (make train) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "training", "train", "--generate"], cwd=ROOT, check=True
        )

    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    where = IsolatedWorker.named(run_id, bootstrap=args.bootstrap, redis_url=args.redis_url,
                                 data_dir=ROOT / ".stack" / run_id)
    log = ROOT / ".stack" / f"{run_id}-worker.log"
    asyncio.run(create_topics(args.bootstrap, where.topics))
    print(f"starting the worker ({run_id}, log {log.relative_to(ROOT)}) ...", flush=True)
    worker = WorkerProcess(where.env(), log).start()
    try:
        try:
            worker.wait_ready()
        except RuntimeError as exc:
            sys.exit(f"the worker did not start (log {log}):\n{exc}")
        live = asyncio.run(run(args, where.names))
    finally:
        worker.stop()
        asyncio.run(delete_topics(args.bootstrap, where.topics))
        _clear_redis(args.redis_url, where.prefix)

    lat = np.percentile(live.latencies_ms, [50, 95, 99, 100]) if live.latencies_ms else [0] * 4
    precision = live.true_alerts / live.alerts if live.alerts else 0.0
    recall = live.true_alerts / live.frauds_decided if live.frauds_decided else 0.0
    print(
        f"\nsummary: model {live.model}; {len(live.sent_at):,} transactions sent, "
        f"{live.decided:,} decided ({len(live.sent_at) - live.decided} missing, "
        f"{live.duplicates} duplicates)"
    )
    print(
        f"latency send -> decision: p50 {lat[0]:.1f} ms, p95 {lat[1]:.1f} ms, "
        f"p99 {lat[2]:.1f} ms, max {lat[3]:.1f} ms"
    )
    print(
        f"alerts {live.alerts:,} (review or decline): precision {precision:.2f}, recall "
        f"{recall:.2f} against {live.frauds_decided:,} generated frauds"
    )
    return 0 if live.decided == len(live.sent_at) else 1


def _clear_redis(url: str, prefix: str) -> None:
    from redis import Redis

    client = Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    client.close()


if __name__ == "__main__":
    raise SystemExit(main())
