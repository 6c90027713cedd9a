"""The label path: fraud labels checked against the transactions they name, then recorded.

::

    messages ─► decode, validate ─► check against the card's recorded transaction ─► record
                 │ (dead letters)      │ mismatch, or absent (the card has later ones):
                 │                     │   dead letter at once
                 ▼                     │ unknown: waits for it (up to label_wait_seconds)
           invalid, too far ahead,     ▼
           miskeyed, too old       the terminal's labels (bounded, see FeatureSpec)

A label counts in a terminal's fraud rate, so a wrong one moves the score of every later
transaction there: it must name a transaction the store recorded, with the same card,
terminal, amount and time. Labels and transactions come on two topics, so a label may be
read before its transaction is decided (a lagging partition, a restart): one whose
transaction the store does not hold yet — and whose card has recorded nothing later, so it
may still come — is tried again (the rest of the batch recorded
meanwhile) until it is, or until ``label_wait_seconds`` have passed — then it is
dead-lettered as unknown. A store that cannot be reached holds the batch, as for
transactions: labels are never decided on, they wait.

Waiting labels are checked again as soon as the transaction path has recorded a batch
(:meth:`Progress.moved`), at the latest every second: a label whose transaction was just
recorded counts for the transactions right behind it, even in a backlog that runs through
days of event time in a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from fraudcore import SPEC, FeatureSpec, LabelEvent
from fraudcore.errors import StateUnavailable
from service import metrics
from service.dead_letters import DeadLetters, check_each
from service.delivery import Output
from service.ports import LabelsAnswer, StateStore
from service.readiness import Readiness
from service.records import DeadLetter, Message, decode_label
from service.retry import Sleep, Unavailable, hold

__all__ = ["LabelOptions", "LabelPath", "Progress"]

log = logging.getLogger(__name__)

#: Longest pause between two checks of labels waiting for their transaction.
RECHECK_MAX = 1.0


class Progress:
    """Tells waiting labels that the transaction path recorded a batch."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def moved(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    def mark(self) -> asyncio.Event:
        """An event set at the next :meth:`moved`: take it *before* looking at the state."""
        if self._event is None:
            self._event = asyncio.Event()
        return self._event


@dataclass(frozen=True, slots=True)
class LabelOptions:
    max_future_seconds: float = 3600.0  # labels dated further ahead are dead-lettered
    retry_max_seconds: float = 5.0  # longest backoff while the store is away
    wait_seconds: float = 30.0  # how long a label waits for its transaction to be recorded


class LabelPath:
    """Checks and records batches of labels; dead-letters the ones refused."""

    def __init__(
        self,
        store: StateStore,
        *,
        dead: DeadLetters,
        readiness: Readiness,
        deliver: Callable[[list[Output]], Awaitable[None]],
        dlq: str,
        options: LabelOptions = LabelOptions(),
        progress: Progress | None = None,
        spec: FeatureSpec = SPEC,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.dead = dead
        self.readiness = readiness
        self.deliver = deliver  # sends records until the broker has them all
        self.dlq = dlq
        self.options = options
        self.progress = progress if progress is not None else Progress()
        self.spec = spec
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep

    async def record(self, batch: Sequence[Message]) -> int:
        """Check and record a batch of labels, deliver its dead letters; returns how many
        labels were recorded."""
        recorded = 0
        dead: list[DeadLetter] = []
        try:
            labels, dead = self._decode(batch)
            recorded = await self._record(labels, dead)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the batch
            recorded, dead = 0, self.dead.batch(batch, "labels", exc)
        metrics.LABELS.inc(recorded)
        if dead:
            await self.deliver([Output(self.dlq, d.key, d.value) for d in dead])
        return recorded

    def _decode(
        self, batch: Sequence[Message]
    ) -> tuple[list[tuple[LabelEvent, Message]], list[DeadLetter]]:
        checked = check_each(
            batch,
            decode_label,
            lambda label, message: (
                self._refused(label) or self.dead.miskeyed(message, label.card_id)
            ),
        )
        return checked.kept, self.dead.many(checked.refused, checked.poison)

    def _refused(self, label: LabelEvent) -> str | None:
        """Why a label is refused before the store is asked, if it is."""
        horizon = self.clock() + self.options.max_future_seconds
        if max(label.epoch, label.known_epoch) > horizon:
            return (
                f"timestamp or known_at: more than {self.options.max_future_seconds:g} s ahead "
                "of the worker's clock"
            )
        if label.known_epoch - label.epoch > self.spec.card_retention_seconds:
            days = self.spec.card_retention_seconds / 86_400
            return (
                f"known_at: more than {days:g} days after the transaction, which its card "
                "no longer keeps (a label can count only while the card holds it)"
            )
        return None

    async def _record(
        self, labels: list[tuple[LabelEvent, Message]], dead: list[DeadLetter]
    ) -> int:
        recorded = 0
        waiting = labels
        started = self.monotonic()
        delay = 0.05
        while waiting:
            moved = self.progress.mark()
            answer = await hold(
                partial(self._add, [label for label, _ in waiting]),
                what="labels",
                max_delay=min(self.options.retry_max_seconds, RECHECK_MAX),
                sleep=self._pause,
            )
            if answer.capped:
                metrics.CAPPED.labels("label").inc(answer.capped)
            unknown = []
            for (label, message), check in zip(waiting, answer.checks, strict=True):
                if check == "match":
                    recorded += 1
                elif check == "mismatch":
                    dead.append(self.dead.of(message, _MISMATCH))
                elif check == "absent":
                    dead.append(self.dead.of(message, _ABSENT))
                else:
                    unknown.append((label, message))
            waiting = unknown
            metrics.LABELS_WAITING.set(len(waiting))
            if waiting and self.monotonic() - started >= self.options.wait_seconds:
                reason = _UNKNOWN.format(seconds=self.options.wait_seconds)
                dead += [self.dead.of(message, reason) for _, message in waiting]
                waiting = []
            elif waiting:
                await self._pause(delay, moved)
                delay = min(delay * 2, RECHECK_MAX)
        metrics.LABELS_WAITING.set(0)
        return recorded

    async def _pause(self, seconds: float, moved: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less: until the transaction path records a batch."""
        moved = moved if moved is not None else self.progress.mark()
        if moved.is_set():
            return
        waking = asyncio.ensure_future(moved.wait())
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait((waking, sleeping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waking.cancel()
            sleeping.cancel()

    async def _add(self, labels: list[LabelEvent]) -> LabelsAnswer | Unavailable:
        try:
            answer = await self.store.add_labels(labels)
        except StateUnavailable as exc:
            self.readiness.fault("state", str(exc))
            return Unavailable(str(exc))
        self.readiness.clear("state")
        return answer


_MISMATCH = (
    "label: its transaction was recorded with another time, amount or terminal (the "
    "transaction as decided stands; send the label with the transaction's own fields)"
)
_ABSENT = (
    "label: no transaction with this id was recorded on this card, and the card has "
    "recorded later ones (a card's transactions come in order: this one never will)"
)
_UNKNOWN = (
    "label: no transaction with this id was recorded on this card (waited {seconds:g} s "
    "for it): an id never sent, another card's, or one the card no longer keeps"
)
