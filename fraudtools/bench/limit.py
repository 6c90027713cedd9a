"""The pass-through limit: consume → produce with aiokafka and nothing else.

    python -m fraudtools.bench.limit --source T --sink T2 --group G --count N [--pad 150]

:func:`phase` is the benchmark's first phase: it pre-loads the backlog's transactions and
runs this module as its own process (:func:`main`) on them.

What a Python worker costs before it does any work of its own, on the same broker with the
same records: a consumer group member reading batches of up to ``--batch`` records
(``getmany``), each record sent on (same key, its value padded by ``--pad`` bytes to the
size of a decision), and the broker's acknowledgement awaited before the next batch, like
the worker. uvloop, like the worker. No decode, no Redis, no model. It stops after
``--count`` records (or when nothing arrives for ``--idle`` seconds) and prints a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudtools.bench.kafka import preload, read_decisions, runner
from fraudtools.bench.metrics import progress
from fraudtools.bench.plan import DECISION_EXTRA
from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.worker_process import ROOT

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.data import Slice

__all__ = ["main", "passthrough", "phase"]


async def phase(bench: Bench, backlog: Slice) -> None:
    """``limit_eps``: the backlog's transactions through the pass-through, first to last
    output record (broker timestamps)."""
    topics = {"source": f"{bench.run_id}-limit-in", "sink": f"{bench.run_id}-limit-out"}
    await create_topics(bench.bootstrap, list(topics.values()))
    tx_only = backlog.transactions_only()
    took = await preload(bench.bootstrap, tx_only, transactions=topics["source"], labels="")
    progress(f"limit: {len(tx_only):,} transactions pre-loaded in {took:.1f} s; "
             "pass-through ...")
    group = f"{bench.run_id}-limit"
    bench.groups.append(group)
    pad = len(DECISION_EXTRA.format(version=bench.model_version))
    with (bench.logs / "limit.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fraudtools.bench.limit", "--bootstrap", bench.bootstrap,
             "--source", topics["source"], "--sink", topics["sink"], "--group", group,
             "--count", str(len(tx_only)), "--pad", str(pad)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    bench.children.append(process)
    pids = bench.cpu_pids(limit=process.pid)
    watched = await bench.watch(topics["sink"], len(tx_only), pids, what="limit",
                                alive=[process])
    process.wait(30)
    out = await read_decisions(bench.bootstrap, topics["sink"])
    bench.result["limit_eps"] = round(out.rate())
    bench.result["phases"]["limit"] = {
        "records": out.count, "output_pad_bytes": pad, "batch": 500,
        "cpu": watched.cpu(["limit", "kafka", "redis", "bench"]),
    }
    progress(f"limit: {bench.result['limit_eps']:,} records/s")
    await delete_topics(bench.bootstrap, list(topics.values()))


async def passthrough(args: argparse.Namespace) -> dict[str, float]:
    """The pass-through itself (in the child process): ``{"records": n, "seconds": s}``."""
    consumer = AIOKafkaConsumer(args.source, bootstrap_servers=args.bootstrap,
                                group_id=args.group, auto_offset_reset="earliest",
                                enable_auto_commit=True, auto_commit_interval_ms=2800)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    pad = b" " * args.pad
    done = 0
    first = last = 0.0
    idle_since = time.monotonic()
    try:
        while done < args.count:
            batch = await consumer.getmany(timeout_ms=200, max_records=args.batch)
            now = time.monotonic()
            if not batch:
                if now - idle_since > args.idle:
                    break
                continue
            idle_since = now
            first = first or now
            pending = []
            for messages in batch.values():
                for m in messages:
                    # Same size as a decision: the value with spaces before its closing brace.
                    value = m.value[:-1] + pad + b"}" if m.value else pad
                    pending.append(await producer.send(args.sink, value, key=m.key))
            await asyncio.gather(*pending)
            done += len(pending)
            last = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records": done, "seconds": last - first}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench.limit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--pad", type=int, default=0, help="bytes added to each value")
    parser.add_argument("--batch", type=int, default=500, help="most records a getmany")
    parser.add_argument("--idle", type=float, default=60.0, help="give up after this long idle")
    args = parser.parse_args(argv)
    result = runner()(passthrough(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["records"] >= args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
