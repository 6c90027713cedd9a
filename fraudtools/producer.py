"""``fraud-produce``: stream transactions (and their label events) to Kafka.

    fraud-produce --customers 500 --days 60 --rate 200          # generated, paced
    fraud-produce --csv my.csv --rate 0                          # a CSV, as fast as possible

Records are JSON keyed by card id; labels go to the labels topic when they become known
in event time. ``--shift-to-now`` moves every timestamp so that the data ends now.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from aiokafka import AIOKafkaProducer

from fraudtools.feed import Record, feed
from training import generator
from training.dataset import normalise, read_transactions

__all__ = ["TopicNames", "main", "send_records"]

log = logging.getLogger(__name__)


class TopicNames:
    def __init__(self, transactions: str = "transactions", labels: str = "fraud-labels") -> None:
        self.transactions = transactions
        self.labels = labels


async def send_records(
    records: Sequence[Record],
    *,
    bootstrap: str,
    topics: TopicNames,
    rate: float = 0.0,
    on_sent: Callable[[Record, float], None] | None = None,
) -> float:
    """Send ``records`` in order; ``rate`` > 0 paces transactions a second. Returns the
    seconds it took, once the broker acknowledged every record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    pending: list[asyncio.Future[object]] = []
    sent = 0
    try:
        for record in records:
            topic = topics.transactions if record.kind == "transaction" else topics.labels
            if rate > 0 and record.kind == "transaction":
                ahead = started + sent / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                sent += 1
            if on_sent is not None:
                on_sent(record, time.time())
            pending.append(await producer.send(topic, record.value, key=record.key))
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def load(args: argparse.Namespace) -> pd.DataFrame:
    if args.csv:
        frame = read_transactions(args.csv)
    else:
        config = generator.GeneratorConfig(
            customers=args.customers,
            terminals=args.customers * 2,
            days=args.days,
            start=args.start,
            seed=args.seed,
        )
        frame = normalise(generator.generate(config), source="generator")
    if args.shift_to_now:
        offset = datetime.now(UTC) - frame["TX_DATETIME"].max().to_pydatetime()
        frame = frame.assign(TX_DATETIME=frame["TX_DATETIME"] + offset)
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-produce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--csv", type=Path, help="replay this file (benchmark columns)")
    parser.add_argument("--customers", type=int, default=500, help="generated customers")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2018, 4, 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="transactions a second; 0 = max")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many transactions")
    parser.add_argument("--delay-days", type=float, default=7.0, help="label delay")
    parser.add_argument("--no-labels", action="store_true")
    parser.add_argument("--shift-to-now", action="store_true")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="transactions")
    parser.add_argument("--labels-topic", default="fraud-labels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    frame = load(args)
    if args.limit:
        frame = frame.iloc[: args.limit]
    records = feed(frame, delay_days=args.delay_days, labels=not args.no_labels)
    print(
        f"sending {len(frame):,} transactions and {len(records) - len(frame):,} labels "
        f"at {'max' if not args.rate else f'{args.rate:g}/s'} to {args.bootstrap}"
    )
    seconds = asyncio.run(
        send_records(
            records,
            bootstrap=args.bootstrap,
            topics=TopicNames(args.topic, args.labels_topic),
            rate=args.rate,
        )
    )
    print(f"done in {seconds:.1f} s ({len(records) / seconds:,.0f} records/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
