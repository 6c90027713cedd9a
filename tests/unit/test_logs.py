"""The JSON log format: one object a line with the fields, the record's place, the
exception; Faust's handlers get it; no card id; and the start-up coordinator lines lowered
only while the groups form."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError
from mode.utils.logging import setup_logging

from service import logs, redaction
from service.records import Message, Source


def _record(
    msg: str, *args: object, name: str = "service.pipeline", level: int = logging.INFO,
    exc_info: object = None, **extra: object,
) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(
        name, level, "f.py", 1, msg, args, exc_info, extra=extra or None  # type: ignore[arg-type]
    )
    return record


@pytest.fixture
def redacting() -> Iterator[None]:
    """service.redaction installed (as main() does), removed afterwards."""
    previous = logging.getLogRecordFactory()
    redaction.install()
    yield
    logging.setLogRecordFactory(previous)


def _json(record: logging.LogRecord) -> dict[str, object]:
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_line_has_timestamp_level_logger_and_message() -> None:
    record = _record("batch of %d decided", 12, level=logging.WARNING)
    line = _json(record)
    assert line == {
        "timestamp": line["timestamp"], "level": "WARNING", "logger": "service.pipeline",
        "message": "batch of 12 decided",
    }
    stamp = str(line["timestamp"])
    assert stamp.endswith("Z")  # UTC, ISO 8601, milliseconds
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    assert abs(parsed.timestamp() - record.created) < 0.001


def test_a_line_about_a_record_carries_its_topic_partition_and_offset() -> None:
    message = Message(b"{}", Source("transactions", 3, 1234), key=b"4111")
    assert str(message.where) == "transactions[3]@1234"  # the text as before
    line = _json(_record("dead letter %s: %s", message.where, "not valid JSON"))
    assert line["message"] == "dead letter transactions[3]@1234: not valid JSON"
    assert (line["topic"], line["partition"], line["offset"]) == ("transactions", 3, 1234)
    assert "4111" not in json.dumps(line)  # the key is not the place
    # A Source itself, and fields given with extra=, say the same.
    assert _json(_record("at %s", Source("t", 0, 9)))["offset"] == 9
    given = _json(_record("lag", topic="labels", partition=1, offset=77))
    assert (given["topic"], given["partition"], given["offset"]) == ("labels", 1, 77)


@pytest.mark.usefixtures("redacting")  # a TopicPartition is kept: a topic name and a number
def test_one_topic_partition_among_the_arguments_is_the_place() -> None:
    record = _record(
        "Fetch offset %s is out of range for partition %s", 50, TopicPartition("tx", 2),
        name="aiokafka.consumer.fetcher",
    )
    line = _json(record)
    assert (line["topic"], line["partition"]) == ("tx", 2)
    assert "offset" not in line
    assert "TopicPartition(topic='tx', partition=2)" in str(line["message"])
    two = _record("%s %s", TopicPartition("a", 0), TopicPartition("b", 1))
    assert "topic" not in _json(two)  # about two partitions: none is the place


def test_the_exception_is_a_field_and_the_line_stays_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record("scoring failed", level=logging.ERROR, exc_info=sys.exc_info())
    line = _json(record)
    assert line["message"] == "scoring failed"
    assert "Traceback" in str(line["exception"])
    assert "ValueError: bad\nvalue" in str(line["exception"])


def test_arguments_that_do_not_fit_the_message_do_not_lose_the_line() -> None:
    line = _json(_record("%d events", "not a number"))
    assert str(line["message"]).startswith("%d events")


def test_the_start_line_fields_are_written_out() -> None:
    settings = {"model_dir": Path("models"), "batch_size": 500}
    line = _json(_record("starting", model_version="v1", settings=settings))
    assert line["model_version"] == "v1"
    assert line["settings"] == {"model_dir": "models", "batch_size": 500}


@pytest.mark.usefixtures("redacting")
def test_no_card_id_reaches_a_json_line_of_the_kafka_client() -> None:
    record = _record(
        "Sending (key=%r value=%r) to %s", b"4111111111111111",
        bytearray(b'{"card_id": "4111111111111111"}'), "tx", name="aiokafka.producer",
        level=logging.DEBUG,
    )
    line = logs.JsonFormatter().format(record)
    assert "4111111111111111" not in line
    assert json.loads(line)["message"] == "Sending (key='<bytes>' value='<bytearray>') to tx"


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger's handlers, level and hooks as they were, afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hooks
    logging.captureWarnings(False)


def test_faust_s_worker_handlers_get_the_json_formatter(
    root_logging: logging.Logger, tmp_path: Path
) -> None:
    assert logs.faust_logging_config("text") is None  # Faust's own lines, as before
    # What Faust's worker does with the app's logging_config (mode's setup_logging).
    setup_logging(loglevel="INFO", logfile=io.StringIO(),
                  logging_config=logs.faust_logging_config("json"))
    [handler] = root_logging.handlers
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert root_logging.level == logging.INFO  # its level stays the worker's (-l)
    setup_logging(loglevel="DEBUG", logfile=str(tmp_path / "worker.log"),
                  logging_config=logs.faust_logging_config("json"))
    [handler] = root_logging.handlers  # --logfile: a file handler, the same format
    assert isinstance(handler, logging.FileHandler)
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert root_logging.level == logging.DEBUG
    handler.close()


def test_before_faust_the_lines_are_json_and_so_are_warnings(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json", "INFO")
    logging.getLogger("service.stores").warning("redis %s", "slow")
    logging.getLogger("service.stores").debug("not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", DeprecationWarning, stacklevel=1)
    sys.excepthook(ValueError, ValueError("boom"), None)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(x["level"], x["logger"]) for x in lines] == [
        ("WARNING", "service.stores"), ("WARNING", "py.warnings"), ("CRITICAL", "service"),
    ]
    assert "old option" in lines[1]["message"]
    assert "ValueError: boom" in lines[2]["exception"]


def test_text_before_faust_is_faust_s_line(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("text", "INFO")
    logging.getLogger("service.model").info("serving model %s", "v1")
    err = capsys.readouterr().err
    assert err.endswith("[INFO] serving model v1\n")
    assert err.startswith("[20")


# --- the start-up noise ------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _coordinator(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return _record(msg, *args, name=logs.COORDINATOR_LOGGER, level=level)


FAILED = "Group Coordinator Request failed: %s"
DEAD = "Marking the coordinator dead (node %s)for group %s."
SYNCED = "Successfully synced group %s with generation %s"


def _level(noise: logs.StartupNoise, record: logging.LogRecord) -> str:
    assert noise.filter(record) is True  # lowered or kept, never dropped
    return record.levelname


def test_the_coordinator_lines_of_a_forming_group_are_info() -> None:
    noise = logs.StartupNoise(["app", "app-labels"], seconds=30, clock=Clock())
    unavailable = GroupCoordinatorNotAvailableError()
    assert _level(noise, _coordinator(FAILED, unavailable)) == "INFO"
    assert _level(noise, _coordinator(FAILED, "<GroupCoordinatorNotAvailableError>")) == "INFO"
    assert _level(noise, _coordinator(DEAD, 1, "app-labels", level=logging.WARNING)) == "INFO"
    assert noise.lowered == 3
    # Anything else keeps its level: a broker that cannot be reached is not start-up noise.
    assert _level(noise, _coordinator(FAILED, KafkaConnectionError())) == "ERROR"
    assert _level(noise, _coordinator("Heartbeat session expired", level=logging.ERROR)) == "ERROR"
    assert _level(noise, _record("Topic %s not found", "tx", level=logging.ERROR)) == "ERROR"


def test_once_a_group_has_synced_its_coordinator_lines_keep_their_level() -> None:
    noise = logs.StartupNoise(["app", "app-labels"], seconds=30, clock=Clock())
    noise.filter(_coordinator(SYNCED, "app-labels", 1, level=logging.INFO))
    assert _level(noise, _coordinator(DEAD, 1, "app-labels", level=logging.WARNING)) == "WARNING"
    assert _level(noise, _coordinator(DEAD, 1, "app", level=logging.WARNING)) == "INFO"
    noise.filter(_coordinator(SYNCED, "app", 1, level=logging.INFO))
    assert not noise.active  # both formed: off for good
    assert _level(noise, _coordinator(FAILED, GroupCoordinatorNotAvailableError())) == "ERROR"
    assert _level(noise, _coordinator(DEAD, 1, "app", level=logging.WARNING)) == "WARNING"


def test_after_the_start_window_an_outage_is_an_error_again() -> None:
    clock = Clock()
    noise = logs.StartupNoise(["app"], seconds=30, clock=clock)
    assert _level(noise, _coordinator(FAILED, GroupCoordinatorNotAvailableError())) == "INFO"
    clock.now += 30.0  # the group never formed: that is no longer the start
    assert _level(noise, _coordinator(FAILED, GroupCoordinatorNotAvailableError())) == "ERROR"
    assert _level(noise, _coordinator(DEAD, 1, "app", level=logging.WARNING)) == "WARNING"
    clock.now -= 29.0  # the clock going back does not turn it on again
    assert not noise.active


def test_a_lowered_line_below_the_level_is_not_printed(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json", "WARNING")
    logs.quiet_startup(["app"], seconds=30)
    noise = logs.quiet_startup(["app"], seconds=30)  # twice: still one filter
    coordinator = logging.getLogger(logs.COORDINATOR_LOGGER)
    try:
        assert [f for f in coordinator.filters if isinstance(f, logs.StartupNoise)] == [noise]
        coordinator.error(FAILED, GroupCoordinatorNotAvailableError())
        coordinator.error("Heartbeat session expired - marking coordinator dead")
    finally:
        coordinator.removeFilter(noise)
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["message"] == "Heartbeat session expired - marking coordinator dead"
    assert noise.lowered == 1
