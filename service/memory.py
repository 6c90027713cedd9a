"""The reference state store behind the :class:`~service.ports.StateStore` port.

:class:`MemoryStore` answers a batch the way :class:`~service.state.RedisStore` does —
duplicates flagged, conflicts answered (not raised), ids indexed across cards — with
:class:`fraudcore.InMemoryStore` doing the state. Unit tests run the whole batch path on
it, and :attr:`MemoryStore.down` stands for an outage: while it is set, every call raises
:class:`~fraudcore.errors.StateUnavailable`, as the Redis store does when Redis is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fraudcore import SPEC, FeatureSpec, InMemoryStore, LabelEvent, Transaction
from fraudcore.errors import DuplicateConflict, StateUnavailable
from fraudcore.state import LabelCheck
from service.lineage import Found, Lineage
from service.ports import Answer, Exchange, LabelsAnswer, OnPart

__all__ = ["MemoryStore"]


class MemoryStore:
    """In-process card and terminal state with the Redis store's batch semantics."""

    def __init__(
        self,
        *,
        spec: FeatureSpec = SPEC,
        ids: bool = True,
        part: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = InMemoryStore(spec=spec)
        self.spec = spec
        self.ids = ids  # index ids across cards: the same id with another card is refused
        self.part = part  # answers handed to on_part at a time
        self.clock = clock  # the id index forgets an id by this clock, as Redis expires it
        self.down = False  # an outage: every call raises StateUnavailable
        # transaction id -> (the first card that used it, until when it is remembered)
        self.first_card: dict[str, tuple[str, float]] = {}
        self.labels: list[LabelEvent] = []  # every label recorded (it matched), in order
        self.marker: Lineage | None = None  # the state's lineage marker (service.lineage)

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        self._check()
        answers = [self._one(tx) for tx in transactions]
        if on_part is not None:
            for start in range(0, len(answers), self.part):
                on_part(answers[start : start + self.part])
        return answers

    async def exchange_checked(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> tuple[list[Answer], Found | StateUnavailable]:
        answers = await self.exchange(transactions, on_part)
        try:
            return answers, await self.lineage()  # after the batch, as Redis reads it
        except StateUnavailable as exc:
            return answers, exc

    def _first_card(self, tx: Transaction) -> str | None:
        """The card that used this id before, while remembered (like the Redis store's id
        key: a card's retention after the event and after now); records this one if none."""
        now = self.clock()
        known = self.first_card.get(tx.transaction_id)
        if known is not None and known[1] > now:
            return known[0]
        until = max(tx.epoch, now) + self.spec.card_retention_seconds
        self.first_card[tx.transaction_id] = (tx.card_id, until)
        return None

    def _one(self, tx: Transaction) -> Answer:
        first = self._first_card(tx) if self.ids else None
        if first is not None and first != tx.card_id:
            return DuplicateConflict(
                f"transaction {tx.transaction_id!r} was seen before with another card; the "
                "first one stands. Give a corrected transaction a new id."
            )
        card = self.state.cards.get(tx.card_id)
        duplicate = first == tx.card_id or (
            card is not None and card.get(tx.transaction_id) is not None
        )
        capped = self.state.capped
        card_capped, terminal_capped = capped["card"], capped["terminal"]
        try:
            card_history, terminal_history = self.state.exchange(tx)
        except DuplicateConflict as conflict:
            return conflict
        return Exchange(
            card_history,
            terminal_history,
            duplicate,
            card_capped=capped["card"] - card_capped,
            terminal_capped=capped["terminal"] - terminal_capped,
        )

    async def forget(self, transactions: Sequence[Transaction]) -> None:
        self._check()
        for tx in transactions:
            self.state.forget(tx)
            known = self.first_card.get(tx.transaction_id)
            if known is not None and known[0] == tx.card_id:
                del self.first_card[tx.transaction_id]

    async def add_labels(self, labels: Sequence[LabelEvent]) -> LabelsAnswer:
        self._check()
        checks: list[LabelCheck] = []
        before = self.state.capped["label"]
        for label in labels:
            check = self.state.check_label(label)
            card = self.state.cards.get(label.card_id)
            on_card = card is not None and card.get(label.transaction_id) is not None
            if check == "match" and not on_card and self.ids:
                known = self.first_card.get(label.transaction_id)
                if known is not None and known[1] > self.clock() and known[0] != label.card_id:
                    check = "mismatch"  # the id index says another card used it
            checks.append(check)
            if check == "match":
                self.state.add_label(label)
                self.labels.append(label)
        return LabelsAnswer(checks, self.state.capped["label"] - before)

    async def lineage(self) -> Lineage | None:
        self._check()
        return self.marker

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        self._check()
        if self.marker is None:
            self.marker = lineage
        return self.marker

    async def complete_lineage(self) -> Lineage:
        self._check()
        current = self.marker or Lineage.new(now=self.clock(), complete=True)
        self.marker = Lineage(current.generation, current.since, True)
        return self.marker

    def flush(self) -> None:
        """Lose every piece of state, marker included (as FLUSHALL does to Redis)."""
        self.state = InMemoryStore(spec=self.spec)
        self.first_card.clear()
        self.marker = None

    async def ping(self) -> bool:
        return not self.down

    def _check(self) -> None:
        if self.down:
            raise StateUnavailable("the in-memory store is marked down")
