"""Labels and the Redis keys, with the real worker process on the real broker and Redis.

README "Formats": bad labels go to the dead-letter topic with the labels topic in their
``topic`` field; delivery is at least once, so a label delivered again must change
nothing. Conventions 9 and 15: every key has a TTL (or a trim), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from redis import Redis

from fraudcore import SPEC

from .conftest import REDIS_URL, Run, Worker, consume, send_keyed

DAY = timedelta(days=1)


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def _tx(tx_id: str, card: str, terminal: str, amount: float, at: datetime) -> dict[str, object]:
    return {"transaction_id": tx_id, "card_id": card, "terminal_id": terminal, "amount": amount,
            "timestamp": at.isoformat()}


def test_a_label_delivered_twice_counts_once_and_bad_labels_are_dead_lettered(
    run: Run, tmp_path: Path
) -> None:
    worker = Worker(run.env(FRAUD_INCLUDE_FEATURES="true"), tmp_path / "w.log").start()
    worker.wait_ready()
    t0 = (datetime.now(UTC) - 20 * DAY).replace(microsecond=0)
    fraud = _tx("lab-1", "card-a", "T-lab", 42.5, t0)
    try:
        send_keyed(run.topic("transactions"), [orjson.dumps(fraud)])
        asyncio.run(consume(run.topic("decisions"), until=1, quiet=0.2))
        label = orjson.dumps({**fraud, "known_at": (t0 + DAY).isoformat()})
        other_amount = orjson.dumps({**fraud, "amount": 43.5, "known_at": (t0 + DAY).isoformat()})
        not_json = b"{not json"
        # The same label twice, as a redelivery sends it (the very same bytes).
        send_keyed(run.topic("labels"), [label, other_amount, label, not_json])
        dead = asyncio.run(consume(run.topic("dlq"), until=2, quiet=0.5, timeout=30))
        _until(lambda: worker.metric("fraud_labels_total") >= 2)  # both copies handled
        # A later transaction at the terminal, by another card, past the label delay: its
        # features read the terminal's known frauds.
        later = _tx("lab-2", "card-b", "T-lab", 10.0, t0 + 8 * DAY)
        send_keyed(run.topic("transactions"), [orjson.dumps(later)])
        decisions = asyncio.run(consume(run.topic("decisions"), until=2, quiet=0.2, timeout=30))
    finally:
        worker.stop()
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 2, dead
    assert reasons[0].startswith("label: its transaction was recorded with another time, amount")
    assert reasons[1].startswith("not valid JSON")
    for d in dead:
        assert d["topic"] == run.topic("labels")  # the labels topic, not the transactions'
        assert d["partition"] in range(4) and d["offset"] >= 0
    assert orjson.loads(next(d for d in dead if d["reason"].startswith("label"))["payload"])[
        "amount"] == 43.5
    features = next(d for d in decisions if d["transaction_id"] == "lab-2")["features"]
    assert features["fraud_count_by_terminal_30d_delay7d"] == 1  # not 2: counted once
    assert features["tx_count_by_terminal_30d_delay7d"] == 1
    assert features["fraud_rate_by_terminal_30d_delay7d"] == 1.0


def test_every_key_the_worker_writes_expires_within_its_retention(
    run: Run, tmp_path: Path
) -> None:
    """Cards, terminals (transactions, frauds, when each was known) and the id index: each
    key has a TTL no longer than what its kind keeps. The one key without one is the
    state's marker (one small key per prefix)."""
    worker = Worker(run.env(), tmp_path / "w.log").start().wait_ready()
    t0 = (datetime.now(UTC) - 10 * DAY).replace(microsecond=0)
    txs = [_tx(f"ttl-{i}", f"card-{i % 3}", f"T-{i % 2}", 5.0 + i, t0 + i * timedelta(hours=1))
           for i in range(12)]
    labels = [orjson.dumps({**tx, "known_at": (t0 + 2 * DAY).isoformat()}) for tx in txs[:2]]
    try:
        send_keyed(run.topic("transactions"), [orjson.dumps(tx) for tx in txs])
        asyncio.run(consume(run.topic("decisions"), until=len(txs), quiet=0.2))
        send_keyed(run.topic("labels"), labels)
        _until(lambda: worker.metric("fraud_labels_total") >= 2)
    finally:
        worker.stop()
    client = Redis.from_url(REDIS_URL)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{run.prefix}:*", count=1000))
        ttl = {k: client.pttl(k) for k in keys}
    finally:
        client.close()
    layout = run.keys
    day_ms = 86_400_000
    card_ms = SPEC.card_retention_seconds * 1000
    terminal_ms = SPEC.terminal_retention_seconds * 1000
    bounds = {  # key suffix -> (kind, the longest TTL it may have)
        ":tx": terminal_ms, ":fraud": terminal_ms, ":known": terminal_ms,
    }
    seen: set[str] = set()
    for key in keys:
        if key == layout.lineage:
            assert ttl[key] == -1  # the marker: no TTL, one key
            continue
        assert ttl[key] > 0, f"{key} never expires (PTTL {ttl[key]})"
        if key.startswith(layout.pattern("card")[:-1]):
            kind, longest = "card" + key[key.rindex(":"):], card_ms
        elif key.startswith(layout.pattern("id")[:-1]):
            kind, longest = "id", card_ms  # a card's retention from now (or the event)
        elif key.startswith(layout.pattern("t")[:-1]):
            kind = "terminal" + key[key.rindex(":"):]
            longest = bounds[key[key.rindex(":"):]]
        else:
            raise AssertionError(f"a key of no known kind: {key}")
        assert longest - day_ms < ttl[key] <= longest, (key, ttl[key], longest)
        seen.add(kind)
    assert layout.lineage in keys
    assert seen == {"card:tx", "card:val", "terminal:tx", "terminal:fraud", "terminal:known",
                    "id"}
