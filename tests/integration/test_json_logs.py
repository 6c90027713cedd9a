"""The real worker with ``FRAUD_LOG_FORMAT=json``: every line it prints is a JSON object
with the fields (Faust's and aiokafka's lines too), the start line names the model and the
settings without a secret, a line about a record carries its topic, partition and offset,
and a start logs no error — on the shared broker, and on a broker just created, whose
coordinator lines (``GroupCoordinatorNotAvailableError``, ``Marking the coordinator
dead``) are the start-up's and come at INFO."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from fraudtools.chaos import PrivateStack
from fraudtools.isolated import IsolatedWorker
from fraudtools.kafka_admin import create_topics
from service.settings import DEVELOPMENT_CARD_KEY_SECRET

from .conftest import BOOTSTRAP, ROOT, Run, Worker, consume

MODEL_VERSION = (ROOT / "models" / "current").read_text().strip()


def _lines(worker: Worker) -> list[dict[str, Any]]:
    """Every line of the worker's output, each parsed (a line that is not JSON fails)."""
    lines = []
    for number, text in enumerate(worker.output().splitlines(), 1):
        try:
            line = orjson.loads(text)
        except orjson.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {text!r}")
        assert isinstance(line, dict), text
        assert {"timestamp", "level", "logger", "message"} <= line.keys(), text
        stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0), text  # ISO 8601, UTC
        lines.append(line)
    assert lines, "the worker printed nothing"
    return lines


def _alarming(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in lines if x["level"] in ("ERROR", "CRITICAL")]


def _start_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    [start] = [x for x in lines if x["message"].startswith("fraud worker starting")]
    return start


def _send(topic: str, records: list[tuple[bytes, bytes]], bootstrap: str = BOOTSTRAP) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send(topic, value, key=key, partition=1)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def test_every_line_of_the_worker_is_json_with_its_fields(run: Run, tmp_path: Path) -> None:
    card = "4000056655665556"
    valid = orjson.dumps({"transaction_id": "json-1", "card_id": card, "terminal_id": "T-j",
                          "amount": 12.0, "timestamp": datetime.now(UTC).isoformat()})
    worker = Worker(run.env(FRAUD_LOG_FORMAT="json"), tmp_path / "w.log").start().wait_ready()
    try:
        _send(run.topic("transactions"), [(b"card-j", b"not json"), (card.encode(), valid)])
        assert len(asyncio.run(consume(run.topic("decisions"), until=1))) == 1
        assert len(asyncio.run(consume(run.topic("dlq"), until=1))) == 1
        time.sleep(0.5)  # the dead letter's line is written before it is sent
    finally:
        assert worker.stop() == 0
    lines = _lines(worker)
    loggers = {x["logger"].split(".")[0] for x in lines}
    assert {"faust", "aiokafka", "service", "mode"} <= loggers  # Faust's and Kafka's too

    start = _start_line(lines)
    assert start["logger"] == "service.app" and start["level"] == "INFO"
    assert start["model_version"] == MODEL_VERSION
    assert f"model {MODEL_VERSION}" in start["message"]
    settings = start["settings"]
    assert settings["topic_transactions"] == run.topic("transactions")
    assert settings["redis_url"] == run.env()["FRAUD_REDIS_URL"]
    assert settings["card_key_secret"] == "***"
    output = worker.output()
    assert DEVELOPMENT_CARD_KEY_SECRET not in output  # the secret in use, nowhere
    assert card not in output  # nor a card id

    [dead] = [x for x in lines if x["message"].startswith("dead letter ")]
    assert (dead["topic"], dead["partition"], dead["offset"]) == (
        run.topic("transactions"), 1, 0
    ), dead
    assert "not valid JSON" in dead["message"]
    # A start on a running broker logs no error (Faust's leader topic is not asked for).
    assert _alarming(lines) == []
    assert "__assignor-__leader" not in output


@pytest.fixture
def fresh_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """A Kafka broker (and a Redis) just created: no consumer group has ever formed on it
    (stack/kafka.sh on free ports, the jars `make up` fetched)."""
    own = PrivateStack(tmp_path_factory.mktemp("fresh-broker"))
    try:
        own.up()
        yield own
    finally:
        own.down()


def test_the_first_start_on_a_new_broker_logs_no_error(
    fresh_broker: PrivateStack, tmp_path: Path
) -> None:
    isolated = IsolatedWorker.named(
        "fresh", bootstrap=fresh_broker.bootstrap, redis_url=fresh_broker.redis_url,
        data_dir=tmp_path / "data",
    )
    asyncio.run(create_topics(fresh_broker.bootstrap, isolated.topics))
    worker = Worker(isolated.env(FRAUD_LOG_FORMAT="json"), tmp_path / "w.log").start()
    try:
        worker.wait_ready(timeout=120)
    finally:
        assert worker.stop() == 0
    lines = _lines(worker)
    assert _start_line(lines)["model_version"] == MODEL_VERSION
    coordinator = [x for x in lines if x["logger"] == "aiokafka.consumer.group_coordinator"]
    # The broker creates __consumer_offsets at the first group's request, and says the
    # coordinator is not available meanwhile: aiokafka logs it as an error, here INFO.
    unavailable = [x for x in coordinator
                   if x["message"].startswith("Group Coordinator Request failed")]
    assert unavailable, "the fresh broker's answer was not seen: the test proves nothing"
    assert {x["level"] for x in unavailable} == {"INFO"}
    dead = [x for x in coordinator if x["message"].startswith("Marking the coordinator dead")]
    assert {x["level"] for x in dead} <= {"INFO"}
    assert _alarming(lines) == []
    assert [x for x in lines if x["level"] == "WARNING"] == []
