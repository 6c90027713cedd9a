"""``fraud-tail``: print decisions as they arrive (alerts by default).

fraud-tail                     # fraud-alerts, from now on
fraud-tail --topic decisions --from-beginning
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer

__all__ = ["format_decision", "main"]


def format_decision(value: bytes) -> str:
    d = orjson.loads(value)
    flags = "".join(f" [{f}]" for f in ("duplicate", "degraded") if d.get(f))
    return (
        f"{d['decided_at']}  {d['action']:<8} score {d['score']:.4f}  tx {d['transaction_id']}"
        f"  card {d['card_id']}  {d['amount']:>10.2f}  model {d['model_version']}{flags}"
    )


async def tail(bootstrap: str, topic: str, from_beginning: bool, limit: int) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"fraud-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for message in consumer:
            print(format_decision(message.value), flush=True)
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-tail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topic", default="fraud-alerts")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        asyncio.run(tail(args.bootstrap, args.topic, args.from_beginning, args.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
