"""Wire formats: transactions and labels in, decisions and dead letters out (JSON).

The worker decodes with orjson and validates with ``fraudcore`` rather than through Faust
records: one decode per event, and validation errors that name the field. JSON Schemas of
every format are in ``docs/schemas/``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fraudcore import (
    FEATURE_NAMES,
    Action,
    InvalidEvent,
    LabelEvent,
    Thresholds,
    Transaction,
    fingerprint,
    parse_label,
    parse_transaction,
)
from fraudmodel.reasons import Reason

__all__ = [
    "MAX_DLQ_PAYLOAD",
    "DeadLetter",
    "LOG_VERSION",
    "Decision",
    "Message",
    "Shadow",
    "Source",
    "Where",
    "dead_letter",
    "decode_label",
    "decode_transaction",
]

MAX_DLQ_PAYLOAD = 64 * 1024  # bytes of the original payload kept in a dead letter
#: The decision log's format (``log_version`` in each record, docs/decision-log.md).
LOG_VERSION = 1
_OPTIONAL = ("currency", "mcc", "country", "channel")


@dataclass(frozen=True, slots=True)
class Source:
    """Where an event came from."""

    topic: str
    partition: int
    offset: int


class Where(str):
    """``topic[partition]@offset``: where a record came from, as a log line prints it.

    A plain string to everything else; the JSON log format (:mod:`service.logs`) finds it
    among a log call's arguments and adds its ``source`` as the line's topic, partition and
    offset fields."""

    source: Source

    def __new__(cls, source: Source) -> Where:
        where = super().__new__(cls, f"{source.topic}[{source.partition}]@{source.offset}")
        where.source = source
        return where


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record: its value as it came, and where it came from."""

    value: bytes | None
    source: Source
    key: bytes | None = None  # the record's Kafka key: the card id, as producers are told

    @property
    def where(self) -> Where:
        """``topic[partition]@offset``, for logs (the JSON format makes it fields too)."""
        return Where(self.source)


def _decode(payload: bytes | None, kind: str) -> Any:
    if payload is None:
        raise InvalidEvent(f"empty message: a {kind} needs a JSON object value")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON ({exc.msg})") from None


def decode_transaction(payload: bytes | None) -> Transaction:
    """Bytes from the ``transactions`` topic to a validated transaction."""
    return parse_transaction(_decode(payload, "transaction"))


def decode_label(payload: bytes | None) -> LabelEvent:
    """Bytes from the ``fraud-labels`` topic to a validated label event."""
    return parse_label(_decode(payload, "label"))


@functools.lru_cache(maxsize=4)  # a batch's decisions share their decision time
def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Shadow:
    """What the challenger (``models/challenger``) would have decided; it decides nothing."""

    model_version: str
    score: float
    action: Action


@dataclass(frozen=True, slots=True)
class Decision:
    """One transaction's decision. ``rules`` (the ids of the rules that fired, in file
    order) and ``rules_version`` are written only while a rules file is set
    (``FRAUD_RULES_FILE``): both then, even when no rule fired; neither without one.
    ``reasons`` (the features that pushed the score up most) are written on decisions that
    do not approve, when the model carries what explains it; ``shadow`` while a challenger
    is set.

    ``features`` (the vector it was scored on), ``thresholds``, ``model_action`` (the
    model's action before the rules) and ``listed`` (the lists that held one of its fields)
    are what the decision log adds (:meth:`log_json`); a decision shows its features only
    with ``FRAUD_INCLUDE_FEATURES``."""

    transaction: Transaction
    score: float
    action: Action
    model_version: str
    decided_at: float
    duplicate: bool = False
    degraded: bool = False
    features: Sequence[float] | None = None
    rules: tuple[str, ...] = ()
    rules_version: str | None = None
    reasons: tuple[Reason, ...] | None = None
    shadow: Shadow | None = None
    thresholds: Thresholds | None = None
    model_action: Action | None = None
    listed: tuple[str, ...] = ()

    def to_json(self, *, features: bool = True) -> bytes:
        """The record on the decisions (and alerts) topic; ``features``: with the feature
        vector, if the decision holds it."""
        tx = self.transaction
        extra: dict[str, Any] = {}
        if features and self.features is not None:
            extra["features"] = dict(zip(FEATURE_NAMES, self.features, strict=True))
        if self.rules_version is not None:
            extra["rules"] = self.rules
            extra["rules_version"] = self.rules_version
        if self.reasons is not None:
            extra["reasons"] = self.reasons
        if self.shadow is not None:
            extra["shadow"] = {
                "model_version": self.shadow.model_version,
                "score": round(self.shadow.score, 6),
                "action": self.shadow.action,
            }
        return orjson.dumps(
            {
                "transaction_id": tx.transaction_id,
                "card_id": tx.card_id,
                "terminal_id": tx.terminal_id,
                "amount": tx.amount,
                "timestamp": tx.timestamp.isoformat(),
                "score": round(self.score, 6),
                "action": self.action,
                "model_version": self.model_version,
                "decided_at": _instant(self.decided_at),
                "duplicate": self.duplicate,
                "degraded": self.degraded,
                **extra,
            }
        )

    def log_json(self) -> bytes:
        """The decision log's record (``FRAUD_TOPIC_DECISION_LOG``, docs/decision-log.md):
        everything needed to learn from this decision: the transaction as validated (its
        optional fields when sent), the features at full precision, the score unrounded,
        the model's thresholds and action, the rules, the lists that held one of its
        fields, and the action taken. ``features`` and ``thresholds`` must be set."""
        if self.features is None or self.thresholds is None:
            raise ValueError("a decision is logged with its features and thresholds")
        tx = self.transaction
        record: dict[str, Any] = {
            "log_version": LOG_VERSION,
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "terminal_id": tx.terminal_id,
            "amount": tx.amount,
            "timestamp": tx.timestamp.isoformat(),
        }
        for name in _OPTIONAL:
            value = getattr(tx, name)
            if value is not None:
                record[name] = value
        record |= {
            "decided_at": _instant(self.decided_at),
            "model_version": self.model_version,
            "feature_fingerprint": _fingerprint(),
            "features": dict(zip(FEATURE_NAMES, self.features, strict=True)),
            "score": self.score,
            "thresholds": {"review": self.thresholds.review, "decline": self.thresholds.decline},
            "model_action": self.model_action or self.action,
            "action": self.action,
            "duplicate": self.duplicate,
            "degraded": self.degraded,
        }
        if self.rules_version is not None:
            record |= {"rules_version": self.rules_version, "rules": self.rules,
                       "lists": self.listed}
        if self.reasons is not None:
            record["reasons"] = self.reasons
        if self.shadow is not None:
            record["shadow"] = {"model_version": self.shadow.model_version,
                                "score": self.shadow.score, "action": self.shadow.action}
        return orjson.dumps(record)


@functools.cache
def _fingerprint() -> str:
    return fingerprint()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record and its key: the original record's key (the card id, when its
    producer keyed it as documented), so it lands where that card's records go."""

    key: bytes | None
    value: bytes


def dead_letter(payload: bytes | None, source: Source, reason: str, *, at: float) -> bytes:
    """A dead-letter record: why, from where, and the payload (as text when it is UTF-8)."""
    raw = payload or b""
    record: dict[str, Any] = {
        "reason": reason,
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "failed_at": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "payload_bytes": len(raw),
        "payload_sha256": hashlib.sha256(raw).hexdigest(),
        "payload_truncated": len(raw) > MAX_DLQ_PAYLOAD,
    }
    kept = raw[:MAX_DLQ_PAYLOAD]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        record["payload"] = base64.b64encode(kept).decode("ascii")
        record["payload_encoding"] = "base64"
    else:  # valid text: cut at a character boundary
        record["payload"] = kept.decode("utf-8", errors="ignore")
        record["payload_encoding"] = "utf-8"
    return orjson.dumps(record)
