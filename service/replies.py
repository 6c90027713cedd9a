"""What the Redis store keeps of a transaction, and how it reads the scripts' replies
(:mod:`service.state`, :mod:`service.scripts`)."""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from typing import Any

from fraudcore import CardHistory, LabelEvent, Transaction
from fraudcore.state import LabelCheck

__all__ = ["CONTENT", "card_history", "check_label", "floats", "newest_score", "stored"]


def floats(joined: bytes) -> list[float]:
    return list(map(float, joined.split(b","))) if joined else []


#: A card's stored content: event time, amount, crc32 of the terminal id (exact in a double).
CONTENT = struct.Struct("<3d")


def stored(event: Transaction | LabelEvent) -> bytes:
    """What a card holds of a transaction (a label names its transaction's content)."""
    return CONTENT.pack(event.epoch, event.amount, zlib.crc32(event.terminal_id.encode()))


def newest_score(reply: Any) -> float | None:
    """The score of ``ZRANGE key -1 -1 WITHSCORES``: ``[member, score]`` in RESP2,
    ``[[member, score]]`` in RESP3; None for an empty key."""
    if not reply:
        return None
    pair = reply[0] if isinstance(reply[0], list) else reply
    return float(pair[1])


def check_label(
    label: LabelEvent, content: bytes | None, at: bytes | None, newest: float | None, grace: float
) -> LabelCheck:
    """A label against its card's content for the id, or else its terminal's time for it,
    or else its card's newest transaction (fraudcore.InMemoryStore.check_label's rule)."""
    if content is not None:
        return "match" if content == stored(label) else "mismatch"
    if at is not None:
        return "match" if float(at) == label.epoch else "mismatch"
    return "absent" if newest is not None and newest > label.epoch + grace else "unknown"


def card_history(joined: bytes) -> CardHistory:
    """The card script's concatenated contents, in time order."""
    values = array("d", joined)
    if sys.byteorder == "big":
        values.byteswap()
    times = values[0::3].tolist()
    amounts = values[1::3].tolist()
    # HVALS answers in insertion order while a hash is small (listpack), which is time
    # order unless events came late: sort only then.
    if times != sorted(times):
        order = sorted(range(len(times)), key=times.__getitem__)
        times = [times[i] for i in order]
        amounts = [amounts[i] for i in order]
    return CardHistory(times, amounts)
