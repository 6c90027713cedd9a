"""Settings the README's table promises, seen in what the real worker process does on the
real broker and Redis: ``FRAUD_UNIQUE_IDS_ACROSS_CARDS=false`` and ``FRAUD_BATCH_SIZE``.
(The default, an id refused on a second card, is
test_system_faults.py::test_an_old_transaction_delivered_again_is_a_duplicate_and_its_id_stays_unique;
``FRAUD_MAX_FUTURE_SECONDS`` at its edge is tests/unit/test_horizons.py.)"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from .conftest import BOOTSTRAP, REDIS_URL, Run, Worker, consume, drain


def _send(topic: str, values: list[bytes]) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send(topic, value, key=str(orjson.loads(value)["card_id"]).encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def test_with_unique_ids_across_cards_off_an_id_on_another_card_is_decided(
    run: Run, tmp_path: Path
) -> None:
    env = run.env(FRAUD_UNIQUE_IDS_ACROSS_CARDS="false")
    worker = Worker(env, tmp_path / "w.log").start().wait_ready()
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    first = {"transaction_id": "shared-1", "card_id": "card-a", "terminal_id": "T-1",
             "amount": 20.0, "timestamp": at}
    second = {**first, "card_id": "card-b"}  # the same id, another card
    try:
        _send(run.topic("transactions"), [orjson.dumps(first)])
        asyncio.run(consume(run.topic("decisions"), until=1, quiet=0.2))
        _send(run.topic("transactions"), [orjson.dumps(second)])
        decisions = asyncio.run(consume(run.topic("decisions"), until=2, quiet=0.5, timeout=30))
        # Both decided is the signal that the second was not refused; the dead-letter
        # topic is read to its end to be sure.
        dead = asyncio.run(drain(run.topic("dlq"), quiet=0.5))
    finally:
        worker.stop()
    assert sorted((d["transaction_id"], d["card_id"], d["duplicate"]) for d in decisions) == [
        ("shared-1", "card-a", False), ("shared-1", "card-b", False)
    ]
    assert dead == []
    client = Redis.from_url(REDIS_URL)
    try:  # no id index: no key per transaction id
        assert list(client.scan_iter(match=run.keys.pattern("id"))) == []
        assert list(client.scan_iter(match=run.keys.pattern("card")))  # the state is there
    finally:
        client.close()


def _batch_sizes(worker: Worker) -> dict[str, float]:
    """The ``fraud_batch_size`` histogram: its count, sum and cumulative buckets by ``le``."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fraud_batch_size":
            for sample in family.samples:
                key = sample.labels.get("le", sample.name.rsplit("_", 1)[-1])
                out[key] = sample.value
    return out


def test_fraud_batch_size_bounds_every_batch(run: Run, tmp_path: Path) -> None:
    """The transactions wait on the broker before the worker starts, so its first fetches
    could take hundreds at once: with FRAUD_BATCH_SIZE=7 none holds more than 7."""
    n, size = 300, 7
    t0 = datetime.now(UTC) - timedelta(hours=2)
    _send(run.topic("transactions"), [
        orjson.dumps({"transaction_id": f"bs-{i}", "card_id": f"card-{i % 40}",
                      "terminal_id": f"T-{i % 5}", "amount": 1.0 + i,
                      "timestamp": (t0 + timedelta(seconds=i)).isoformat()})
        for i in range(n)
    ])
    worker = Worker(run.env(FRAUD_BATCH_SIZE=str(size)), tmp_path / "w.log").start()
    try:
        worker.wait_ready()
        decisions = asyncio.run(consume(run.topic("decisions"), until=n, quiet=0.2))
        histogram = _batch_sizes(worker)
    finally:
        worker.stop()
    assert len(decisions) == n
    assert histogram["sum"] == n
    assert histogram["count"] >= math.ceil(n / size)
    assert histogram["10.0"] == histogram["count"]  # every batch at most 10 (the bucket of 7)
    assert histogram["5.0"] < histogram["count"]  # and fetches did fill batches past 5
