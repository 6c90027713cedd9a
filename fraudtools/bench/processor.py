"""The worker's batch path without Kafka: ``BatchPipeline.decide`` on the local Redis.

    python -m fraudtools.bench.processor [--transactions 80000] [--no-id-index]
    python -m fraudtools.bench.processor --redis-mode cluster [--wait-replicas 0]
    python -m fraudtools.bench.processor --engine python   # the reference hot path

Decodes, exchanges with Redis, computes features, scores and builds the decision JSON for
generated transactions in batches of 500 (the first half warms the state up and is not
measured), and prints the rate, the wall time and this process's CPU time per
transaction. The figures docs/benchmarks.md quotes as "in-process" come from it. Its own
Redis key prefix, removed at the end (on a cluster: on every primary). The store is the
worker's own (``service.stores.build_store``): one Redis, or a Redis Cluster with
``--redis-mode cluster`` (``--redis-url`` then lists seed nodes; WAIT as the worker's,
``--wait-replicas``). The hot path is the worker's default, the compiled core
(``FRAUD_ENGINE=native``), or the Python reference with ``--engine python``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Awaitable

from pydantic import SecretStr

from fraudtools.bench import data as bench_data
from fraudtools.bench.kafka import runner
from fraudtools.bench.redis_nodes import MODES, RedisTarget
from fraudtools.worker_process import ROOT
from service import engine
from service.engine import Engine
from service.model import ModelHolder
from service.pipeline import BatchPipeline, OutputTopics
from service.records import Message, Source
from service.settings import Settings
from service.stores import build_store

__all__ = ["main"]


class _NoSink:
    """:meth:`BatchPipeline.decide` sends nothing: a send here is a bug."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[object]:
        raise RuntimeError(f"the in-process benchmark sends nothing (asked to send to {topic})")


async def measure(url: str, n: int, *, ids: bool, mode: str = "single",
                  wait_replicas: int | None = None, hot_path: Engine = "native") -> str:
    data = bench_data.build(n)
    records = data.take(n, start=0).transactions_only()
    # keyed by card id, as the worker requires (a miskeyed record is only dead-lettered)
    messages = [
        Message(v, Source("bench", 0, i), k)
        for i, (k, v) in enumerate(zip(records.keys, records.values, strict=True))
    ]
    prefix = f"bench-processor-{uuid.uuid4().hex[:8]}"
    settings = Settings(env="development", redis_mode=mode,
                        redis_url=SecretStr(url), redis_key_prefix=prefix,
                        unique_ids_across_cards=ids, redis_wait_replicas=wait_replicas,
                        engine=hot_path)
    store = build_store(settings)
    pipeline = BatchPipeline(store, ModelHolder(ROOT / "models"), _NoSink(),
                             topics=OutputTopics("decisions", "alerts", "dlq"),
                             decode=engine.decoder(hot_path), features=engine.features(hot_path))
    half = len(messages) // 2
    try:
        for i in range(0, half, 500):
            await pipeline.decide(messages[i : i + 500])
        wall, cpu = time.perf_counter(), time.process_time()
        decided = dead = 0
        for i in range(half, len(messages), 500):
            result = await pipeline.decide(messages[i : i + 500])
            for decision in result.decisions:
                decision.to_json()
            decided += len(result.decisions)
            dead += len(result.dead_letters)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await store.aclose()
        RedisTarget(mode, url).delete_prefix(prefix)
    measured = len(messages) - half
    if decided != measured:
        # a rate of dead letters is not a rate of decisions
        raise RuntimeError(f"{measured} measured, {decided} decided, {dead} dead-lettered")
    where = "one Redis" if mode == "single" else f"Redis Cluster, WAIT {settings.wait_replicas}"
    return (
        f"{measured / wall:,.0f} transactions/s in-process ({where}; {hot_path} hot path; id index "
        f"{'on' if ids else 'off'}): "
        f"{wall / measured * 1e6:.1f} µs of wall and {cpu / measured * 1e6:.1f} µs of this "
        "process's CPU a transaction"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench.processor",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=80_000)
    parser.add_argument("--redis-mode", choices=MODES, default="single")
    parser.add_argument("--redis-url",
                        help="default redis://127.0.0.1:6379/0, or redis://127.0.0.1:7100 "
                             "with --redis-mode cluster (seed nodes, comma-separated)")
    parser.add_argument("--wait-replicas", type=int,
                        help="FRAUD_REDIS_WAIT_REPLICAS (default: the worker's, 1 on a cluster)")
    parser.add_argument("--no-id-index", action="store_true")
    parser.add_argument("--engine", choices=("native", "python"), default="native",
                        help="FRAUD_ENGINE: the compiled core (default) or the Python reference")
    args = parser.parse_args(argv)
    url = args.redis_url or ("redis://127.0.0.1:7100" if args.redis_mode == "cluster"
                             else "redis://127.0.0.1:6379/0")
    print(runner()(measure(url, args.transactions, ids=not args.no_id_index,
                           mode=args.redis_mode, wait_replicas=args.wait_replicas,
                           hot_path=args.engine)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
