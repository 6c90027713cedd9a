"""Whether the feature state is whole: detecting a state store that lost its data.

Redis keeps the state in memory; ``FLUSHALL``, a restart without persistence, or eviction
empty it, and every card then looks new. Nothing in the keys themselves says so, so the
store keeps a *marker* beside them (``<prefix>:v1:lineage``)::

    generation  a random id, new each time the state starts empty
    since       when that happened (the worker's clock)
    complete    whether the state holds everything since long enough ago: true for a first
                start (nothing came before it) and once ``fraud-backfill`` has rebuilt it

:class:`StateLineage` reads the marker once per batch, in the batch's state exchange (one
Redis: the same round trip, after the batch's commands; a cluster: beside it), so no round
trip is added to the batch's path. A marker that is gone, or names another
generation than the one the worker saw, means the state was lost: logged as an error,
counted in ``fraud_state_lost_total``, shown on ``/health``, and a new marker is written
(``since`` = now, not complete; one worker's write wins, the others adopt it). While the
state is partial — not complete, and younger than the longest history a feature reads
(the terminal retention, 40 days) — every decision is marked ``degraded`` and counted in
``fraud_partial_state_decisions_total``, and ``fraud_state_partial`` is 1.

At the first batch, a missing marker is either a first start or a loss that happened while
no worker ran. The consumer group tells them apart: if it has committed offsets, the
worker has decided transactions before, so their state should be there — a loss.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from fraudcore import SPEC, FeatureSpec
from fraudcore.errors import StateUnavailable
from service import metrics

__all__ = ["UNREAD", "Found", "Lineage", "LineageStore", "StateLineage"]

log = logging.getLogger(__name__)


class _Unread:
    """:meth:`StateLineage.check` reads the marker itself."""


UNREAD = _Unread()


@dataclass(frozen=True, slots=True)
class Lineage:
    """The marker's content."""

    generation: str
    since: float
    complete: bool

    def encode(self) -> bytes:
        return f"{self.generation}|{self.since!r}|{int(self.complete)}".encode()

    @classmethod
    def decode(cls, raw: object) -> Lineage:
        """From what Redis answers (bytes, or text with ``decode_responses``)."""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        generation, since, complete = text.split("|")
        return cls(generation, float(since), complete == "1")

    @staticmethod
    def unreadable(exc: ValueError, raw: object = None) -> StateUnavailable:
        """What a marker key holding something else (``decode``'s ``exc``) tells a batch:
        the state cannot be vouched for, and the marker's error, not the batch's."""
        shown = "" if raw is None else f": {raw!r}"
        return StateUnavailable(f"the state's marker is not one ({exc}){shown}")

    @classmethod
    def new(cls, *, now: float, complete: bool) -> Lineage:
        return cls(secrets.token_hex(8), now, complete)


#: What a store read of the marker: the marker, or None when there is none.
Found = Lineage | None


class LineageStore(Protocol):
    """What a state store keeps of the marker (Redis: one key beside the state)."""

    async def lineage(self) -> Lineage | None:
        """The marker, or None when there is none."""
        ...

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        """Write ``lineage`` unless a marker is there; returns the marker that is there
        then (another worker's, when it was first)."""
        ...


class StateLineage:
    """The worker's view of the state's lineage; :meth:`check` once per batch."""

    def __init__(
        self,
        store: LineageStore,
        *,
        clock: Callable[[], float],
        spec: FeatureSpec = SPEC,
        decided_before: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.spec = spec
        #: Whether this worker's group decided transactions before (committed offsets);
        #: set by the wiring once the consumer exists. Unknown: taken as a first start.
        self.decided_before = decided_before
        self.seen: Lineage | None = None
        self.lost_at: float | None = None  # when a loss was last detected
        self.partial = False  # what the last check found
        # Batches of other cards run their checks at once (service.turns): one at a time
        # here, so that one loss is detected, counted and answered once.
        self._turn = asyncio.Lock()

    async def check(self, found: Found | _Unread = UNREAD) -> bool:
        """Read the marker (or take ``found``, the marker the store read beside a batch's
        exchange); returns whether the state is partial (decisions are marked). Raises what
        the store raises (:class:`~fraudcore.errors.StateUnavailable`)."""
        async with self._turn:
            return await self._check(found)

    async def _check(self, found: Found | _Unread) -> bool:
        marker = await self.store.lineage() if isinstance(found, _Unread) else found
        if self._changed(marker) and not isinstance(found, _Unread):
            # Read beside a batch, maybe before another batch's check wrote the new marker:
            # read it again now, so that one loss is answered once.
            marker = await self.store.lineage()
        if marker is None or self._changed(marker):
            marker = await self._begin(marker)
        self.seen = marker
        partial = not marker.complete and (
            self.clock() - marker.since < self.spec.terminal_retention_seconds
        )
        metrics.STATE_PARTIAL.set(int(partial))
        self.partial = partial
        return partial

    def _changed(self, marker: Found) -> bool:
        seen = self.seen
        return marker is None or (seen is not None and marker.generation != seen.generation)

    async def settle(self, found: Found | StateUnavailable) -> bool:
        """Whether the state is partial, from the marker read beside a batch's exchange
        (:meth:`~service.ports.StateStore.exchange_checked`). If reading it failed, or
        writing a new one does, what the last check found."""
        if isinstance(found, StateUnavailable):
            return self.partial
        try:
            return await self.check(found)
        except StateUnavailable:
            return self.partial

    async def _begin(self, found: Lineage | None) -> Lineage:
        now = self.clock()
        first_look = self.seen is None
        if first_look and found is None:
            lost = self.decided_before is not None and await self.decided_before()
            why = "no state marker, but this group decided transactions before"
        elif found is None:
            lost, why = True, "the state marker is gone (FLUSHALL, a restart without data)"
        else:
            lost, why = True, f"the state marker changed (generation {found.generation})"
        if found is not None:  # another worker wrote a new one already: adopt it
            marker = found
        else:
            marker = await self.store.start_lineage(Lineage.new(now=now, complete=not lost))
        if lost:
            self.lost_at = now
            metrics.STATE_LOST.inc()
            log.error(
                "feature state lost: %s. Decisions are marked degraded until the state is "
                "rebuilt with fraud-backfill or %.0f days have passed (docs/reliability.md, "
                "'Runbook: Redis lost its data')",
                why,
                self.spec.terminal_retention_seconds / 86_400,
            )
        elif first_look:
            log.info("feature state: %s", self.describe(marker))
        return marker

    def describe(self, marker: Lineage | None = None) -> str:
        """One line for logs and ``/health``."""
        marker = marker or self.seen
        if marker is None:
            return "not checked yet"
        since = datetime.fromtimestamp(marker.since, UTC).isoformat(timespec="seconds")
        if marker.complete:
            return f"complete (generation {marker.generation} since {since})"
        return f"partial: started empty at {since} (generation {marker.generation})"
