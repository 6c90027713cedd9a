"""A Redis that lost its data, on the real stack: detected, shown and marked — never
decided on silently as if the cards were new. (Before the state marker, a card's 1-day
count fell from 5 to 1 after FLUSHALL with no log, no metric, ``degraded: false`` and
``/health`` 200.)"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from redis import Redis

from .conftest import Run, Worker, consume
from .test_system_faults import _send

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _tx(i: int) -> bytes:
    return orjson.dumps({
        "transaction_id": f"loss-{i}", "card_id": "card-1", "terminal_id": "T-1",
        "amount": 20.0 + i, "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
    })


def test_a_flushed_redis_is_detected_shown_and_its_decisions_marked(
    run: Run, private_redis: str, tmp_path: Path
) -> None:
    redis = Redis.from_url(private_redis)
    worker = Worker(run.env(FRAUD_REDIS_URL=private_redis, FRAUD_INCLUDE_FEATURES="true"),
                    tmp_path / "w.log").start().wait_ready()
    try:
        _send(run, [_tx(i) for i in range(5)])
        before = asyncio.run(consume(run.topic("decisions"), until=5))
        assert [d["features"]["tx_count_by_card_1d"] for d in before] == [1, 2, 3, 4, 5]
        assert not any(d["degraded"] for d in before)
        status, body = worker.health() or (0, {})
        assert status == 200 and str(body["state"]).startswith("complete"), body

        redis.flushall()
        _send(run, [_tx(i) for i in range(5, 8)])
        decisions = asyncio.run(consume(run.topic("decisions"), until=8))
        after = [d for d in decisions if d["transaction_id"] in {"loss-5", "loss-6", "loss-7"}]
        # Decided on what is left (the history from the flush on), and marked.
        assert [d["features"]["tx_count_by_card_1d"] for d in after] == [1, 2, 3]
        assert all(d["degraded"] for d in after), after
        assert worker.metric("fraud_state_lost_total") == 1
        assert worker.metric("fraud_state_partial") == 1
        assert worker.metric("fraud_partial_state_decisions_total") == 3
        status, body = worker.health() or (0, {})
        assert status == 200, body  # it decides, on what it has
        assert str(body["state"]).startswith("partial") and body["state_lost_at"], body
        assert "feature state lost: the state marker is gone" in worker.output()
    finally:
        worker.stop()
        redis.close()


def test_a_worker_restarted_on_an_emptied_redis_knows_its_group_decided_before(
    run: Run, private_redis: str, tmp_path: Path
) -> None:
    """Redis and the worker both restarted (a reboot): no marker, and no worker saw one
    vanish. The group's committed offsets say transactions were decided before."""
    redis = Redis.from_url(private_redis)
    env = run.env(FRAUD_REDIS_URL=private_redis, FRAUD_COMMIT_INTERVAL_SECONDS="0.2")
    worker = Worker(env, tmp_path / "w1.log").start().wait_ready()
    try:
        _send(run, [_tx(i) for i in range(3)])
        asyncio.run(consume(run.topic("decisions"), until=3))
        time.sleep(1.0)  # committed
    finally:
        worker.stop()
    redis.flushall()
    worker = Worker(env, tmp_path / "w2.log").start().wait_ready()
    try:
        _send(run, [_tx(3)])
        decisions = asyncio.run(consume(run.topic("decisions"), until=4))
        [last] = [d for d in decisions if d["transaction_id"] == "loss-3"]
        assert last["degraded"] is True
        assert worker.metric("fraud_state_lost_total") == 1
        assert "this group decided transactions before" in worker.output()
    finally:
        worker.stop()
        redis.close()
