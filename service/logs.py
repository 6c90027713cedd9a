"""The worker's log lines: Faust's text (the default) or one JSON object a line.

``FRAUD_LOG_FORMAT=json`` makes every line the worker prints an object with ``timestamp``
(ISO 8601, UTC), ``level``, ``logger`` and ``message``; ``topic``, ``partition`` and
``offset`` when the line is about a record (a log call's ``extra=``, or a
:class:`~service.records.Where` among its arguments: ``message.where``), or ``topic`` and
``partition`` when it names one ``TopicPartition``; ``exception`` (the traceback) when
there is one. Faust's and aiokafka's lines too: :func:`faust_logging_config` hands Faust
the formatter for the handlers its worker sets up.

:mod:`service.redaction` redacts the Kafka clients' arguments before any formatter runs,
so no card id reaches a line in either format.

:class:`StartupNoise` lowers to INFO the coordinator lines aiokafka logs as errors and
warnings while a group forms on a broker that has just created its ``__consumer_offsets``
topic — only for the first :data:`STARTUP_QUIET_SECONDS` and only until each of the
worker's consumer groups has synced; after that, they may mean an outage, and keep their
level.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import orjson

from service.records import Source, Where

__all__ = [
    "COORDINATOR_LOGGER",
    "RECORD_FIELDS",
    "STARTUP_QUIET_SECONDS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "StartupNoise",
    "configure",
    "faust_logging_config",
    "formatter",
    "quiet_startup",
]

LogFormat = Literal["text", "json"]

#: The line of Faust's text format (mode's, without its colours and extra data).
TEXT_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"

#: Fields a log call may pass with ``extra=`` that the JSON format writes out.
RECORD_FIELDS = ("topic", "partition", "offset")
_OTHER_FIELDS = ("model_version", "settings")

#: aiokafka's consumer group logger: the coordinator lines of a forming group.
COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"

#: The longest time after the start during which the coordinator lines are lowered.
STARTUP_QUIET_SECONDS = 30.0


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a wrong format string must not lose the line
        return f"{record.msg} (arguments not formatted: {len(record.args or ())})"


def _place(record: logging.LogRecord) -> dict[str, Any]:
    """The record the line is about: ``extra=`` fields, else a Where or Source argument,
    else the one TopicPartition among the arguments."""
    given = {name: getattr(record, name) for name in RECORD_FIELDS if hasattr(record, name)}
    if given:
        return given
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        source = arg.source if isinstance(arg, Where) else arg
        if isinstance(source, Source):
            return {"topic": source.topic, "partition": source.partition,
                    "offset": source.offset}
    partitions: list[Any] = [
        a for a in args if getattr(a, "_fields", None) == ("topic", "partition")
    ]
    if len(partitions) == 1:
        return {"topic": partitions[0].topic, "partition": partitions[0].partition}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, the record's place,
    exception. Newlines inside values (a traceback) are escaped, so a line is a record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            **_place(record),
        }
        for name in _OTHER_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def faust_logging_config(log_format: LogFormat) -> dict[str, Any] | None:
    """Faust's ``logging_config`` for ``log_format``: None (Faust's own text lines), or its
    handlers' formatters replaced by the JSON one. Merged into the configuration the
    worker builds, so its handlers, stream and level (``-l``) stay as they are."""
    if log_format != "json":
        return None
    return {
        "merge": True,
        # "colored": the console handler's formatter, "default": the --logfile handler's.
        "formatters": {"colored": {"()": JsonFormatter}, "default": {"()": JsonFormatter}},
    }


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("service").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("service").critical(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def configure(log_format: LogFormat, level: str) -> None:
    """Log to standard error in ``log_format`` until Faust's worker sets up its handlers
    (with the same format, :func:`faust_logging_config`). In JSON, Python's warnings and
    uncaught exceptions are log lines too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.setLevel(level)  # as Faust's: a line lowered below the level is not printed
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if log_format == "json":
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


# --- the start-up noise ------------------------------------------------------------------

_COORDINATOR_FAILED = "Group Coordinator Request failed: %s"
_COORDINATOR_DEAD = "Marking the coordinator dead"
_SYNCED = "Successfully synced group %s with generation %s"


def _names_unavailable_coordinator(arg: object) -> bool:
    # The error itself, or its name once service.redaction made it "<...Error>".
    name = arg if isinstance(arg, str) else type(arg).__name__
    return "CoordinatorNotAvailable" in name


class StartupNoise(logging.Filter):
    """Lowers to INFO, while the worker's consumer groups form, what aiokafka logs as
    errors then: ``Group Coordinator Request failed: GroupCoordinatorNotAvailableError``
    and ``Marking the coordinator dead ... for group G``. A new broker answers so while it
    creates ``__consumer_offsets`` at its first group's request (a dozen lines in a second
    or two, seen on a fresh `make up`); aiokafka looks the coordinator up again and joins.

    Off for good once every group in ``groups`` has synced (aiokafka's INFO line) or
    ``seconds`` after the start, whichever comes first; other lines are never touched."""

    def __init__(
        self,
        groups: Iterable[str],
        *,
        seconds: float = STARTUP_QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.forming = set(groups)
        self.clock = clock
        self.until = clock() + seconds
        self.lowered = 0

    @property
    def active(self) -> bool:
        if self.forming and self.clock() >= self.until:
            self.forming.clear()
        return bool(self.forming)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.active:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _SYNCED and args:
            self.forming.discard(str(args[0]))
        elif record.levelno > logging.INFO and self._expected(record.msg, args):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            self.lowered += 1
        return True

    def _expected(self, msg: object, args: tuple[object, ...]) -> bool:
        if msg == _COORDINATOR_FAILED:
            return bool(args) and _names_unavailable_coordinator(args[0])
        if isinstance(msg, str) and msg.startswith(_COORDINATOR_DEAD):
            return len(args) >= 2 and str(args[1]) in self.forming
        return False


def quiet_startup(groups: Iterable[str], *, seconds: float = STARTUP_QUIET_SECONDS) -> StartupNoise:
    """Install a :class:`StartupNoise` on aiokafka's coordinator logger (a logger's filter:
    it stays through the handlers Faust sets up)."""
    logger = logging.getLogger(COORDINATOR_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, StartupNoise)]:
        logger.removeFilter(old)
    noise = StartupNoise(groups, seconds=seconds)
    logger.addFilter(noise)
    return noise
