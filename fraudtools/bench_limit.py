"""The pass-through limit: consume → produce with aiokafka and nothing else.

    python -m fraudtools.bench_limit --source T --sink T2 --group G --count N [--pad 150]

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
import sys
import time
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def passthrough(args: argparse.Namespace) -> dict[str, float]:
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
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench_limit", description=__doc__,
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
    result = _runner()(passthrough(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["records"] >= args.count else 1


def _runner():  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


if __name__ == "__main__":
    raise SystemExit(main())
