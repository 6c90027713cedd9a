"""The optional transaction fields through the real worker: a rule on channel, country, mcc
and currency fires on what the producer sent, and a bad value is dead-lettered naming the
field, while the rest of the batch is decided."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from .conftest import BOOTSTRAP, Run, Worker, consume

RULES = b"""rules:
  - id: foreign-online
    when: channel == 'online' && country != '' && country != 'FR'
    action: review
  - id: gambling-in-euros
    when: mcc == '7995' && currency == 'EUR'
    action: decline
"""


def _tx(**fields: Any) -> dict[str, Any]:
    return {"transaction_id": f"f-{secrets.token_hex(6)}", "card_id": "4000999988887777",
            "terminal_id": "T-1", "amount": 12.0, "timestamp": "2018-06-01T12:00:00+00:00",
            **fields}


async def _send(run: Run, transactions: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for t in transactions:
            await producer.send_and_wait(run.topic("transactions"), orjson.dumps(t),
                                         key=t["card_id"].encode())
    finally:
        await producer.stop()


def test_rules_read_the_optional_fields_in_the_worker(run: Run, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(RULES)
    sent = [
        _tx(channel="online", country="de"),          # foreign-online
        _tx(channel="online", country="FR"),          # nothing
        _tx(channel="online"),                        # no country: nothing
        _tx(mcc=7995, currency="eur"),                # gambling-in-euros
        _tx(mcc="7995", currency="USD", channel="card_present"),  # nothing
        _tx(channel="web"),                           # dead-lettered
    ]
    worker = Worker(run.env(FRAUD_RULES_FILE=str(rules)), tmp_path / "worker.log")
    worker.start().wait_ready()
    try:
        asyncio.run(_send(run, sent))
        decisions = asyncio.run(consume(run.topic("decisions"), until=5))
        dead = asyncio.run(consume(run.topic("dlq"), until=1))
    finally:
        worker.stop()
    by_id = {d["transaction_id"]: d for d in decisions}
    assert len(decisions) == 5 and len(by_id) == 5
    fired = [by_id[t["transaction_id"]]["rules"] for t in sent[:5]]
    assert fired == [["foreign-online"], [], [], ["gambling-in-euros"], []]
    assert by_id[sent[3]["transaction_id"]]["action"] == "decline"
    assert [d["reason"] for d in dead] == [
        "channel: expected one of card_present, online, moto, atm, got 'web'"
    ]
