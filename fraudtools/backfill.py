"""``fraud-backfill``: rebuild the Redis feature state after Redis lost its data, deciding
nothing.

    fraud-backfill --data history.parquet [--columns TX_AMOUNT=amount,...] [--timezone UTC]
    fraud-backfill --topic     # the retained range of the transactions and labels topics
    fraud-backfill ... --json reports/backfill.json

The events go through the worker's own store, built from the same ``FRAUD_*`` settings
(:func:`service.app.build_store`: Redis URL and TLS, card-key secret, key prefix, id
index): transactions by ``StateStore.exchange`` in batches, labels by ``add_labels``.
Nothing is sent to Kafka (no decisions, no alerts, no dead letters), and the topics are read
without a consumer group: nothing is committed, the worker's groups are never joined.

- ``--data``: a history file as training reads it (``training.dataset.read_transactions``,
  CSV or Parquet, ``--columns`` as ``python -m training train`` takes it); its label events
  are ``training.dataset.label_events`` with the spec's label delay, all of them (a label
  known after the file's last transaction counts once transactions reach its known time).
- ``--topic``: each partition of the transactions and labels topics from its beginning up
  to its end offset at the start, decoded and validated as the worker does; what the worker
  would dead-letter is counted by reason and skipped.

Events come in replay order and in batches (:mod:`fraudtools.history`): the batches'
result is the events' one by one in that order.

Idempotent: the store is idempotent on the transaction id, so a second run records nothing
new and answers every transaction as a duplicate. Redis away (``StateUnavailable``): the
batch is held and tried again with backoff (``service.retry.hold``), said on stderr, never
skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, TypeVar

from fraudcore import LabelEvent, Transaction
from fraudcore.errors import DuplicateConflict, FraudError, StateUnavailable
from fraudtools.backfill_report import mark_state, progress_line, summary
from fraudtools.history import Batch, Batcher, Event, file_events, skip_future, topic_events
from service.ports import StateStore
from service.retry import Unavailable, hold
from service.settings import Settings

__all__ = ["Counts", "Options", "backfill", "main", "parser", "run", "tally"]

log = logging.getLogger(__name__)

T = TypeVar("T")


# -- counts and progress -----------------------------------------------------------------


@dataclass
class Counts:
    """What a run did so far; :meth:`as_dict` is the ``--json`` report."""

    source: str
    total: int = 0  # events (records in topic mode) the run will go through
    transactions: int = 0  # recorded: new to the store
    duplicates: int = 0  # already there (a second run: all of them)
    conflicts: int = 0  # DuplicateConflict: the id is already used with other content
    labels: int = 0
    label_verdicts: Counter[str] = field(default_factory=Counter)  # what add_labels returned
    capped: Counter[str] = field(default_factory=Counter)  # entries dropped by size bounds
    invalid: Counter[str] = field(default_factory=Counter)  # reason -> records skipped
    batches: int = 0
    batches_retried: int = 0
    redis_outages: int = 0
    seconds_waiting_for_redis: float = 0.0
    read_seconds: float = 0.0  # reading and checking the file before the first write
    write_seconds: float = 0.0  # from the first event to the last batch written
    elapsed_seconds: float = 0.0  # the whole run
    first_event: float | None = None  # event times of the transactions written (epoch)
    last_event: float | None = None
    state: str = ""  # what the run did to the state's marker (service.lineage)
    waiting: str | None = None  # why Redis is not answering right now
    waiting_since: float = 0.0
    attempts: int = 0

    @property
    def written(self) -> int:
        return self.transactions + self.duplicates + self.conflicts + self.labels

    @property
    def done(self) -> int:
        return self.written + sum(self.invalid.values())

    def rate(self) -> float:
        """Events written a second, over the whole run (reading the file included)."""
        return self.written / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def write_rate(self) -> float:
        """Events written a second while writing (what a topic run's rate is too)."""
        return self.written / self.write_seconds if self.write_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "events_total": self.total,
            "transactions_recorded": self.transactions,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "labels": self.labels,
            "label_verdicts": dict(self.label_verdicts),
            "capped": dict(self.capped),
            "invalid": sum(self.invalid.values()),
            "invalid_reasons": dict(self.invalid.most_common()),
            "batches": self.batches,
            "batches_retried": self.batches_retried,
            "redis_outages": self.redis_outages,
            "seconds_waiting_for_redis": round(self.seconds_waiting_for_redis, 3),
            "read_seconds": round(self.read_seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "events_per_second": round(self.rate(), 1),
            "write_events_per_second": round(self.write_rate(), 1),
            "first_event": self.first_event,
            "last_event": self.last_event,
            "state": self.state,
        }


async def _show_progress(
    counts: Counts, started: float, every: float, out: IO[str], clock: Callable[[], float]
) -> None:
    while True:
        await asyncio.sleep(every)
        now = clock()
        counts.write_seconds = now - started
        print(progress_line(counts, now), file=out, flush=True)


# -- writing -----------------------------------------------------------------------------


def tally(result: object) -> Counter[str]:
    """What ``add_labels`` returned, counted whatever it is: a count per value of a string,
    enum or bool (``{"match": 1}``), an int as a count, a sequence as the sum of its items',
    a dataclass field by field (``{"checks=match": 480, "checks=unknown": 20, "capped": 2}``);
    nothing for ``None``, the type's name for anything else."""
    out: Counter[str] = Counter()
    if result is None:
        return out
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        for f in dataclasses.fields(result):
            for key, n in tally(getattr(result, f.name)).items():
                out[f"{f.name}={key}" if key else f.name] += n
    elif isinstance(result, bool):
        out[str(result).lower()] += 1
    elif isinstance(result, int):
        out[""] += result
    elif isinstance(result, Enum):
        out[str(result.name)] += 1
    elif isinstance(result, str | float):
        out[str(result)] += 1
    elif isinstance(result, Iterable) and not isinstance(result, bytes):
        for item in result:
            out.update(tally(item))
    else:
        out[type(result).__name__] += 1
    return +out  # no zero counts


class _Writer:
    def __init__(
        self, store: StateStore, counts: Counts, *, max_delay: float, out: IO[str],
        clock: Callable[[], float],
    ) -> None:
        self.store, self.counts, self.max_delay, self.out, self.clock = (
            store, counts, max_delay, out, clock
        )
        # Whatever add_labels comes to return, it is counted (see tally).
        self._add_labels: Callable[[Sequence[LabelEvent]], Awaitable[object]] = store.add_labels
        self._failed = False  # the batch being written met Redis away at least once

    async def write(self, batch: Batch) -> None:
        c = self.counts
        c.batches += 1
        self._failed = False
        if batch.labels:
            labels = batch.labels
            result = await self._held(lambda: self._add_labels(labels), f"{len(labels)} labels")
            c.labels += len(labels)
            c.label_verdicts.update(tally(result))
        if batch.transactions:
            txs = batch.transactions
            answers = await self._held(
                lambda: self.store.exchange(txs), f"{len(txs)} transactions"
            )
            for answer in answers:
                if isinstance(answer, DuplicateConflict):
                    c.conflicts += 1
                    log.debug("conflict: %s", answer)
                    continue
                if answer.duplicate:
                    c.duplicates += 1
                else:
                    c.transactions += 1
                for kind in ("card", "terminal"):
                    dropped = getattr(answer, f"{kind}_capped", 0)
                    if dropped:
                        c.capped[kind] += int(dropped)
        c.batches_retried += self._failed

    async def _held(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        async def attempt() -> T | Unavailable:
            try:
                outcome = await call()
            except StateUnavailable as exc:
                self._unavailable(str(exc), what)
                return Unavailable(str(exc))
            self._back()
            return outcome

        return await hold(attempt, what=f"backfill: {what}", max_delay=self.max_delay)

    def _unavailable(self, reason: str, what: str) -> None:
        c = self.counts
        self._failed = True
        c.attempts += 1
        if c.waiting is None:
            c.redis_outages += 1
            c.waiting_since = self.clock()
            print(
                f"fraud-backfill: Redis unavailable ({reason}); holding the batch of {what} and "
                f"retrying with backoff (up to {self.max_delay:g} s between attempts), nothing "
                "is skipped",
                file=self.out, flush=True,
            )
        c.waiting = reason

    def _back(self) -> None:
        c = self.counts
        if c.waiting is not None:
            waited = self.clock() - c.waiting_since
            c.seconds_waiting_for_redis += waited
            print(
                f"fraud-backfill: Redis answers again after {waited:.1f} s ({c.attempts} "
                "attempts); the held batch is written again, in full",
                file=self.out, flush=True,
            )
        c.waiting, c.attempts = None, 0


async def backfill(
    store: StateStore,
    events: AsyncIterator[Event],
    counts: Counts,
    *,
    batch_size: int = 500,
    max_delay: float = 5.0,
    progress_seconds: float = 2.0,
    out: IO[str] = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> Counts:
    """Write ``events`` (in order) through ``store``; ``counts`` is updated as it goes."""
    started = clock()
    writer = _Writer(store, counts, max_delay=max_delay, out=out, clock=clock)
    batcher = Batcher(batch_size)
    ticker = asyncio.create_task(_show_progress(counts, started, progress_seconds, out, clock))
    try:
        async for event in events:
            if isinstance(event, Transaction):
                t = event.epoch
                counts.first_event = t if counts.first_event is None else min(counts.first_event, t)
                counts.last_event = t if counts.last_event is None else max(counts.last_event, t)
            batch = batcher.add(event)
            if batch is not None:
                await writer.write(batch)
        last = batcher.flush()
        if last is not None:
            await writer.write(last)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        counts.write_seconds = clock() - started
    return counts


# -- the command -------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    data: Path | None = None  # None: the topics
    columns: dict[str, str] | None = None
    timezone: str = "UTC"
    batch_size: int = 500
    progress_seconds: float = 2.0
    mark_complete: bool = False  # mark the state complete whatever the history covers


async def run(
    s: Settings, options: Options, counts: Counts | None = None, *, out: IO[str] = sys.stderr
) -> Counts:
    """Build the worker's store from ``s`` and write the source's events through it."""
    from service.app import build_store, check_redis

    store = build_store(s)
    await asyncio.to_thread(check_redis, s)  # an evicting Redis would lose what we write
    started = time.monotonic()
    source = str(options.data) if options.data else f"{s.topic_transactions}+{s.topic_labels}"
    counts = Counts(source) if counts is None else counts
    counts.source = source

    async def write(events: AsyncIterator[Event]) -> None:
        await backfill(
            store, events, counts, batch_size=options.batch_size, max_delay=s.retry_max_seconds,
            progress_seconds=options.progress_seconds, out=out,
        )

    try:
        if options.data is not None:
            from training.dataset import DatasetError, read_transactions

            if not options.data.exists():
                raise DatasetError(f"{options.data}: no such file")
            frame = read_transactions(
                options.data, columns=options.columns, naive_timezone=options.timezone
            )
            counts.total, events = file_events(frame)
            counts.read_seconds = time.monotonic() - started
            horizon = time.time() + s.max_future_seconds
            await write(skip_future(events, counts.invalid, horizon=horizon))
        else:
            def total(n: int) -> None:
                counts.total = n

            async with topic_events(s, counts.invalid, clock=time.time, total=total) as records:
                await write(records)
        await mark_state(store, counts, now=time.time(), force=options.mark_complete)
    finally:
        counts.elapsed_seconds = time.monotonic() - started
        await store.aclose()
    return counts


def parser() -> argparse.ArgumentParser:
    from training.cli import parse_columns

    p = argparse.ArgumentParser(
        prog="fraud-backfill", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="history file, CSV or Parquet (training's)")
    source.add_argument(
        "--topic", action="store_true",
        help="the retained range of FRAUD_TOPIC_TRANSACTIONS and FRAUD_TOPIC_LABELS",
    )
    p.add_argument("--columns", type=parse_columns, default=None,
                   help="with --data: map canonical to your column names: TX_AMOUNT=amount,...")
    p.add_argument("--timezone", default="UTC",
                   help="with --data: zone of timestamps without offset")
    p.add_argument("--batch-size", type=int, default=500, help="transactions per exchange")
    p.add_argument("--progress-seconds", type=float, default=2.0,
                   help="how often a progress line goes to stderr")
    p.add_argument("--json", type=Path, default=None, metavar="REPORT",
                   help="write the counts as JSON here")
    p.add_argument("--mark-complete", action="store_true",
                   help="mark the state complete at the end even when the history written "
                   "does not cover the 40 days a feature reads (the workers then stop "
                   "marking decisions degraded)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.columns or args.timezone != "UTC") and not args.data:
        parser().error("--columns and --timezone go with --data")
    if args.batch_size < 1 or args.progress_seconds <= 0:
        parser().error("--batch-size and --progress-seconds must be positive")
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from service import redaction
    from service.app import StartupError

    redaction.install()  # no card id in the Kafka clients' log lines
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
        format="fraud-backfill: %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the writer says when Redis is away, and when it is back
        logging.getLogger("service.retry").setLevel(logging.ERROR)
    options = Options(args.data, args.columns, args.timezone, args.batch_size,
                      args.progress_seconds, args.mark_complete)
    counts = Counts(str(args.data) if args.data else "topics")
    try:
        asyncio.run(run(Settings(), options, counts))
    except ValidationError as exc:
        print(f"fraud-backfill: invalid FRAUD_* settings:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{summary(counts)}\nfraud-backfill: interrupted; running it again is safe "
              "(idempotent)", file=sys.stderr)
        return 130
    except (StartupError, FraudError, ValueError, OSError, KafkaError) as exc:
        print(f"fraud-backfill: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a bug: the traceback, and what was done before it
        traceback.print_exc()
        print(f"{summary(counts)}\nfraud-backfill: stopped by the error above; the batch it "
              "hit and what follows were not written (running it again is safe)",
              file=sys.stderr)
        return 1
    print(summary(counts))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(counts.as_dict(), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
