"""Dead letters: a message refused for its own fault, with the reason, from where it came.

Shared by the transaction and the label paths (:mod:`service.pipeline`,
:mod:`service.labels`). Every dead letter is counted in ``fraud_dead_letters_total`` by
source topic, poison (a bug on one message alone) in ``fraud_poison_total`` as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from fraudcore.errors import InvalidEvent
from service import metrics
from service.records import DeadLetter, Message, dead_letter

__all__ = ["Checked", "DeadLetters", "check_each", "internal", "systemic"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Checked(Generic[E]):
    """A batch's messages after decoding and checks: the events kept, with their message;
    the messages refused (their fault, with the reason); the poison (a bug on that message
    alone, with the error)."""

    kept: list[tuple[E, Message]] = field(default_factory=list)
    refused: list[tuple[Message, str]] = field(default_factory=list)
    poison: list[tuple[Message, str]] = field(default_factory=list)


def check_each(
    batch: Sequence[Message],
    decode: Callable[[bytes | None], E],
    refuse: Callable[[E, Message], str | None],
) -> Checked[E]:
    """Decode each message (``InvalidEvent``: refused with its reason; any other error:
    poison), then ask ``refuse`` why the event is refused, if it is."""
    out: Checked[E] = Checked()
    for message in batch:
        try:
            event = decode(message.value)
        except InvalidEvent as exc:
            out.refused.append((message, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a bug on this message: poison
            log.exception("decoding %s failed", message.where)
            out.poison.append((message, internal(exc)))
            continue
        reason = refuse(event, message)
        if reason:
            out.refused.append((message, reason))
        else:
            out.kept.append((event, message))
    return out

log = logging.getLogger(__name__)


def internal(exc: BaseException) -> str:
    """The reason given for a bug: the exception's type and message."""
    return f"internal error ({type(exc).__name__}): {exc}"


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason, for ``fraud_dead_letters_total{reason}``: a
    bug (``internal``), a record keyed other than by its card (``miskeyed``), an id seen
    before with other content or another card (``conflict``), a label that names no
    recorded transaction (``label``), else bad input (``invalid``)."""
    if reason.startswith("internal error"):
        return "internal"
    if reason.startswith("key:"):
        return "miskeyed"
    if reason.startswith("label:"):
        return "label"
    if "was seen before with" in reason:
        return "conflict"
    return "invalid"


def systemic(failed: int, succeeded: int) -> bool:
    """Every message of a batch failed alone with an unexpected error: that is no longer
    the messages' fault but the system's (a bug that fails everything), so it is held."""
    return failed >= 2 and succeeded == 0


class DeadLetters:
    """Builds (and counts) the dead letters of messages; checks their keys."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        miskeyed: Literal["dead-letter", "accept"] = "dead-letter",
    ) -> None:
        self.clock = clock
        self.miskeyed_policy = miskeyed

    def of(self, message: Message, reason: str) -> DeadLetter:
        src = message.source
        log.info("dead letter %s: %s", message.where, reason)
        metrics.DEAD_LETTERS.labels(src.topic, reason_class(reason)).inc()
        return DeadLetter(message.key, dead_letter(message.value, src, reason, at=self.clock()))

    def many(
        self, refused: Sequence[tuple[Message, str]], poison: Sequence[tuple[Message, str]]
    ) -> list[DeadLetter]:
        """The refused messages' dead letters, then the poison's (counted apart as well)."""
        if poison:
            metrics.POISON.inc(len(poison))
        return [self.of(m, reason) for m, reason in [*refused, *poison]]

    def batch(self, batch: Sequence[Message], what: str, exc: Exception) -> list[DeadLetter]:
        """A bug must not lose the batch: every message goes to the dead-letter topic."""
        log.exception("%s failed on a batch of %d; dead-lettering it", what, len(batch))
        reason = internal(exc)
        return [self.of(m, reason) for m in batch]

    def miskeyed(self, message: Message, card_id: str) -> str | None:
        """Why a record keyed other than by its card id is refused, or None when it is not
        (keyed right, or accepted and counted under ``miskeyed="accept"``)."""
        if message.key == card_id.encode():
            return None
        metrics.MISKEYED.labels(message.source.topic).inc()
        if self.miskeyed_policy == "accept":
            return None
        return (
            "key: the record's Kafka key is not its card_id (or is empty); produce with "
            "key = card_id, so that a card's events stay on one partition, in order"
        )
