"""Wire events and their validation.

A :class:`Transaction` is what a producer sends on the ``transactions`` topic; a
:class:`LabelEvent` says that an earlier transaction was found to be fraud, and when that
became known. Validation names the field and the reason, so a dead-lettered event can be
fixed at its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fraudcore.errors import InvalidEvent, InvalidLabel, InvalidTransaction

__all__ = [
    "CHANNELS",
    "LIMITS",
    "LabelEvent",
    "Limits",
    "Transaction",
    "parse_label",
    "parse_transaction",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that separate a plausible event from garbage."""

    max_id_length: int = 128
    max_amount: float = 1_000_000.0
    min_year: int = 2000
    max_year: int = 2100
    max_extra_fields: int = 32  # fields beyond the five required, the optional ones included


LIMITS = Limits()

#: How a card was used, as the ``channel`` field names it.
CHANNELS = ("card_present", "online", "moto", "atm")


@dataclass(frozen=True, slots=True)
class Transaction:
    """A card payment. ``timestamp`` is timezone-aware; ``epoch`` is the same instant in
    seconds.

    The optional fields a payment system sends, for rules (the model does not read them;
    ``None`` when not sent): ``currency`` (ISO 4217, upper case), ``mcc`` (the merchant
    category code, ISO 18245, four digits), ``country`` (ISO 3166-1 alpha-2, upper case)
    and ``channel`` (one of :data:`CHANNELS`). Any other field is kept in ``extra``."""

    transaction_id: str
    card_id: str
    terminal_id: str
    amount: float
    timestamp: datetime
    extra: Mapping[str, Any] = field(default_factory=dict)
    currency: str | None = None
    mcc: str | None = None
    country: str | None = None
    channel: str | None = None
    epoch: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epoch", self.timestamp.timestamp())


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """Transaction ``transaction_id`` (made at ``timestamp``) is fraud, known at ``known_at``."""

    transaction_id: str
    card_id: str
    terminal_id: str
    amount: float
    timestamp: datetime
    known_at: datetime

    @property
    def epoch(self) -> float:
        return self.timestamp.timestamp()

    @property
    def known_epoch(self) -> float:
        return self.known_at.timestamp()


_TX_FIELDS = ("transaction_id", "card_id", "terminal_id", "amount", "timestamp")
_LABEL_FIELDS = (*_TX_FIELDS, "known_at")
_OPTIONAL_FIELDS = ("currency", "mcc", "country", "channel")


def parse_transaction(raw: object, *, limits: Limits = LIMITS) -> Transaction:
    """Validate a decoded JSON object into a :class:`Transaction`.

    Raises :class:`InvalidTransaction` naming the field and the reason.
    """
    obj = _require_object(raw, InvalidTransaction)
    beyond = len(obj) - sum(1 for name in _TX_FIELDS if name in obj)
    if beyond > limits.max_extra_fields:
        raise InvalidTransaction(
            f"too many extra fields ({beyond} > {limits.max_extra_fields})", field=None
        )
    extra = {k: v for k, v in obj.items() if k not in _TX_FIELDS and k not in _OPTIONAL_FIELDS}
    return Transaction(
        transaction_id=_identifier(obj, "transaction_id", limits, InvalidTransaction),
        card_id=_identifier(obj, "card_id", limits, InvalidTransaction),
        terminal_id=_identifier(obj, "terminal_id", limits, InvalidTransaction),
        amount=_amount(obj, limits, InvalidTransaction),
        timestamp=_timestamp(obj, "timestamp", limits, InvalidTransaction),
        extra=extra,
        currency=_code(obj, "currency", 3, "an ISO 4217 currency code such as EUR"),
        mcc=_mcc(obj),
        country=_code(obj, "country", 2, "an ISO 3166-1 alpha-2 country code such as FR"),
        channel=_channel(obj),
    )


def parse_label(raw: object, *, limits: Limits = LIMITS) -> LabelEvent:
    """Validate a decoded JSON object into a :class:`LabelEvent`.

    Raises :class:`InvalidLabel` naming the field and the reason.
    """
    obj = _require_object(raw, InvalidLabel)
    timestamp = _timestamp(obj, "timestamp", limits, InvalidLabel)
    known_at = _timestamp(obj, "known_at", limits, InvalidLabel)
    if known_at < timestamp:
        raise InvalidLabel("known_at is before the transaction's timestamp", field="known_at")
    return LabelEvent(
        transaction_id=_identifier(obj, "transaction_id", limits, InvalidLabel),
        card_id=_identifier(obj, "card_id", limits, InvalidLabel),
        terminal_id=_identifier(obj, "terminal_id", limits, InvalidLabel),
        amount=_amount(obj, limits, InvalidLabel),
        timestamp=timestamp,
        known_at=known_at,
    )


def _require_object(raw: object, error: type[InvalidEvent]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise error(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _field(obj: Mapping[str, Any], name: str, error: type[InvalidEvent]) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise error(f"{name}: missing required field", field=name) from None


def _identifier(
    obj: Mapping[str, Any], name: str, limits: Limits, error: type[InvalidEvent]
) -> str:
    value = _field(obj, name, error)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise error(f"{name}: expected a string or integer, got {type(value).__name__}", field=name)
    if (
        isinstance(value, int)
        and not -(10**limits.max_id_length) < value < 10**limits.max_id_length
    ):
        raise error(f"{name}: length must be 1 to {limits.max_id_length}", field=name)
    text = str(value)
    if not text.strip() or len(text) > limits.max_id_length:
        raise error(f"{name}: length must be 1 to {limits.max_id_length}", field=name)
    if not text.isprintable():
        raise error(f"{name}: contains non-printable characters", field=name)
    return text


def _optional(obj: Mapping[str, Any], name: str) -> Any:
    """An optional field's value; ``None`` when it is missing or null."""
    return obj.get(name)


def _code(obj: Mapping[str, Any], name: str, length: int, what: str) -> str | None:
    """A code of ``length`` ASCII letters, in upper case (sent in either case)."""
    value = _optional(obj, name)
    if value is None:
        return None
    if not (isinstance(value, str) and len(value) == length and value.isascii()
            and value.isalpha()):
        raise InvalidTransaction(f"{name}: expected {what}, got {value!r:.40}", field=name)
    return value.upper()


def _mcc(obj: Mapping[str, Any]) -> str | None:
    """The merchant category code: four digits, as a string (an integer is zero-padded)."""
    value = _optional(obj, "mcc")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9999:
        return f"{value:04d}"
    if isinstance(value, str) and len(value) == 4 and value.isascii() and value.isdigit():
        return value
    raise InvalidTransaction(
        f"mcc: expected a merchant category code of four digits such as \"5411\", got "
        f"{value!r:.40}", field="mcc",
    )


def _channel(obj: Mapping[str, Any]) -> str | None:
    value = _optional(obj, "channel")
    if value is None or value in CHANNELS:
        return value  # type: ignore[no-any-return]
    raise InvalidTransaction(
        f"channel: expected one of {', '.join(CHANNELS)}, got {value!r:.40}", field="channel"
    )


def _amount(obj: Mapping[str, Any], limits: Limits, error: type[InvalidEvent]) -> float:
    value = _field(obj, "amount", error)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"amount: expected a number, got {type(value).__name__}", field="amount")
    try:
        amount = float(value)
    except OverflowError:
        raise error("amount: must be finite", field="amount") from None
    if not math.isfinite(amount):
        raise error("amount: must be finite", field="amount")
    if amount < 0:
        raise error("amount: must not be negative", field="amount")
    if amount > limits.max_amount:
        raise error(f"amount: above the limit of {limits.max_amount:g}", field="amount")
    return amount


def _timestamp(
    obj: Mapping[str, Any], name: str, limits: Limits, error: type[InvalidEvent]
) -> datetime:
    value = _field(obj, name, error)
    if not isinstance(value, str):
        raise error(
            f"{name}: expected an ISO 8601 string with offset, got {type(value).__name__}",
            field=name,
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise error(f"{name}: not an ISO 8601 timestamp", field=name) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise error(f"{name}: needs a UTC offset (for example +00:00 or Z)", field=name)
    if not limits.min_year <= parsed.year <= limits.max_year:
        raise error(
            f"{name}: year {parsed.year} outside {limits.min_year}..{limits.max_year}", field=name
        )
    return parsed
