"""Analysts' rules on the real stack: a worker started with a rules file declines by rule and
names the rule; a changed file is served without a restart (a new rules_version); a broken
one is refused (logged, on /health, in /metrics) while the rules in service go on deciding;
a worker whose rules do not compile does not start."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from fraudrules import version_of

from .conftest import BOOTSTRAP, Run, Worker, consume

FIRST = b"""rules:
  - id: big-amount
    when: amount > 5000
    action: decline
"""
SECOND = b"""rules:
  - id: big-amount
    when: amount > 3000
    action: decline
  - id: vip-terminal
    when: terminal_id == "T-VIP"
    action: allow
"""
BROKEN = b"""rules:
  - id: big-amount
    when: amount > 3000
    action: decline
  - id: half-written
    when: amount > 100 &&
    action: review
"""


def _transaction(amount: float, terminal: str = "T-1") -> dict[str, Any]:
    return {"transaction_id": f"r-{secrets.token_hex(8)}", "card_id": "4000111122223333",
            "terminal_id": terminal, "amount": amount, "timestamp": "2018-06-01T12:00:00+00:00"}


async def _send(run: Run, transactions: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for t in transactions:
            await producer.send_and_wait(
                run.topic("transactions"), orjson.dumps(t), key=t["card_id"].encode()
            )
    finally:
        await producer.stop()


def _decide(run: Run, transactions: list[dict[str, Any]], seen: int) -> dict[str, dict]:
    """Send ``transactions`` and read their decisions (``seen`` were decided before)."""
    asyncio.run(_send(run, transactions))
    decided = asyncio.run(consume(run.topic("decisions"), until=seen + len(transactions)))
    by_id = {d["transaction_id"]: d for d in decided}
    assert all(t["transaction_id"] in by_id for t in transactions), decided
    return {t["transaction_id"]: by_id[t["transaction_id"]] for t in transactions}


def _wait_for(worker: Worker, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.output():
        assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{worker.tail()}"
        time.sleep(0.2)


def test_rules_decide_reload_and_a_broken_file_is_refused_while_the_old_rules_decide(
    run: Run, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(FIRST)
    worker = Worker(
        run.env(FRAUD_RULES_FILE=str(rules), FRAUD_RULES_POLL_SECONDS="0.5"),
        tmp_path / "worker.log",
    ).start().wait_ready()
    try:
        first, second = version_of(FIRST), version_of(SECOND)
        status, body = worker.health() or (0, {})
        assert (body["rules_version"], body["rules_refused"]) == (first, None), body

        small, big = _transaction(20.0), _transaction(9000.0)
        got = _decide(run, [small, big], 0)
        assert got[big["transaction_id"]]["action"] == "decline"
        assert got[big["transaction_id"]]["rules"] == ["big-amount"]
        assert got[small["transaction_id"]]["rules"] == []
        assert {d["rules_version"] for d in got.values()} == {first}

        rules.write_bytes(SECOND)
        _wait_for(worker, f"rules {second} (2 rules) replace rules {first} (1 rules)")
        middle, vip = _transaction(4000.0), _transaction(9000.0, terminal="T-VIP")
        got = _decide(run, [middle, vip], 2)
        assert {d["rules_version"] for d in got.values()} == {second}
        assert (got[middle["transaction_id"]]["action"], got[middle["transaction_id"]]["rules"]) \
            == ("decline", ["big-amount"])
        assert (got[vip["transaction_id"]]["action"], got[vip["transaction_id"]]["rules"]) == (
            "approve", ["big-amount", "vip-terminal"])  # allow wins, both are named

        rules.write_bytes(BROKEN)
        _wait_for(worker, f"refused rules {version_of(BROKEN)}, keeping rules {second}")
        assert "rules.yaml:6:26: rule 'half-written'" in worker.output()
        status, body = worker.health() or (0, {})
        assert body["rules_version"] == second
        refused = body["rules_refused"]
        assert isinstance(refused, dict) and refused["version"] == version_of(BROKEN)
        assert "rule 'half-written'" in refused["reason"] and ":6:26:" in refused["reason"]
        deadline = time.monotonic() + 10
        while worker.metric("fraud_rules_refused_info") != 1 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert worker.metric("fraud_rules_refused_info") == 1
        assert worker.metric("fraud_rules_info") == 1  # the rules in service: one series
        # big-amount on big, middle and vip; vip-terminal on vip
        assert worker.metric("fraud_rule_hits_total") == 4

        late = _transaction(4500.0)
        got = _decide(run, [late], 4)
        assert (got[late["transaction_id"]]["action"], got[late["transaction_id"]]["rules"],
                got[late["transaction_id"]]["rules_version"]) == ("decline", ["big-amount"], second)
    finally:
        worker.stop()
    assert "4000111122223333" not in worker.output()  # the card id is never logged


def test_a_worker_whose_rules_do_not_compile_does_not_start(run: Run, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(BROKEN)
    worker = Worker(run.env(FRAUD_RULES_FILE=str(rules)), tmp_path / "worker.log").start()
    try:
        code = worker.process.wait(60)
    finally:
        worker.stop()
    assert code != 0
    assert "fraud worker refuses to start: rules refused:" in worker.output()
    assert "rules.yaml:6:26: rule 'half-written'" in worker.output()
