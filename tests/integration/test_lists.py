"""Allow and block lists on the real stack: a change sent to the lists topic (by the CLI or
by hand) changes a running worker's decisions — a blocked card is declined, removal and
expiry give the model's action back —, card ids are never in Redis in clear, bad changes
are dead-lettered with the reason, a Redis that refuses writes holds a change (never
dead-lettered) until it is applied, two workers both decide on every change, and a worker
on a Redis Cluster does the same."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis import Redis

from fraudtools.kafka_admin import create_topics, delete_topics
from service.keys import KeyLayout
from service.settings import DEVELOPMENT_CARD_KEY_SECRET

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

CARD = "4000111122223333"
OTHER = "4000999988887777"
RULES = b"""lists:
  blocked_cards: card_id
  blocked_terminals: terminal_id
rules:
  - id: blocked-card
    when: card_id in blocked_cards
    action: decline
  - id: blocked-terminal
    when: terminal_id in blocked_terminals
    action: decline
"""


@pytest.fixture
def lists_topic(run: Run) -> Iterator[str]:
    name = f"{run.prefix}-lists"
    asyncio.run(create_topics(BOOTSTRAP, [name]))
    yield name
    asyncio.run(delete_topics(BOOTSTRAP, [name]))


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULES)
    return path


def _env(run: Run, lists_topic: str, rules_file: Path, **more: str) -> dict[str, str]:
    return run.env(FRAUD_RULES_FILE=str(rules_file), FRAUD_TOPIC_LISTS=lists_topic,
                   FRAUD_LISTS_POLL_SECONDS="0.3", **more)


def _transaction(card: str = CARD, terminal: str = "T-1") -> dict[str, Any]:
    return {"transaction_id": f"l-{secrets.token_hex(8)}", "card_id": card,
            "terminal_id": terminal, "amount": 20.0, "timestamp": "2018-06-01T12:00:00+00:00"}


async def _produce(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def _change(topic: str, body: dict[str, Any], key: str | None = None) -> None:
    asyncio.run(_produce(topic, [((key if key is not None else body["list"]).encode(),
                                  orjson.dumps(body))]))


class Decider:
    """Sends transactions and reads their decisions."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.seen = 0

    def __call__(self, *transactions: dict[str, Any]) -> list[dict[str, Any]]:
        asyncio.run(_produce(self.run.topic("transactions"), [
            (t["card_id"].encode(), orjson.dumps(t)) for t in transactions]))
        self.seen += len(transactions)
        decided = asyncio.run(consume(self.run.topic("decisions"), until=self.seen, quiet=0.5))
        by_id = {d["transaction_id"]: d for d in decided}
        assert all(t["transaction_id"] in by_id for t in transactions), decided
        return [by_id[t["transaction_id"]] for t in transactions]


def _version(worker: Worker, name: str, at_least: int, timeout: float = 30.0) -> dict[str, Any]:
    """The worker's /health entry of list ``name`` once its version is at least
    ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = worker.health()
        entry = (answer[1].get("lists") or {}).get(name) if answer else None  # type: ignore[union-attr]
        if isinstance(entry, dict) and entry["version"] >= at_least:
            return entry
        assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"{name} not at version {at_least}: {answer}"
        time.sleep(0.1)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fraudtools.lists", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _prefix_contents(prefix: str) -> bytes:
    """Every key under the prefix on the local Redis, and what each holds."""
    client = Redis.from_url(REDIS_URL)
    found = b""
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            kind = client.type(key)
            found += b"\n" + key
            if kind == b"hash":
                found += b"".join(b" " + k + b"=" + v for k, v in client.hgetall(key).items())
            elif kind == b"zset":
                found += b"".join(b" " + m for m in client.zrange(key, 0, -1))
            elif kind == b"set":
                found += b"".join(b" " + m for m in client.smembers(key))
            elif kind == b"string":
                found += b" " + (client.get(key) or b"")
    finally:
        client.close()
    return found


def test_a_change_on_the_topic_changes_a_running_worker_s_decisions(
    run: Run, lists_topic: str, rules_file: Path, tmp_path: Path
) -> None:
    env = _env(run, lists_topic, rules_file)
    worker = Worker(env, tmp_path / "worker.log").start().wait_ready()
    decide = Decider(run)
    tag = KeyLayout(card_key_secret=DEVELOPMENT_CARD_KEY_SECRET.encode(),
                    prefix=run.prefix).card_tag(CARD)
    try:
        status, body = worker.health() or (0, {})
        assert body["lists"] == {  # declared, never changed
            "blocked_cards": {"field": "card_id", "entries": 0, "version": 0, "conflict": None},
            "blocked_terminals": {"field": "terminal_id", "entries": 0, "version": 0,
                                  "conflict": None}}
        [before] = decide(_transaction())
        assert (before["action"], before["rules"]) == ("approve", [])

        # the CLI adds the card and waits until Redis holds it
        added = _cli(env, "add", "blocked_cards", CARD, "--reason", "chargeback 1182",
                     "--wait", "30")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "applied" in added.stdout and CARD not in added.stdout
        assert _version(worker, "blocked_cards", 1)["entries"] == 1
        blocked, other = decide(_transaction(), _transaction(OTHER))
        assert (blocked["action"], blocked["rules"]) == ("decline", ["blocked-card"])
        assert (other["action"], other["rules"]) == ("approve", [])
        alerts = asyncio.run(drain(run.topic("alerts"), quiet=1.0))
        assert blocked["transaction_id"] in {a["transaction_id"] for a in alerts}

        # in Redis: the card's keyed hash, never the card id
        contents = _prefix_contents(run.prefix)
        assert tag.encode() in contents and b"chargeback 1182" in contents
        assert CARD.encode() not in contents and OTHER.encode() not in contents

        shown = _cli(env, "show", "blocked_cards", CARD)
        assert shown.returncode == 0 and "is listed in blocked_cards for ever" in shown.stdout
        assert _cli(env, "show", "blocked_cards", OTHER).returncode == 1
        listing = _cli(env, "show", "blocked_cards")
        assert listing.returncode == 0 and tag in listing.stdout and CARD not in listing.stdout
        assert "reason: chargeback 1182" in listing.stdout

        # removed by hand on the topic: the model's action again
        _change(lists_topic, {"list": "blocked_cards", "op": "remove", "value": CARD})
        _version(worker, "blocked_cards", 2)
        [after] = decide(_transaction())
        assert (after["action"], after["rules"]) == ("approve", [])

        # added for a few seconds: declined until it expires, then the model decides again
        expires = time.time() + 4
        _change(lists_topic, {"list": "blocked_cards", "op": "add", "value": CARD,
                              "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()})
        _version(worker, "blocked_cards", 3)
        [meanwhile] = decide(_transaction())
        assert meanwhile["action"] == "decline"
        time.sleep(max(0.0, expires - time.time()) + 0.5)
        [expired] = decide(_transaction())
        assert (expired["action"], expired["rules"]) == ("approve", [])
        assert _cli(env, "show", "blocked_cards", CARD).returncode == 1
        # the worker removes the expired entry from Redis
        client = Redis.from_url(REDIS_URL)
        try:
            deadline = time.monotonic() + 10
            while client.hexists(f"{run.prefix}:list:{{blocked_cards}}", tag):
                assert time.monotonic() < deadline, "the expired entry is still in Redis"
                time.sleep(0.2)
        finally:
            client.close()
        _change(lists_topic, {"list": "blocked_cards", "op": "add", "value": OTHER})
        assert _version(worker, "blocked_cards", 4)["entries"] == 1

        # bad changes: dead-lettered with the reason; the worker goes on
        _change(lists_topic, {"list": "blocked_cards", "op": "block", "value": CARD})
        _change(lists_topic, {"list": "vip_cards", "op": "add", "value": CARD})
        _change(lists_topic, {"list": "blocked_cards", "op": "add", "value": CARD}, key=CARD)
        dead = asyncio.run(consume(run.topic("dlq"), until=3, quiet=1.0))
        assert sorted(d["reason"].split(":")[0] for d in dead) == ["key", "list", "op"]
        assert {d["topic"] for d in dead} == {lists_topic}
        assert any("'vip_cards' is not declared in the rules in service" in d["reason"]
                   for d in dead)
        [still] = decide(_transaction())
        assert still["action"] == "approve"  # none of the three was applied
        assert worker.metric("fraud_list_changes_total") == 4
        assert worker.metric("fraud_dead_letters_total") == 3
        assert (worker.health() or (0, {}))[0] == 200
    finally:
        worker.stop()
    assert CARD not in worker.output() and OTHER not in worker.output()


def test_a_redis_that_refuses_writes_holds_a_change_until_it_is_applied(
    run: Run, lists_topic: str, rules_file: Path, tmp_path: Path, private_redis: str
) -> None:
    env = _env(run, lists_topic, rules_file, FRAUD_REDIS_URL=private_redis)
    worker = Worker(env, tmp_path / "worker.log").start().wait_ready()
    redis = Redis.from_url(private_redis)
    try:
        redis.config_set("maxmemory", 1)  # full: every write refused (noeviction)
        _change(lists_topic, {"list": "blocked_terminals", "op": "add", "value": "T-BAD"})
        deadline = time.monotonic() + 30
        while "list-changes" not in ((worker.health() or (0, {}))[1].get("faults") or {}):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        status, body = worker.health() or (0, {})
        assert status == 503 and "OutOfMemoryError" in body["faults"]["list-changes"]  # type: ignore[index]
        assert worker.metric("fraud_faults") >= 1
        time.sleep(2)  # held, retried: never dead-lettered
        assert asyncio.run(drain(run.topic("dlq"), quiet=1.0)) == []
        redis.config_set("maxmemory", 0)
        assert _version(worker, "blocked_terminals", 1)["entries"] == 1
        [decision] = Decider(run)(_transaction(terminal="T-BAD"))
        assert (decision["action"], decision["rules"]) == ("decline", ["blocked-terminal"])
        assert "list-changes" not in ((worker.health() or (0, {}))[1].get("faults") or {})
        assert asyncio.run(drain(run.topic("dlq"), quiet=1.0)) == []
    finally:
        redis.config_set("maxmemory", 0)
        redis.close()
        worker.stop()


def test_no_transaction_is_decided_before_the_lists_are_read(
    run: Run, lists_topic: str, rules_file: Path, tmp_path: Path
) -> None:
    client = Redis.from_url(REDIS_URL)
    client.set(f"{run.prefix}:lists", "not a set")  # the lists cannot be read (WRONGTYPE)
    worker = Worker(_env(run, lists_topic, rules_file), tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 60
        while "lists" not in ((worker.health() or (0, {}))[1].get("faults") or {}):
            assert worker.alive() and time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        status, body = worker.health() or (0, {})
        reason = body["faults"]["lists"]  # type: ignore[index]
        assert status == 503 and "cannot read the lists" in reason and "WRONGTYPE" in reason
        assert "no transaction is decided until they are read once" in reason
        transaction = _transaction()
        asyncio.run(_produce(run.topic("transactions"), [(CARD.encode(),
                                                          orjson.dumps(transaction))]))
        assert asyncio.run(drain(run.topic("decisions"), quiet=3.0)) == []  # held
        client.delete(f"{run.prefix}:lists")
        [decision] = asyncio.run(consume(run.topic("decisions"), until=1, quiet=0.5))
        assert decision["transaction_id"] == transaction["transaction_id"]
        assert (decision["action"], decision["degraded"]) == ("approve", False)
        worker.wait_ready(30)
    finally:
        client.close()
        worker.stop()


def _assigned(worker: Worker) -> int:
    """Transactions partitions the worker holds now (its last assignment in the log)."""
    lines = [line for line in worker.output().splitlines() if "transactions: assigned" in line]
    return lines[-1].count("[") - 1 if lines else 0


def test_two_workers_each_decide_on_every_change(
    run: Run, lists_topic: str, rules_file: Path, tmp_path: Path
) -> None:
    workers = [Worker(_env(run, lists_topic, rules_file), tmp_path / f"worker-{i}.log").start()
               for i in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        deadline = time.monotonic() + 60
        while not all(_assigned(w) for w in workers):  # the group shares the partitions
            assert time.monotonic() < deadline, [w.tail() for w in workers]
            time.sleep(0.3)
        _change(lists_topic, {"list": "blocked_terminals", "op": "add", "value": "T-BAD"})
        for worker in workers:
            _version(worker, "blocked_terminals", 1)
        cards = [f"40000000{n:08d}" for n in range(24)]  # keys on every partition
        decided = Decider(run)(*(_transaction(card, "T-BAD") for card in cards))
        assert {(d["action"], tuple(d["rules"])) for d in decided} == {
            ("decline", ("blocked-terminal",))}
        declines = [w.metric("fraud_decisions_total") for w in workers]
        assert all(declines) and sum(declines) == len(cards), declines  # both decided some
        applied = [w.metric("fraud_list_changes_total") for w in workers]
        assert sorted(applied) == [0, 1]  # applied once, by the worker of its partition
    finally:
        for worker in workers:
            worker.stop()


def test_a_worker_on_a_redis_cluster_decides_on_its_lists(
    run: Run, lists_topic: str, rules_file: Path, tmp_path: Path
) -> None:
    env = _env(run, lists_topic, rules_file, **redis_env("cluster"))
    worker = Worker(env, tmp_path / "worker.log").start().wait_ready()
    try:
        added = _cli(env, "add", "blocked_cards", CARD, "--wait", "30")
        assert added.returncode == 0, added.stdout + added.stderr
        _change(lists_topic, {"list": "blocked_terminals", "op": "add", "value": "T-{BAD}"})
        _version(worker, "blocked_cards", 1)
        _version(worker, "blocked_terminals", 1)
        card, terminal, neither = Decider(run)(
            _transaction(), _transaction(OTHER, "T-{BAD}"), _transaction(OTHER))
        assert (card["action"], card["rules"]) == ("decline", ["blocked-card"])
        assert (terminal["action"], terminal["rules"]) == ("decline", ["blocked-terminal"])
        assert (neither["action"], neither["rules"]) == ("approve", [])
        assert _cli(env, "show", "blocked_cards", CARD).returncode == 0
    finally:
        worker.stop()
        remove_keys("cluster", run.prefix)
