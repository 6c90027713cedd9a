"""What a ``fraud-backfill`` run says (progress, summary) and what it does to the state's
marker at the end (:mod:`service.lineage`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fraudcore import SPEC
from service.ports import StateStore

if TYPE_CHECKING:
    from fraudtools.backfill import Counts

__all__ = ["mark_state", "progress_line", "summary"]


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(counts: Counts, now: float) -> str:
    """One progress line: done/total, rate, ETA, the counts so far, a Redis wait if any."""
    rate = counts.done / counts.write_seconds if counts.write_seconds > 0 else 0.0
    share = f" ({counts.done / counts.total:.1%})" if counts.total else ""
    left = max(counts.total - counts.done, 0)
    eta = _duration(left / rate) if rate > 0 else "?"
    line = (
        f"fraud-backfill: {counts.done:,}/{counts.total:,} events{share}, {rate:,.0f}/s, "
        f"ETA {eta} | {counts.transactions:,} recorded, {counts.duplicates:,} duplicates, "
        f"{counts.conflicts:,} conflicts, {counts.labels:,} labels, "
        f"{sum(counts.invalid.values()):,} invalid"
    )
    if counts.waiting:
        line += (
            f" | Redis unavailable for {now - counts.waiting_since:.0f} s "
            f"(attempt {counts.attempts}), retrying: {counts.waiting}"
        )
    return line


def summary(counts: Counts) -> str:
    c = counts
    text = (
        f"fraud-backfill: {c.source}: {c.transactions:,} transactions recorded, "
        f"{c.duplicates:,} duplicates (already there), {c.conflicts:,} conflicts, "
        f"{c.labels:,} labels, {sum(c.invalid.values()):,} invalid skipped; "
        f"{c.written:,} events in {c.elapsed_seconds:.1f} s ({c.rate():,.0f} events/s"
    )
    if c.read_seconds:
        text += (
            f"; reading the file {c.read_seconds:.1f} s, writing {c.write_seconds:.1f} s at "
            f"{c.write_rate():,.0f} events/s"
        )
    text += ")"
    if c.redis_outages:
        text += (
            f"; Redis was unavailable {c.redis_outages} time(s) ({c.seconds_waiting_for_redis:.1f}"
            f" s), {c.batches_retried} batch(es) written again (their transactions that the "
            "failed attempt had recorded count as duplicates)"
        )
    for reason, n in c.invalid.most_common(10):
        text += f"\n  invalid {n:,}: {reason}"
    if c.label_verdicts:
        text += f"\n  add_labels answered: {dict(c.label_verdicts)}"
    if c.capped:
        text += f"\n  dropped by the size bounds: {dict(c.capped)}"
    if c.state:
        text += f"\n  state: {c.state}"
    return text


async def mark_state(
    store: StateStore, counts: Counts, *, now: float, force: bool = False,
    retention: float = SPEC.terminal_retention_seconds,
) -> bool:
    """Mark the state complete (service.lineage) when the history written covers what a
    feature reads: from ``retention`` before now up to when the state started empty (the
    workers recorded everything since). Else it is left partial, and said why."""
    marker = await store.lineage()
    until = marker.since if marker is not None else now
    first, last = counts.first_event, counts.last_event
    days = retention / 86_400
    covered = first is not None and last is not None and first <= now - retention
    covered = covered and last is not None and last >= until - 60.0
    if covered or force:
        done = await store.complete_lineage()
        counts.state = f"marked complete (generation {done.generation})" + (
            "" if covered else " by --mark-complete"
        )
        return True
    span = "no transactions" if first is None or last is None else (
        f"transactions from {_iso(first)} to {_iso(last)}"
    )
    counts.state = (
        f"left partial: the history written ({span}) does not cover the {days:g} days before "
        f"now up to the loss ({_iso(until)}); the workers mark decisions degraded until it "
        "does (run with the rest of the history) or --mark-complete"
    )
    return False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
