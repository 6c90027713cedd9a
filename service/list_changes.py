"""The changes of the allow and block lists, from the ``FRAUD_TOPIC_LISTS`` topic to Redis.

One worker of the group applies each partition's changes, in their order (the topic is
keyed by the list's name, so one list's changes stay in order); every worker then reads
the changed list again within ``FRAUD_LISTS_POLL_SECONDS`` (:class:`service.lists.ListsHolder`).

Whose fault it is, as for transactions and labels:

- the message's: not a change (:func:`service.lists.parse_change`), keyed other than by its
  list's name (``FRAUD_MISKEYED_POLICY``), a list the rules in service do not declare (the
  worker would not know whether to hash its values), a list that holds another field in
  Redis, or a full list (``FRAUD_LISTS_MAX_ENTRIES``): the dead-letter topic, with the
  reason; nothing is written;
- Redis' (any fault): the batch holds (``/health`` fault ``list-changes``), retried with
  backoff until it is applied; a change is applied at least once, and applying it again
  changes nothing;
- a bug on one change alone: that change is dead-lettered (poison); when every change of
  a batch fails so, the batch holds.

Applied changes are counted in ``fraud_list_changes_total{list,op}`` and logged (a card
list's value as the start of its keyed hash, never the card id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from fraudcore.errors import StateUnavailable
from service import metrics
from service.dead_letters import DeadLetters, check_each, internal, systemic
from service.delivery import Output
from service.list_store import RedisLists
from service.lists import CARD_FIELD, ListChange, parse_change
from service.ports import Rules
from service.readiness import Readiness
from service.records import Message
from service.retry import Sleep, Unavailable, hold

__all__ = ["ListChanges"]

log = logging.getLogger(__name__)

PART = "list-changes"


@dataclass
class _Progress:
    """A batch's changes so far (kept across the attempts of a held batch: a change
    applied before Redis went away is not applied, counted or logged again)."""

    done: int = 0
    applied: int = 0
    refused: list[tuple[Message, str]] = field(default_factory=list)
    poison: list[tuple[Message, str]] = field(default_factory=list)


class ListChanges:
    """Applies batches of change messages and delivers their dead letters."""

    def __init__(
        self,
        store: RedisLists,
        rules: Rules,
        *,
        deliver: Callable[[list[Output]], Awaitable[None]],
        dlq: str,
        readiness: Readiness,
        miskeyed: Literal["dead-letter", "accept"] = "dead-letter",
        retry_max_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rules = rules
        self.deliver = deliver
        self.dlq = dlq
        self.readiness = readiness
        self.miskeyed = miskeyed
        self.retry_max_seconds = retry_max_seconds
        self.sleep = sleep
        self._dead = DeadLetters(clock=clock)

    def _refuse(self, change: ListChange, message: Message) -> str | None:
        if message.key != change.list.encode():
            metrics.MISKEYED.labels(message.source.topic).inc()
            if self.miskeyed == "dead-letter":
                return ("key: the record's Kafka key is not its list's name (or is empty); "
                        "produce with key = the list's name, so that a list's changes stay "
                        "on one partition, in order")
        rules = self.rules.rules
        if rules is None or change.list not in rules.lists:
            served = f"rules {rules.version}" if rules is not None else "no rules"
            return (f"list: {change.list!r} is not declared in the rules in service "
                    f"({served}): declare it under `lists:` in the rules file, then send the "
                    "change again (docs/lists.md)")
        return None

    async def apply(self, batch: Sequence[Message]) -> int:
        """Apply the batch's changes in order (holding while Redis is away) and deliver its
        dead letters; returns how many changes were applied."""
        checked = check_each(batch, parse_change, self._refuse)
        progress = _Progress()
        await hold(
            partial(self._apply_all, checked.kept, progress),
            what="applying list changes",
            max_delay=self.retry_max_seconds,
            sleep=self.sleep,
        )
        dead = self._dead.many([*checked.refused, *progress.refused],
                               [*checked.poison, *progress.poison])
        if dead:
            await self.deliver([Output(self.dlq, d.key, d.value) for d in dead])
        return progress.applied

    async def _apply_all(
        self, changes: Sequence[tuple[ListChange, Message]], progress: _Progress
    ) -> _Progress | Unavailable:
        for change, message in changes[progress.done :]:
            try:
                reason = await self._apply(change, message)
            except StateUnavailable as exc:
                self.readiness.fault(PART, str(exc))
                return Unavailable(str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug on this change alone: poison
                log.exception("applying the list change %s failed", message.where)
                progress.poison.append((message, internal(exc)))
            else:
                if reason is None:
                    progress.applied += 1
                else:
                    progress.refused.append((message, reason))
            progress.done += 1
        if systemic(len(progress.poison), progress.applied + len(progress.refused)):
            reason = f"every list change of a batch fails: {progress.poison[0][1]}"
            self.readiness.fault(PART, reason)
            progress.done, progress.poison = 0, []  # all of them again, once it works
            return Unavailable(reason, part=PART)
        self.readiness.clear(PART)
        return progress

    async def _apply(self, change: ListChange, message: Message) -> str | None:
        """Apply one change; the reason it is refused, or None."""
        rules = self.rules.rules
        field = rules.lists[change.list] if rules is not None else ""
        if not field:  # the rules changed since the check: not declared any more
            return f"list: {change.list!r} is not declared in the rules in service"
        done = await self.store.apply(change, field)
        if done.outcome == "other-field":
            return (f"list: {change.list!r} holds {done.detail} values in Redis, and the rules "
                    f"declare it on {field}: declare it on {done.detail} again, or use another "
                    "list name")
        if done.outcome == "full":
            return (f"list: {change.list!r} is full ({done.detail} entries, "
                    f"FRAUD_LISTS_MAX_ENTRIES={self.store.max_entries}): remove entries first")
        metrics.LIST_CHANGES.labels(change.list, change.op).inc()
        shown = (self.store.key_of(field, change.value)[:12] + "…" if field == CARD_FIELD
                 else change.value)
        log.info("list %s: %s %s (%s; version %s) from %s", change.list, change.op, shown,
                 done.outcome, done.detail, message.where)
        return None
