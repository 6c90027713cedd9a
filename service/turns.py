"""Which batches may exchange state at once, and the order their outputs are queued in.

A card's transactions must be recorded in the order they came (its features count the
ones before), so two batches that hold the same card exchange state one after the other,
in batch order; so do two that use the same transaction id (the first card to use an id
keeps it). Batches with nothing of that in common may exchange state at the same time: no
state one of them reads is written by the other, except the terminals' — and a terminal's
features read only its transactions older than the label delay
(``FeatureSpec.label_delay_days``, 7 days; with a delay of 0 the batch claims its
terminals too) and its labels, which this path does not write. So while one batch waits
for Redis, the next one (most often another set of cards) is already on its way, and a
slow round trip no longer holds every batch behind it. Outputs are still queued in batch
order.

::

    arrive ──► claim(cards) ──► clear() ──► exchange ──► exchanged() ──► send_turn() ──► queue
    (in order)  (in order)      waits for the        (at once with      waits for every
                                earlier batches      batches of other   earlier batch's
                                holding its cards    cards)             outputs to be queued

A batch that could not be decoded claims ``None``: every card, so it waits for every batch
before it, and every batch after it waits for it. While one batch holds on a part of the
path (the store away, say), a batch of other cards getting past it does not clear the
worker's fault (:meth:`Turns.clear`).

One deviation from one batch at a time, on a terminal at its size bound
(``terminal_max_entries``) only: a later batch's transaction recorded first may push out
the terminal's oldest entry before an earlier batch counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence, Set
from contextvars import ContextVar

from fraudcore import SPEC, FeatureSpec, Transaction
from service.readiness import Readiness

__all__ = ["Turn", "Turns", "claims"]


def claims(transactions: Sequence[Transaction], spec: FeatureSpec = SPEC) -> set[Hashable]:
    """What a batch's exchange must have to itself: its cards, its transaction ids, and its
    terminals when their features read the newest transactions (a label delay of 0)."""
    held: set[Hashable] = {tx.card_id for tx in transactions}
    # The id index: the first card to use an id keeps it, so ids are taken in batch order.
    held.update(("id", tx.transaction_id) for tx in transactions)
    if spec.label_delay_days <= 0:
        held.update(("terminal", tx.terminal_id) for tx in transactions)
    return held


#: The batch the running task works on.
_CURRENT: ContextVar[Turn | None] = ContextVar("turn", default=None)


class Turn:
    """One batch's place (:meth:`Turns.arrive`)."""

    def __init__(self, turns: Turns, previous_queued: asyncio.Future[None] | None) -> None:
        self._turns = turns
        self._previous_queued = previous_queued
        self.queued: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.cards: Set[Hashable] | None = None
        self._done = asyncio.Event()  # its exchange is over
        self._waits: list[asyncio.Event] = []
        self.holding: set[str] = set()  # the parts of the path it holds on (Readiness)

    def claim(self, cards: Set[Hashable] | None) -> None:
        """The batch's cards (None: unknown, so all); called in batch order."""
        self.cards = cards
        self._waits = [t._done for t in self._turns.exchanging if t.overlaps(cards)]
        self._turns.exchanging.append(self)

    def overlaps(self, cards: Set[Hashable] | None) -> bool:
        return self.cards is None or cards is None or not self.cards.isdisjoint(cards)

    async def clear(self) -> None:
        """Wait until every earlier batch holding one of this batch's cards has exchanged."""
        for done in self._waits:
            await done.wait()
        self._waits = []

    def exchanged(self) -> None:
        """The exchange is over (done, given up or failed): the batches waiting for it go."""
        if not self._done.is_set():
            self._done.set()
            if self in self._turns.exchanging:  # not when cancelled before it claimed
                self._turns.exchanging.remove(self)

    async def send_turn(self) -> None:
        """Wait until every earlier batch's outputs are queued (or it gave up)."""
        if self._previous_queued is not None:
            await asyncio.shield(self._previous_queued)
            self._previous_queued = None

    def leave(self) -> None:
        """The batch is done with both turns, whatever happened to it."""
        self.exchanged()
        if not self.queued.done():
            self.queued.set_result(None)


class Turns:
    """The batches in flight, in the order they came."""

    def __init__(self) -> None:
        self.exchanging: list[Turn] = []  # claimed and not exchanged yet, in batch order
        self._last_queued: asyncio.Future[None] | None = None

    def enter(self, turn: Turn) -> None:
        """The running task works on ``turn``'s batch (:meth:`fault`, :meth:`clear`)."""
        _CURRENT.set(turn)

    def fault(self, readiness: Readiness, part: str, reason: str) -> None:
        """The running batch holds on ``part``: so does the worker."""
        turn = _CURRENT.get()
        if turn is not None:
            turn.holding.add(part)
        readiness.fault(part, reason)

    def clear(self, readiness: Readiness, part: str) -> None:
        """The running batch got past ``part``: the worker did, unless another batch of
        other cards still holds on it (so a held batch's fault is not cleared between its
        retries by the batches going on beside it)."""
        turn = _CURRENT.get()
        if turn is not None:
            turn.holding.discard(part)
        if not any(part in t.holding for t in self.exchanging if t is not turn):
            readiness.clear(part)

    def arrive(self) -> Turn:
        """A new batch's place, after every batch so far (no await: call it on arrival)."""
        previous = self._last_queued
        turn = Turn(self, None if previous is None or previous.done() else previous)
        self._last_queued = turn.queued
        return turn
