"""What a rule can read: the transaction's fields, every feature by its name, the score.

Each :class:`Field` has a name, a CEL type (for the analysts' table and the load-time
check) and a getter. A rule set builds, per transaction, only the fields its rules name:
handing a value to the expression library costs about 1-2 µs a field, so a rule file that
reads five fields pays for five, not for thirty.

The table is the one place to grow: a new transaction field is one more entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraudcore import FEATURE_NAMES, Transaction

__all__ = ["FIELDS", "Field", "Getter"]

#: ``(transaction, feature vector, score) -> value``.
Getter = Callable[[Transaction, Sequence[float], float], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """One name a rule can use."""

    name: str
    type: str  # the CEL type: string, double, int, timestamp, map
    description: str
    get: Getter
    #: Two values of the field's type, far apart: the load-time check evaluates every rule
    #: on them, so a type error (``amount * 2``, ``terminal_id > 5``) refuses the file
    #: instead of failing on every transaction.
    probes: tuple[Any, Any]


def _feature(index: int) -> Getter:
    return lambda tx, row, score: row[index]


_T_LOW = datetime(2000, 1, 3, 0, 0, tzinfo=UTC)
_T_HIGH = datetime(2100, 12, 31, 23, 59, tzinfo=UTC)

_TRANSACTION = (
    Field("transaction_id", "string", "the transaction's id", lambda tx, row, score:
          tx.transaction_id, ("", "tx-0001")),
    Field("card_id", "string", "the card id, in clear (held in memory only: never logged)",
          lambda tx, row, score: tx.card_id, ("", "4111111111111111")),
    Field("terminal_id", "string", "the terminal's id", lambda tx, row, score: tx.terminal_id,
          ("", "T-1")),
    Field("amount", "double", "the amount", lambda tx, row, score: tx.amount, (0.0, 1e6)),
    Field("timestamp", "timestamp", "the event time, to compare with timestamp('...Z')",
          lambda tx, row, score: tx.timestamp, (_T_LOW, _T_HIGH)),
    Field("hour", "int", "hour of the event in its own UTC offset, 0-23 (as is_night reads it)",
          lambda tx, row, score: tx.timestamp.hour, (0, 23)),
    Field("weekday", "int", "day of the event in its own UTC offset, 1 = Monday ... 7 = Sunday",
          lambda tx, row, score: tx.timestamp.isoweekday(), (1, 7)),
    Field("currency", "string", "ISO 4217 code in upper case (EUR); '' when not sent",
          lambda tx, row, score: tx.currency or "", ("", "EUR")),
    Field("mcc", "string", "merchant category code, four digits ('5411'); '' when not sent",
          lambda tx, row, score: tx.mcc or "", ("", "5411")),
    Field("country", "string", "merchant country, ISO 3166-1 alpha-2 in upper case (FR); '' "
          "when not sent", lambda tx, row, score: tx.country or "", ("", "FR")),
    Field("channel", "string", "card_present, online, moto or atm; '' when not sent",
          lambda tx, row, score: tx.channel or "", ("", "online")),
    Field("extra", "map", "the transaction's other fields as sent (extra.device; test with "
          "has(extra.device) first: a missing key is an error, and the rule does not fire)",
          lambda tx, row, score: dict(tx.extra), ({}, {})),
)
_MODEL = (
    Field("score", "double", "the model's fraud probability, 0-1", lambda tx, row, score: score,
          (0.0, 1.0)),
)
_FEATURES = tuple(
    Field(name, "double", "feature (fraudcore.features)", _feature(i), (0.0, 1e6))
    for i, name in enumerate(FEATURE_NAMES)
    if name != "amount"  # the transaction's own amount: the same value, one name
)

#: Every name a rule can use, in the order the README lists them.
FIELDS: Mapping[str, Field] = {f.name: f for f in (*_TRANSACTION, *_MODEL, *_FEATURES)}
