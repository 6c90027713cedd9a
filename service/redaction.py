"""No card id in any log line, at any level: the Kafka clients' arguments redacted.

At debug level aiokafka logs every request and response (``Request to ...: ProduceRequest
(... messages=bytearray(...))``, ``Sending (key=b'4111...' value=b'{...}')``): card numbers
in clear. Every log record of the ``aiokafka`` and ``kafka`` loggers keeps its message but
its arguments other than plain numbers and strings (and a ``TopicPartition``: a topic name
and a number) become ``<TypeName>``. Installed once as the log record factory, so it holds
whatever handlers Faust sets up later, in either log format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED_LOGGERS", "install"]

#: Loggers whose records may carry records' keys and values.
REDACTED_LOGGERS = ("aiokafka", "kafka")

_PLAIN = (str, int, float, bool, type(None))


def _topic_partition(value: object) -> bool:
    """aiokafka's ``TopicPartition(topic, partition)`` (a named tuple): safe to print."""
    return (
        isinstance(value, tuple)
        and getattr(value, "_fields", None) == ("topic", "partition")
        and all(isinstance(v, _PLAIN) for v in value)
    )


def _safe(value: object) -> object:
    if isinstance(value, _PLAIN) or _topic_partition(value):
        return value
    return f"<{type(value).__name__}>"


def _redact(record: logging.LogRecord) -> None:
    args: Any = record.args
    if isinstance(args, tuple):
        record.args = tuple(_safe(a) for a in args)
    elif isinstance(args, Mapping):
        record.args = {k: _safe(v) for k, v in args.items()}


def install() -> None:
    """Redact the Kafka clients' log arguments from now on (once; idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "fraud_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(REDACTED_LOGGERS) and record.args:
            _redact(record)
        return record

    factory.fraud_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
