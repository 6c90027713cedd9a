"""Fail-open's backlog: transactions decided on empty history, to be recorded later.

While the state store is away under ``fail_policy="open"``, transactions are decided on
empty history and kept here; once the store answers again they are recorded, in their
order, before anything newer, so later features count them as an uninterrupted run would.
The backlog is bounded: beyond ``limit`` the oldest are dropped, logged and counted
(``fraud_unrecorded_dropped_total``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fraudcore import Transaction
from service import metrics
from service.ports import StateStore

__all__ = ["MAX_UNRECORDED", "Backlog"]

log = logging.getLogger(__name__)

#: Transactions kept at most (~100 bytes of Python objects each, a few tens of MB in all).
MAX_UNRECORDED = 200_000
#: Transactions recorded per store call once the store is back.
_CHUNK = 500


class Backlog:
    """Degraded transactions waiting for the state store, oldest first."""

    def __init__(self, *, limit: int = MAX_UNRECORDED) -> None:
        self.limit = limit
        self._waiting: list[Transaction] = []
        self._recording = asyncio.Lock()  # batches of other cards call record at once

    def __len__(self) -> int:
        return len(self._waiting)

    def keep(self, transactions: Sequence[Transaction]) -> None:
        self._waiting += transactions
        excess = len(self._waiting) - self.limit
        if excess > 0:
            del self._waiting[:excess]
            metrics.UNRECORDED_DROPPED.inc(excess)
            log.error(
                "fail-open backlog full: %d degraded transactions will never be recorded",
                excess,
            )

    async def record(self, store: StateStore) -> None:
        """Record every waiting transaction in ``store``, in order (raises as the store does:
        what is not recorded yet stays)."""
        if not self._waiting:
            return
        async with self._recording:  # a chunk is recorded once, by one caller
            await self._record(store)

    async def _record(self, store: StateStore) -> None:
        while self._waiting:
            chunk = self._waiting[:_CHUNK]
            await store.exchange(chunk)  # the answers were given already, degraded
            del self._waiting[: len(chunk)]
            metrics.RECORDED_LATE.inc(len(chunk))
