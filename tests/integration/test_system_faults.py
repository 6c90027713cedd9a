"""The system's faults on the real broker, a real Redis and the real worker: held and shown,
never dead-lettered. Redis out of memory, a model that must not serve, big keys, the web
server's address."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from fraudcore import Transaction
from service.keys import KeyLayout
from service.replies import CONTENT as _CONTENT
from service.state import RedisStore

from .conftest import BOOTSTRAP, REDIS_URL, ROOT, Run, Worker, consume, drain
from .test_model_reload import _another_model


def _transactions(n: int, *, ids: str = "tx", start: datetime | None = None) -> list[bytes]:
    t0 = start or datetime.now(UTC) - timedelta(hours=2)
    return [
        orjson.dumps({
            "transaction_id": f"{ids}-{i}", "card_id": f"card-{i % 7}", "terminal_id": f"T-{i % 3}",
            "amount": 10.0 + i, "timestamp": (t0 + timedelta(seconds=i)).isoformat(),
        })
        for i in range(n)
    ]


def _send(run: Run, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            for value in values:
                card = orjson.loads(value)["card_id"].encode()
                await producer.send(run.topic("transactions"), value, key=card)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def _until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def test_redis_out_of_memory_holds_every_transaction_and_says_so(
    run: Run, private_redis: str, tmp_path: Path
) -> None:
    config = Redis.from_url(private_redis)
    worker = Worker(run.env(FRAUD_REDIS_URL=private_redis), tmp_path / "w.log").start()
    worker.wait_ready()
    n = 3_000  # more than the four batches of 500 the worker takes in hand while it holds
    try:
        config.config_set("maxmemory", "1")  # every write refused: OOM (noeviction)
        _send(run, _transactions(n))
        _until(lambda: worker.metric("fraud_state_unavailable_total") >= 2)
        status, body = worker.health() or (0, {})
        assert status == 503, body
        assert "OutOfMemoryError" in str(body["faults"]["state"]), body  # type: ignore[index]
        ready, why = worker.health("/readyz") or (0, {})
        assert ready == 503 and "OutOfMemoryError" in str(why["reasons"]), why
        assert (worker.health("/livez") or (0, {}))[0] == 200  # holding is not death
        assert worker.metric("fraud_faults") == 1
        assert worker.metric("fraud_decisions_total") == 0
        assert worker.metric("fraud_last_decision_timestamp_seconds") == 0
        # What an operator alerts on: records waiting on the broker, and the oldest one in
        # hand getting older.
        _until(lambda: worker.metric("fraud_consumer_lag") > 0)
        waited = worker.metric("fraud_oldest_undecided_seconds")
        time.sleep(1.5)
        assert worker.metric("fraud_oldest_undecided_seconds") >= waited + 1.0
        config.config_set("maxmemory", "0")  # memory freed: the held batches go through
        decisions = asyncio.run(consume(run.topic("decisions"), until=n, timeout=60))
        dead = asyncio.run(drain(run.topic("dlq"), quiet=1.0))
        _until(lambda: (worker.health() or (0, {}))[0] == 200)
        assert (worker.health("/readyz") or (0, {}))[0] == 200
        _until(lambda: worker.metric("fraud_consumer_lag") == 0)
        assert worker.metric("fraud_oldest_undecided_seconds") == 0
        assert time.time() - worker.metric("fraud_last_decision_timestamp_seconds") < 60
    finally:
        worker.stop()
    assert sorted(d["transaction_id"] for d in decisions) == sorted(f"tx-{i}" for i in range(n))
    assert dead == []
    assert not any(d["duplicate"] or d["degraded"] for d in decisions)
    assert "state: working again" in worker.output()
    assert worker.output().count("state: holding") == 1  # one line for the change, not per retry


def _copy_models(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    return models


def _rewrite_metadata(model_dir: Path, **model_fields: str) -> None:
    path = model_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["model"].update(model_fields)
    path.write_text(json.dumps(metadata, indent=2))


def test_a_model_that_cannot_score_is_refused_shown_and_retried_once_fixed(
    run: Run, tmp_path: Path
) -> None:
    models = _copy_models(tmp_path)
    old = (models / "current").read_text().strip()
    worker = Worker(
        run.env(FRAUD_MODEL_DIR=str(models), FRAUD_MODEL_POLL_SECONDS="0.3"), tmp_path / "w.log"
    ).start().wait_ready()
    try:
        new = _another_model(models)
        _rewrite_metadata(models / new, output_name="no-such-output")
        (models / "current").write_text(new)
        _until(lambda: f"refused model {new}" in worker.output())
        status, body = worker.health() or (0, {})
        refused = body["model_refused"]
        assert status == 200 and body["model_version"] == old  # the old model serves on
        assert refused["version"] == new and "no-such-output" in refused["reason"]  # type: ignore[index]
        assert worker.metric("fraud_model_refused_info") == 1
        _send(run, _transactions(20))
        first = asyncio.run(consume(run.topic("decisions"), until=20))
        assert {d["model_version"] for d in first} == {old}
        time.sleep(1.0)  # several polls: a refused version is not loaded again unchanged
        assert worker.output().count(f"refused model {new}") == 1
        _rewrite_metadata(models / new, output_name="probabilities")  # fixed in place
        _until(lambda: f"model {new} replaces {old}" in worker.output())
        _send(run, _transactions(20, ids="after", start=datetime.now(UTC) - timedelta(hours=1)))
        decisions = asyncio.run(consume(run.topic("decisions"), until=40))
        dead = asyncio.run(drain(run.topic("dlq"), quiet=1.0))
    finally:
        worker.stop()
    assert len(decisions) == 40 and dead == []
    version = {d["transaction_id"]: d["model_version"] for d in decisions}
    assert {version[f"after-{i}"] for i in range(20)} == {new}


def test_an_invalid_onnx_file_refuses_the_start_with_one_line(run: Run, tmp_path: Path) -> None:
    models = _copy_models(tmp_path)
    current = models / (models / "current").read_text().strip()
    truncated = (current / "model.onnx").read_bytes()[:500]
    (current / "model.onnx").write_bytes(truncated)
    _rewrite_metadata(current, sha256=hashlib.sha256(truncated).hexdigest())  # hash matches
    worker = Worker(run.env(FRAUD_MODEL_DIR=str(models)), tmp_path / "w.log").start()
    assert worker.process is not None
    code = worker.process.wait(60)
    output = worker.output()
    assert code == 1, output
    assert "fraud worker refuses to start" in output and "onnxruntime can load" in output
    assert "Traceback" not in output


def test_the_web_server_listens_only_where_it_is_told(run: Run, tmp_path: Path) -> None:
    worker = Worker(run.env(FRAUD_WEB_HOST="127.0.0.1"), tmp_path / "w.log").start().wait_ready()
    try:
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{worker.web_port}"], capture_output=True, text=True,
            check=True,
        ).stdout.split()
    finally:
        worker.stop()
    assert f"127.0.0.1:{worker.web_port}" in listening, listening
    assert f"0.0.0.0:{worker.web_port}" not in listening


# --- big keys: work per key stays within Lua's limits ------------------------------------


def test_a_card_with_thousands_of_stale_entries_is_trimmed_whole() -> None:
    t0 = datetime.now(UTC) - timedelta(days=80)
    layout = KeyLayout(card_key_secret=b"big", prefix="it-big-card")
    keys = layout.card("c-busy")
    client = Redis.from_url(REDIS_URL)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(9_000):
            at = (t0 + timedelta(seconds=i)).timestamp()
            pipe.zadd(keys.tx, {f"old-{i}": at})
            pipe.hset(keys.val, f"old-{i}", _CONTENT.pack(at, 5.0, 1.0))
        pipe.execute()
        later = Transaction("new", "c-busy", "T-1", 20.0, t0 + timedelta(days=45))

        async def exchange() -> None:
            redis = AsyncRedis.from_url(REDIS_URL)
            store = RedisStore(redis, card_key_secret=b"big", prefix="it-big-card")
            [answer] = await store.exchange([later])
            assert answer.card.timestamps == []  # type: ignore[union-attr]
            await redis.aclose()

        asyncio.run(exchange())
        assert (client.zcard(keys.tx), client.hlen(keys.val)) == (1, 1)
    finally:
        stale = list(client.scan_iter(match="it-big-card:*"))
        if stale:
            client.delete(*stale)
        client.close()


# --- refusing to start: what would lose or leak state silently ----------------------------


def _refusal(env: dict[str, str], log: Path) -> str:
    worker = Worker(env, log).start()
    assert worker.process is not None
    code = worker.process.wait(60)
    output = worker.output()
    assert code == 1 and "Traceback" not in output, output
    return output


def test_an_evicting_redis_refuses_the_start(
    run: Run, private_redis: str, tmp_path: Path
) -> None:
    Redis.from_url(private_redis).config_set("maxmemory-policy", "allkeys-lru")
    output = _refusal(run.env(FRAUD_REDIS_URL=private_redis), tmp_path / "w.log")
    assert "Redis evicts keys (maxmemory-policy allkeys-lru)" in output


def test_the_public_development_secret_refuses_the_start_outside_development(
    run: Run, tmp_path: Path
) -> None:
    output = _refusal(run.env(FRAUD_ENV="production"), tmp_path / "w.log")
    assert "FRAUD_CARD_KEY_SECRET is not set" in output


# --- keys: a card's records on one partition ----------------------------------------------


def test_a_record_not_keyed_by_its_card_id_is_dead_lettered_with_its_key(
    run: Run, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaProducer

    good, unkeyed, other = _transactions(3, ids="keys")
    worker = Worker(run.env(), tmp_path / "w.log").start().wait_ready()

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            topic = run.topic("transactions")
            await producer.send_and_wait(topic, good, key=orjson.loads(good)["card_id"].encode())
            await producer.send_and_wait(topic, unkeyed, key=None)
            await producer.send_and_wait(topic, other, key=b"card-of-someone-else")
        finally:
            await producer.stop()

    try:
        asyncio.run(send())
        decisions = asyncio.run(consume(run.topic("decisions"), until=1))
        dead = asyncio.run(consume(run.topic("dlq"), until=2))
        _until(lambda: worker.metric("fraud_miskeyed_total") == 2)
    finally:
        worker.stop()
    assert [d["transaction_id"] for d in decisions] == ["keys-0"]
    assert sorted(orjson.loads(d["payload"])["transaction_id"] for d in dead) == [
        "keys-1", "keys-2"
    ]
    assert all(d["reason"].startswith("key: the record's Kafka key is not its card_id")
               for d in dead)


def test_dead_letters_carry_the_key_of_the_record_they_came_from(
    run: Run, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    worker = Worker(run.env(), tmp_path / "w.log").start().wait_ready()

    async def send_and_read() -> list[bytes | None]:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(run.topic("transactions"), b"{not json", key=b"card-9")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(run.topic("dlq"), bootstrap_servers=BOOTSTRAP,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 60)
            return [record.key]
        finally:
            await consumer.stop()

    try:
        keys = asyncio.run(send_and_read())
    finally:
        worker.stop()
    assert keys == [b"card-9"]


def test_the_readmes_kcat_line_puts_a_card_where_the_worker_expects_it(run: Run) -> None:
    """kcat (librdkafka) with the README's `-X partitioner=murmur2_random` picks the same
    partition for a card as the Java partitioner that aiokafka and the tools use."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.partitioner import DefaultPartitioner

    cards = [f"card-{i}" for i in range(40)]
    lines = "".join(f"{card}|{{}}\n" for card in cards)
    subprocess.run(
        ["kcat", "-P", "-b", BOOTSTRAP, "-t", run.topic("transactions"), "-K", "|",
         "-X", "partitioner=murmur2_random"],
        input=lines.encode(), check=True, timeout=60,
    )

    async def partitions() -> dict[str, int]:
        consumer = AIOKafkaConsumer(run.topic("transactions"), bootstrap_servers=BOOTSTRAP,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        found: dict[str, int] = {}
        try:
            while len(found) < len(cards):
                record = await asyncio.wait_for(consumer.getone(), 30)
                found[record.key.decode()] = record.partition
        finally:
            await consumer.stop()
        return found

    found = asyncio.run(partitions())
    every = list(range(4))
    expected = {card: DefaultPartitioner()(card.encode(), every, every) for card in cards}
    assert found == expected
    assert len(set(found.values())) > 1  # the cards spread over the partitions


# --- old events: idempotency and uniqueness hold for them too -----------------------------


def test_an_old_transaction_delivered_again_is_a_duplicate_and_its_id_stays_unique(
    run: Run, tmp_path: Path
) -> None:
    old_time = datetime.now(UTC) - timedelta(days=40)  # older than a card's history keeps
    old = orjson.dumps({"transaction_id": "old-1", "card_id": "card-o", "terminal_id": "T-o",
                        "amount": 12.5, "timestamp": old_time.isoformat()})
    fresh = orjson.dumps({"transaction_id": "new-1", "card_id": "card-o", "terminal_id": "T-o",
                          "amount": 30.0, "timestamp": datetime.now(UTC).isoformat()})
    other_card = orjson.dumps({**orjson.loads(old), "card_id": "card-x"})
    worker = Worker(run.env(), tmp_path / "w.log").start().wait_ready()
    try:
        _send(run, [old])
        asyncio.run(consume(run.topic("decisions"), until=1))
        _send(run, [fresh])  # trims the old one from the card's history
        asyncio.run(consume(run.topic("decisions"), until=2))
        _send(run, [old, other_card])  # a redelivery, and the id on another card
        decisions = asyncio.run(consume(run.topic("decisions"), until=3))
        dead = asyncio.run(consume(run.topic("dlq"), until=1))
    finally:
        worker.stop()
    copies = [d for d in decisions if d["transaction_id"] == "old-1"]
    assert [(d["card_id"], d["duplicate"]) for d in copies] == [("card-o", False),
                                                                ("card-o", True)]
    assert copies[0]["score"] == copies[1]["score"]
    [refused] = dead
    assert "seen before with another card" in refused["reason"]


# --- secrets: no card number in the log, at any level -------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_card_number_in_the_log_at_debug_level(
    run: Run, tmp_path: Path, log_format: str
) -> None:
    card = "4111111111111111"
    value = orjson.dumps({"transaction_id": "dbg-1", "card_id": card, "terminal_id": "T-d",
                          "amount": 5.0, "timestamp": datetime.now(UTC).isoformat()})
    env = run.env(FRAUD_LOG_LEVEL="DEBUG", FRAUD_LOG_FORMAT=log_format)
    worker = Worker(env, tmp_path / "w.log").start().wait_ready()
    try:
        _send(run, [value])
        assert len(asyncio.run(consume(run.topic("decisions"), until=1))) == 1
        time.sleep(1.0)  # the acknowledgement's debug lines too
    finally:
        worker.stop()
    log = worker.output()
    if log_format == "text":
        assert "[DEBUG] Request to" in log  # the Kafka client did log at debug level...
    else:
        lines = [json.loads(line) for line in log.splitlines()]
        assert any(x["level"] == "DEBUG" and x["logger"].startswith("aiokafka")
                   and x["message"].startswith("Request to") for x in lines)
    assert card not in log  # ...without the card number


# --- an output topic that does not exist -------------------------------------------------


def test_a_missing_output_topic_holds_shows_and_counts_nothing_until_it_exists(
    run: Run, tmp_path: Path
) -> None:
    """Before: /health 200 throughout, 'Topic ... not found' logged hundreds of times, and
    decisions counted that never reached the broker."""
    from fraudtools.kafka_admin import create_topics, delete_topics

    missing = f"{run.topic('decisions')}-missing"
    worker = Worker(run.env(FRAUD_TOPIC_DECISIONS=missing), tmp_path / "w.log").start()
    worker.wait_ready()
    try:
        _send(run, _transactions(5))

        def unready() -> bool:
            status, _ = worker.health() or (0, {})
            return status == 503

        _until(unready, timeout=90)
        _, body = worker.health() or (0, {})
        assert missing in str(body["faults"]["output"]), body  # type: ignore[index]
        assert worker.metric("fraud_decisions_total") == 0

        asyncio.run(create_topics(BOOTSTRAP, [missing]))
        decisions = asyncio.run(consume(missing, until=5, timeout=120))
        assert len({d["transaction_id"] for d in decisions}) == 5
        _until(lambda: (worker.health() or (0, {}))[0] == 200, timeout=60)
        _until(lambda: worker.metric("fraud_decisions_total") == 5)
        assert asyncio.run(drain(run.topic("dlq"), quiet=1.0)) == []
    finally:
        worker.stop()
        asyncio.run(delete_topics(BOOTSTRAP, [missing]))
