"""Secrets and card data: a Redis with a password (``requirepass``, and an ACL user), card
ids only as keyed hashes in Redis keys, never in the logs or in dead-letter reasons.

Each test starts its own ``redis-server`` with a password on a free loopback port (the
shared Redis has none); Kafka is the stack's, with the test's own topics.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis import Redis
from redis.exceptions import AuthenticationError

from fraudtools.worker_process import free_port

from .conftest import BOOTSTRAP, Run, Worker, consume, drain


@dataclass
class SecuredRedis:
    port: int
    password: str  # of the default user (requirepass)
    acl_user: str
    acl_password: str

    def url(self, user: str = "", password: str | None = None) -> str:
        password = self.password if password is None else password
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis.from_url(self.url())


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[SecuredRedis]:
    server = shutil.which("redis-server")
    assert server, "redis-server not found (the stack needs it: apt-get install redis-server)"
    secured = SecuredRedis(free_port(), secrets.token_urlsafe(24), "fraud-worker",
                           secrets.token_urlsafe(24))
    with (tmp_path / "redis.log").open("wb") as log:
        process = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(secured.port),
             "--requirepass", secured.password,
             "--user", secured.acl_user, "on", f">{secured.acl_password}", "~*", "&*", "+@all",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            client = secured.client()
            try:
                if client.ping():
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or process.poll() is not None:
                    log_text = (tmp_path / "redis.log").read_text()
                    pytest.fail(f"redis-server did not start: {log_text}")
                time.sleep(0.1)
            finally:
                client.close()
        yield secured
    finally:
        process.terminate()
        process.wait(10)


def pan() -> str:
    return "5" + "".join(secrets.choice("0123456789") for _ in range(15))


def _transactions(cards: list[str], per_card: int = 3) -> list[dict[str, Any]]:
    return [
        {"transaction_id": f"s-{secrets.token_hex(8)}", "card_id": card,
         "terminal_id": f"T-{i % 2}", "amount": 10.0 + i,
         "timestamp": f"2018-06-01T1{i}:00:00+00:00"}
        for card in cards for i in range(per_card)
    ]


async def _send(run: Run, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for key, value in payloads:
            await producer.send_and_wait(run.topic("transactions"), value, key=key)
    finally:
        await producer.stop()


def _health(worker: Worker, timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """The first answer of ``/health`` (whatever its status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.output()
        answer = worker.health()
        if answer is not None:
            return answer
        time.sleep(0.3)
    pytest.fail(f"/health never answered:\n{worker.output()[-3000:]}")


def _card_tag(secret: str, card: str) -> str:
    """The documented tag, computed here and not by the store: HMAC-SHA256 of the card id
    under the card key secret, hex, its first 32 digits (README, service/keys.py)."""
    return hmac.new(secret.encode(), card.encode(), hashlib.sha256).hexdigest()[:32]


@pytest.mark.parametrize("who", ["requirepass", "acl-user"])
def test_the_worker_uses_the_password_in_its_url_and_keeps_card_ids_out_of_keys_and_logs(
    run: Run, secured_redis: SecuredRedis, tmp_path: Path, who: str
) -> None:
    if who == "requirepass":
        url = secured_redis.url()
    else:
        url = secured_redis.url(secured_redis.acl_user, secured_redis.acl_password)
    key_secret = secrets.token_urlsafe(32)
    env = run.env(FRAUD_REDIS_URL=url, FRAUD_CARD_KEY_SECRET=key_secret)
    worker = Worker(env, tmp_path / "worker.log").start().wait_ready()
    try:
        cards = [pan() for _ in range(5)]
        good = _transactions(cards)
        hostile_cards = [pan() for _ in range(4)]
        hostile = [
            {**good[0], "amount": 999.0},  # the same id with another amount
            {**_transactions(hostile_cards[:1])[0], "amount": -5},
            {**_transactions(hostile_cards[1:2])[0], "terminal_id": "T" * 200},
            {**_transactions(hostile_cards[2:3])[0], "timestamp": "2018-06-01T10:00:00"},
            {**_transactions(hostile_cards[3:4])[0], "amount": "lots"},
        ]
        asyncio.run(_send(run, [(t["card_id"].encode(), orjson.dumps(t)) for t in good]))
        decisions = asyncio.run(consume(run.topic("decisions"), until=len(good), timeout=60))
        asyncio.run(_send(run, [(t["card_id"].encode(), orjson.dumps(t)) for t in hostile]))
        dead = asyncio.run(consume(run.topic("dlq"), until=len(hostile), timeout=60))
    finally:
        worker.stop()

    decided = sorted(d["transaction_id"] for d in decisions)
    assert decided == sorted(t["transaction_id"] for t in good)
    assert len(dead) == len(hostile)
    reasons = [d["reason"] for d in dead]
    assert any("seen before with another time, amount or terminal" in r for r in reasons), reasons
    every_card = cards + hostile_cards
    assert not [c for c in every_card if any(c in r for r in reasons)], reasons

    client = secured_redis.client()
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{run.prefix}:*", count=1000)]
    finally:
        client.close()
    assert keys
    assert not [k for k in keys if any(c in k for c in every_card)], keys
    card_keys = {k for k in keys if k.startswith(run.keys.pattern("card").removesuffix("*"))}
    expected_tags = {_card_tag(key_secret, c) for c in cards}
    assert {k.split("{", 1)[1].split("}", 1)[0] for k in card_keys} == expected_tags

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert not [c for c in every_card if c in log]
    for secret in (secured_redis.password, secured_redis.acl_password, key_secret):
        assert secret not in log


def test_a_wrong_password_fails_health_and_holds_transactions_until_it_is_right(
    run: Run, secured_redis: SecuredRedis, tmp_path: Path
) -> None:
    wrong = secrets.token_urlsafe(24)
    client = Redis.from_url(secured_redis.url(password=wrong))
    try:
        with pytest.raises(AuthenticationError):
            client.ping()
    finally:
        client.close()
    env = run.env(FRAUD_REDIS_URL=secured_redis.url(password=wrong))
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        status, body = _health(worker)
        assert (status, body["status"], body["redis"]) == (503, "degraded", False)

        txs = _transactions([pan()], per_card=2)
        asyncio.run(_send(run, [(t["card_id"].encode(), orjson.dumps(t)) for t in txs]))
        held = asyncio.run(drain(run.topic("decisions"), quiet=4, timeout=8))
        assert held == []  # held, not decided on a guess (policy hold)
        assert asyncio.run(drain(run.topic("dlq"), quiet=1, timeout=3)) == []
        assert "holding, retry" in worker.output()

        # Make the worker's password the right one: what it held is decided, nothing lost.
        client = secured_redis.client()
        try:
            client.config_set("requirepass", wrong)
        finally:
            client.close()
        decisions = asyncio.run(consume(run.topic("decisions"), until=len(txs), timeout=30))
        assert sorted(d["transaction_id"] for d in decisions) == sorted(
            t["transaction_id"] for t in txs
        )
        assert _health(worker)[0] == 200
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert wrong not in log and secured_redis.password not in log
