"""Two workers in one consumer group: every transaction decided exactly once, and the
combined rate."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fraudtools.bench.kafka import BenchError, preload, read_decisions
from fraudtools.bench.metrics import progress
from fraudtools.kafka_admin import create_topics, group_members

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.data import Slice

__all__ = ["phase"]


def _decided(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("fraud_decisions_total{"))


async def phase(bench: Bench, warm: Slice, backlog: Slice) -> None:
    """``two_workers_eps``: both workers in a settled group, ``warm`` decided, then the
    backlog from the end of its load to the last decision."""
    where = bench.isolated("two")
    names = where.names
    await create_topics(bench.bootstrap, where.topics)
    pair = [bench.worker(f"worker-{i}", where).start() for i in (1, 2)]
    for w in pair:
        await w.healthy()
    deadline = time.monotonic() + 90
    while True:  # both members in, the group settled: no rebalance during the count
        state, members = await group_members(bench.bootstrap, where.app_id)
        if state == "Stable" and members == 2:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"two workers: group {state} with {members} members after 90 s")
        for w in pair:
            w.check()
        await asyncio.sleep(0.3)
    await preload(bench.bootstrap, warm, transactions=names.transactions, labels=names.labels)
    await bench.watch(names.decisions, warm.transactions, bench.cpu_pids(),
                      what="two workers warm-up", alive=pair)
    counts0 = [(await w.metrics()) for w in pair]
    n = backlog.transactions
    progress(f"two workers: both in the group; sending {n:,} transactions ...")
    loaded_from = time.time() * 1000
    took = await preload(bench.bootstrap, backlog, transactions=names.transactions,
                         labels=names.labels)
    loaded = time.time() * 1000
    await bench.watch(names.decisions, warm.transactions + n, bench.cpu_pids(),
                      what="two workers", alive=pair)
    decisions = await read_decisions(bench.bootstrap, names.decisions)
    counts1 = [(await w.metrics()) for w in pair]
    for w in pair:
        w.stop()

    check = bench.check_complete("two workers", decisions, warm.transactions + n)
    bench.result["two_workers_eps"] = round(decisions.rate(since_ms=loaded))
    bench.result["phases"]["two_workers"] = {
        **check,
        "exactly_once": check["missing"] == 0 and check["repeated"] == 0,
        "rate_after_load_eps": bench.result["two_workers_eps"],
        "rate_from_first_send_eps": round(decisions.rate(since_ms=loaded_from)),
        "load_seconds": round(took, 2),
        "per_worker_decisions": [int(_decided(b) - _decided(a))
                                 for a, b in zip(counts0, counts1, strict=True)],
    }
    progress(f"two workers: {bench.result['two_workers_eps']:,} decisions/s combined; "
             f"{check}")
