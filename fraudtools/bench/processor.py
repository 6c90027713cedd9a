"""The worker's batch path without Kafka: ``BatchPipeline.decide`` on the local Redis.

    python -m fraudtools.bench.processor [--transactions 80000] [--no-id-index]

Decodes, exchanges with Redis, computes features, scores and builds the decision JSON for
generated transactions in batches of 500 (the first half warms the state up and is not
measured), and prints the rate, the wall time and this process's CPU time per
transaction. The figures docs/benchmarks.md quotes as "in-process" come from it. Its own
Redis key prefix, removed at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Awaitable

from redis.asyncio import Redis

from fraudtools.bench import data as bench_data
from fraudtools.bench.kafka import runner
from fraudtools.worker_process import ROOT
from service.model import ModelHolder
from service.pipeline import BatchPipeline, OutputTopics
from service.records import Message, Source
from service.state import RedisStore

__all__ = ["main"]


class _NoSink:
    """:meth:`BatchPipeline.decide` sends nothing: a send here is a bug."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[object]:
        raise RuntimeError(f"the in-process benchmark sends nothing (asked to send to {topic})")


async def measure(url: str, n: int, *, ids: bool) -> str:
    data = bench_data.build(n)
    records = data.take(n, start=0).transactions_only()
    # keyed by card id, as the worker requires (a miskeyed record is only dead-lettered)
    messages = [
        Message(v, Source("bench", 0, i), k)
        for i, (k, v) in enumerate(zip(records.keys, records.values, strict=True))
    ]
    redis = Redis.from_url(url)
    prefix = f"bench-processor-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis, card_key_secret=b"bench", prefix=prefix, ids=ids)
    pipeline = BatchPipeline(store, ModelHolder(ROOT / "models"), _NoSink(),
                             topics=OutputTopics("decisions", "alerts", "dlq"))
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
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await redis.unlink(*keys[i : i + 5000])
        await redis.aclose()
    measured = len(messages) - half
    if decided != measured:
        # a rate of dead letters is not a rate of decisions
        raise RuntimeError(f"{measured} measured, {decided} decided, {dead} dead-lettered")
    return (
        f"{measured / wall:,.0f} transactions/s in-process (id index {'on' if ids else 'off'}): "
        f"{wall / measured * 1e6:.1f} µs of wall and {cpu / measured * 1e6:.1f} µs of this "
        "process's CPU a transaction"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench.processor",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=80_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-id-index", action="store_true")
    args = parser.parse_args(argv)
    print(runner()(measure(args.redis_url, args.transactions, ids=not args.no_id_index)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
