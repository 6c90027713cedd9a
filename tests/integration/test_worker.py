"""The real worker process on the real broker and Redis, end to end."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import date

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from redis import Redis

from fraudcore import FEATURE_NAMES
from fraudtools.feed import feed, with_labels_behind
from fraudtools.producer import TopicNames, send_records
from service.model import load_current
from training import generator
from training.dataset import normalise
from training.replay import replay

from .conftest import (
    BOOTSTRAP,
    REDIS_URL,
    ROOT,
    Run,
    Worker,
    consume,
    drain,
    redis_env,
    remove_keys,
)


@pytest.fixture(scope="module")
def frame():
    config = generator.GeneratorConfig(
        customers=100, terminals=200, days=45, start=date(2018, 4, 1), seed=3
    )
    return normalise(generator.generate(config), source="test")


def _send(run: Run, records, **kwargs) -> None:
    topics = TopicNames(run.topic("transactions"), run.topic("labels"))
    asyncio.run(send_records(records, bootstrap=BOOTSTRAP, topics=topics, **kwargs))


@pytest.fixture
def audit_worker(run, tmp_path, mode):
    env = run.env(FRAUD_INCLUDE_FEATURES="true", **redis_env(mode))
    w = Worker(env, tmp_path / "worker.log").start().wait_ready()
    yield w
    w.stop()
    if mode != "single":
        remove_keys(mode, run.prefix)


@pytest.mark.parametrize("mode", ["single", "cluster", "sentinel"])
def test_every_transaction_decided_once_with_features_and_scores_equal_to_offline(
    run, audit_worker, frame, mode
):
    worker = audit_worker
    records = feed(frame, delay_days=7)
    transactions = [r for r in records if r.kind == "transaction"]
    # Each label right behind its transaction (a label must name a recorded transaction;
    # it counts only once known, known_at <= t, a week later), so the worker's features
    # must equal the offline replay whatever the topics' relative lag. The transactions
    # are paced as a live stream is: terminal state is shared by cards on every
    # partition, and a partition that fell more than the spec's grace (3 days of event
    # time) behind another would find that terminal's oldest entries trimmed. At 250/s,
    # 45 days pass in 27 s, so a partition would have to lag by almost 2 s.
    _send(run, with_labels_behind(records), rate=250)

    decisions = asyncio.run(consume(run.topic("decisions"), until=len(transactions)))
    ids = [d["transaction_id"] for d in decisions]
    assert len(ids) == len(set(ids)) == len(frame), worker.output()[-3000:]
    if mode != "single":  # the state went to the cluster or the Sentinel primary, not here
        assert not Redis.from_url(REDIS_URL).keys(f"{run.prefix}:*")

    alerts = asyncio.run(drain(run.topic("alerts")))
    assert sorted(a["transaction_id"] for a in alerts) == sorted(
        d["transaction_id"] for d in decisions if d["action"] != "approve"
    )
    assert alerts, "the generated frauds should raise some alerts"

    offline, _ = replay(frame)
    by_id = offline.set_index("TRANSACTION_ID")
    for d in decisions:
        online = np.array([d["features"][name] for name in FEATURE_NAMES], dtype=np.float32)
        offline_row = by_id.loc[d["transaction_id"], list(FEATURE_NAMES)].to_numpy(dtype=np.float32)
        differ = [n for n, a, b in zip(FEATURE_NAMES, online, offline_row, strict=True) if a != b]
        assert not differ, (d["transaction_id"], differ)
    model = load_current(ROOT / "models")
    expected = dict(
        zip(
            offline["TRANSACTION_ID"],
            model.score(offline[list(FEATURE_NAMES)].to_numpy(dtype=np.float32)),
            strict=True,
        )
    )
    worst = max(abs(d["score"] - expected[d["transaction_id"]]) for d in decisions)
    assert worst <= 1e-5 + 5e-7  # decisions carry scores rounded to 6 decimals
    assert {d["model_version"] for d in decisions} == {model.version}


def test_bad_input_goes_to_the_dead_letter_topic_while_valid_traffic_flows(run, worker, frame):
    good = [r for r in feed(frame.iloc[:50], delay_days=7, labels=False)]
    bad = [
        b"not json",
        b'{"transaction_id": "x1", "card_id": "c", "terminal_id": "t", "amount": 5}',
        b'{"transaction_id": "x2", "card_id": "c", "terminal_id": "t", "amount": "5", '
        b'"timestamp": "2018-04-01T00:00:00+00:00"}',
        b'{"transaction_id": "x3", "card_id": "c", "terminal_id": "t", "amount": NaN, '
        b'"timestamp": "2018-04-01T00:00:00+00:00"}',
        b'{"transaction_id": "x4", "card_id": "c", "terminal_id": "t", "amount": -1, '
        b'"timestamp": "2018-04-01T00:00:00+00:00"}',
        b'{"transaction_id": "x5", "card_id": "c", "terminal_id": "t", "amount": 1e400, '
        b'"timestamp": "2018-04-01T00:00:00+00:00"}',
        b'{"transaction_id": "x6", "card_id": "c", "terminal_id": "t", "amount": 1, '
        b'"timestamp": "2018-04-01T00:00:00"}',
        b"\xff\xfe invalid utf-8",
        b"[1, 2, 3]",
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            for i, record in enumerate(good):
                await producer.send_and_wait(
                    run.topic("transactions"), record.value, key=record.key
                )
                if i < len(bad):
                    await producer.send_and_wait(run.topic("transactions"), bad[i], key=b"bad")
        finally:
            await producer.stop()

    asyncio.run(produce())
    dead = asyncio.run(consume(run.topic("dlq"), until=len(bad)))
    decisions = asyncio.run(consume(run.topic("decisions"), until=len(good)))
    assert len(decisions) == len(good)
    assert len(dead) == len(bad)
    reasons = sorted(d["reason"] for d in dead)
    # NaN and 1e400 are not JSON at all: the decoder refuses them before validation.
    for expected in (
        "not valid JSON (unexpected character",
        "number is infinity",
        "timestamp: missing",
        "amount: expected a number",
        "amount: must not be negative",
        "needs a UTC offset",
        "expected a JSON object",
        "not valid UTF-8",
    ):
        assert any(expected in r for r in reasons), (expected, reasons)
    for d in dead:
        assert d["topic"] == run.topic("transactions")
        assert d["partition"] in range(4) and d["offset"] >= 0
    assert any(d["payload_encoding"] == "base64" for d in dead)
    assert worker.process.poll() is None  # still running


def test_a_redelivered_transaction_changes_state_once_and_gets_the_same_decision(
    run, worker, frame
):
    records = feed(frame.iloc[:30], delay_days=7, labels=False)
    _send(run, records)
    first = asyncio.run(consume(run.topic("decisions"), until=len(records)))
    _send(run, records[10:12])  # the same two transactions again
    everything = asyncio.run(consume(run.topic("decisions"), until=len(records) + 2))
    again = [d for d in everything if d["duplicate"]]
    assert len(again) == 2
    before = {d["transaction_id"]: d for d in first}
    for d in again:
        assert d["score"] == before[d["transaction_id"]]["score"]
        assert d["action"] == before[d["transaction_id"]]["action"]

    from redis import Redis

    from .conftest import REDIS_URL

    client = Redis.from_url(REDIS_URL)
    total = sum(client.zcard(k) for k in client.scan_iter(match=run.keys.pattern("card") + ":tx"))
    client.close()
    assert total == len(records)


def test_a_model_with_another_fingerprint_is_refused(run, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    version = (models / "current").read_text().strip()
    meta_path = models / version / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["features"]["fingerprint"] = "0000000000000000"
    meta_path.write_text(json.dumps(meta))
    env = run.env(FRAUD_MODEL_DIR=str(models))
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "refuses to start" in done.stderr and "fingerprint 0000000000000000" in done.stderr


def test_a_model_file_that_does_not_match_its_hash_is_refused(run, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    version = (models / "current").read_text().strip()
    with (models / version / "model.onnx").open("ab") as f:
        f.write(b"\0")
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=run.env(FRAUD_MODEL_DIR=str(models)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "sha256" in done.stderr and "changed or corrupted" in done.stderr


def test_the_started_worker_keeps_its_startup_objects_out_of_collections_and_times_pauses(
    run, worker, frame
):
    _send(run, list(feed(frame.iloc[:300], delay_days=7, labels=False)))
    assert len(asyncio.run(consume(run.topic("decisions"), until=300))) == 300
    # ~100k objects exist once the app, the model and the clients are built.
    assert worker.metric("fraud_gc_frozen_objects") > 50_000
    assert worker.metric("fraud_gc_pause_seconds_count") > 0
