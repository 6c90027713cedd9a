"""The baseline: the same worker on a backlog with ``FRAUD_BATCH_SIZE=1`` (what batching
buys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraudtools.bench.kafka import preload, read_decisions
from fraudtools.bench.metrics import progress, stage_figures
from fraudtools.kafka_admin import create_topics

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.data import Slice

__all__ = ["phase"]


async def phase(bench: Bench, backlog: Slice) -> None:
    """``baseline_eps``: first to last decision of a batch-size-1 worker."""
    where = bench.isolated("base")
    await create_topics(bench.bootstrap, where.topics)
    await preload(bench.bootstrap, backlog, transactions=where.names.transactions,
                  labels=where.names.labels)
    n = backlog.transactions
    progress(f"baseline: {n:,} transactions pre-loaded; worker with FRAUD_BATCH_SIZE=1 ...")
    w = bench.worker("worker-batch1", where, FRAUD_BATCH_SIZE="1").start()
    watched = await bench.watch(where.names.decisions, n, bench.cpu_pids(worker=w.pid),
                                what="baseline", alive=[w])
    decisions = await read_decisions(bench.bootstrap, where.names.decisions)
    metrics = await w.metrics()
    w.stop()
    bench.result["baseline_eps"] = round(decisions.rate())
    bench.result["phases"]["baseline"] = {
        **bench.check_complete("baseline", decisions, n),
        "stages": stage_figures({}, metrics),
        "cpu": watched.cpu(["worker", "redis", "kafka", "bench"]),
    }
    progress(f"baseline: {bench.result['baseline_eps']:,} decisions/s")
