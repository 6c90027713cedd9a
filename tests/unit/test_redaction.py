"""The Kafka clients' log arguments are redacted; other loggers' are left alone."""

from __future__ import annotations

import logging

import pytest

from service import redaction


@pytest.fixture
def records() -> list[logging.LogRecord]:
    previous = logging.getLogRecordFactory()
    redaction.install()
    redaction.install()  # twice: still one layer
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=logging.DEBUG)
    for name in ("aiokafka.producer", "service.pipeline"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield seen
    for name in ("aiokafka.producer", "service.pipeline"):
        logging.getLogger(name).removeHandler(handler)
    logging.setLogRecordFactory(previous)


def test_kafka_client_arguments_are_redacted(records: list[logging.LogRecord]) -> None:
    logging.getLogger("aiokafka.producer").debug(
        "Sending (key=%r value=%r) to %s[%d]", b"4111111111111111", bytearray(b"{}"), "tx", 3
    )
    logging.getLogger("service.pipeline").info("kept %r", b"4111")
    first, second = (r.getMessage() for r in records)
    assert first == "Sending (key='<bytes>' value='<bytearray>') to tx[3]"
    assert second == "kept b'4111'"


def test_a_topic_partition_is_kept(records: list[logging.LogRecord]) -> None:
    from aiokafka import TopicPartition

    logging.getLogger("aiokafka.producer").debug(
        "out of range for %s, key %r", TopicPartition("tx", 2), b"4111"
    )
    [record] = records
    assert record.getMessage() == (
        "out of range for TopicPartition(topic='tx', partition=2), key '<bytes>'"
    )
