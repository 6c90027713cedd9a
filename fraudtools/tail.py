"""``fraud-tail``: print decisions as they arrive (alerts by default).

fraud-tail                     # fraud-alerts, from now on
fraud-tail --topic decisions --from-beginning
fraud-tail --topic fraud-decision-log --from-beginning --to-end --raw > log.jsonl

``--raw`` prints each record's value as it came, one a line (JSON lines: what
``python -m training from-log`` reads); ``--to-end`` stops at the end the topic had when
the tail started, so a copy of a topic is a command that ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudtools.kafka_admin import list_topics

__all__ = ["format_decision", "main"]


def format_decision(value: bytes) -> str:
    d = orjson.loads(value)
    flags = "".join(f" [{f}]" for f in ("duplicate", "degraded") if d.get(f))
    return (
        f"{d['decided_at']}  {d['action']:<8} score {d['score']:.4f}  tx {d['transaction_id']}"
        f"  card {d['card_id']}  {d['amount']:>10.2f}  model {d['model_version']}{flags}"
    )


async def tail(
    bootstrap: str,
    topic: str,
    from_beginning: bool,
    limit: int,
    *,
    raw: bool = False,
    to_end: bool = False,
) -> int:
    """Print the topic's records; returns how many were printed."""
    if topic not in await list_topics(bootstrap):
        raise SystemExit(f"fraud-tail: no topic {topic!r} on {bootstrap}")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,  # every partition, no offsets committed
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    out = sys.stdout.buffer
    try:
        partitions = [TopicPartition(topic, p) for p in
                      sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions) if to_end else {}
        starts = (await consumer.beginning_offsets(partitions) if from_beginning else ends)
        left = {tp for tp in partitions if to_end and starts[tp] < ends[tp]}
        while not to_end or left:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batches.items():
                for message in messages:
                    if to_end and message.offset >= ends[tp]:
                        left.discard(tp)
                        break
                    if raw:
                        out.write((message.value or b"") + b"\n")
                    else:
                        out.write(format_decision(message.value).encode() + b"\n")
                    seen += 1
                    if to_end and message.offset + 1 >= ends[tp]:
                        left.discard(tp)
                    if limit and seen >= limit:
                        return seen
                out.flush()
    finally:
        out.flush()
        await consumer.stop()
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-tail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topic", default="fraud-alerts")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many")
    parser.add_argument("--raw", action="store_true", help="each value as it came, one a line")
    parser.add_argument(
        "--to-end", action="store_true", help="stop at the end the topic had at the start"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        seen = asyncio.run(tail(args.bootstrap, args.topic, args.from_beginning, args.limit,
                                raw=args.raw, to_end=args.to_end))
        if args.to_end:
            print(f"fraud-tail: {seen:,} records of {args.topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
