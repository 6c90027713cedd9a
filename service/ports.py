"""The ports of the batch path: what :class:`~service.pipeline.BatchPipeline` needs from the
outside, as small protocols.

- :class:`StateStore`: the feature state of cards and terminals. Implemented by
  :class:`service.state.RedisStore` (Redis) and :class:`service.memory.MemoryStore` (the
  reference semantics of :class:`fraudcore.InMemoryStore`, for tests and tools).
- :class:`Sink`: where outputs go. Implemented by :class:`service.sink.ProducerSink`
  (Kafka, through the Faust app's producer); tests pass a recording one.
- :class:`Models`: the model in service (:class:`service.model.ModelHolder`).
- :class:`Rules`: the analysts' rules in service (:class:`service.rules.RulesHolder`).

A store says it cannot be reached by raising
:class:`~fraudcore.errors.StateUnavailable`, and nothing else
for that: every other exception is a bug or a refusal, not an outage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fraudcore import CardHistory, LabelEvent, TerminalHistory, Transaction
from fraudcore.errors import DuplicateConflict, StateUnavailable
from fraudcore.state import LabelCheck
from fraudrules import RuleSet
from service.lineage import Found, Lineage
from service.model import Model

__all__ = [
    "Answer",
    "Exchange",
    "LabelsAnswer",
    "Models",
    "OnPart",
    "Rules",
    "Sink",
    "StateStore",
    "StateUnavailable",
]


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the store answers for one transaction: the histories before it."""

    card: CardHistory
    terminal: TerminalHistory
    duplicate: bool
    #: Entries the size bounds (``FeatureSpec.*_max_*``) dropped from the card's and the
    #: terminal's history as this one was recorded: a card or terminal beyond its bound.
    card_capped: int = 0
    terminal_capped: int = 0


@dataclass(frozen=True, slots=True)
class LabelsAnswer:
    """What the store did with a batch of labels: per label, in order, what it found
    (``"match"``: recorded; ``"unknown"``, ``"mismatch"``: recorded nowhere, see
    :meth:`fraudcore.InMemoryStore.check_label`), and how many older labels the terminals'
    size bound dropped."""

    checks: list[LabelCheck]
    capped: int = 0


#: Per transaction, in batch order: its histories, or why its id is refused.
Answer = Exchange | DuplicateConflict
#: Called with the answers in order, a part at a time, while the store works on the rest.
OnPart = Callable[[Sequence[Answer]], None]


class StateStore(Protocol):
    """Card and terminal state with the semantics of :class:`fraudcore.InMemoryStore`.

    :meth:`exchange` answers each transaction with its card's and terminal's history
    *before* it and records it, in batch order (a card's second transaction in a batch
    sees its first). The same transaction again is answered as a duplicate with the same
    history; the same id with other content (or, with the id index, on another card) is
    answered with a :class:`~fraudcore.errors.DuplicateConflict` and recorded nowhere.
    """

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]: ...

    async def exchange_checked(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> tuple[list[Answer], Found | StateUnavailable]:
        """:meth:`exchange`, and the state's marker (:mod:`service.lineage`) read with it,
        in the same round trip where the store can: the marker (None: there is none), or
        the error of its read alone (the exchange's own errors are raised)."""
        ...

    async def forget(self, transactions: Sequence[Transaction]) -> None:
        """Undo what :meth:`exchange` recorded for these transactions (card, terminal, id
        index), so that when they come again they are new: for transactions that got no
        decision. Only for transactions that exchange answered as not duplicates."""
        ...

    async def add_labels(self, labels: Sequence[LabelEvent]) -> LabelsAnswer:
        """Record fraud labels on their terminals, each only if it matches the transaction
        recorded under its id (card, terminal, amount, time); the first label of a
        transaction wins."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers right now (for ``/health``); never raises."""
        ...

    async def lineage(self) -> Lineage | None:
        """The state's marker (:mod:`service.lineage`), or None when there is none."""
        ...

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        """Write the marker unless there is one; returns the marker there afterwards."""
        ...

    async def complete_lineage(self) -> Lineage:
        """Mark the state complete (rebuilt by ``fraud-backfill``)."""
        ...


class Sink(Protocol):
    """Where a batch's outputs go."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[object]:
        """Queue one record; returns what completes when the broker has acknowledged it
        (and fails if it never will). Raises when the record cannot even be queued."""
        ...


class Models(Protocol):
    """The model in service and the challenger in its shadow (``None``: none); read once
    per batch, so a swap never splits one."""

    @property
    def model(self) -> Model: ...

    @property
    def challenger(self) -> Model | None: ...


class Rules(Protocol):
    """The rules in service (``None``: no rules file); read once per batch, like the model."""

    @property
    def rules(self) -> RuleSet | None: ...

    def failed(self, version: str, first: Mapping[str, tuple[str, str]]) -> None:
        """Rules of ``version`` failed on a batch: rule id -> (transaction id, reason) of
        its first failure there (to log, once per rule and version)."""
        ...
