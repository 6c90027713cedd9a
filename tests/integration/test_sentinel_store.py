"""The store behind Redis Sentinel (`make up-sentinel`): a planned failover (``SENTINEL
FAILOVER``) under traffic loses no write. Without asking the sentinels for the primary
before each round trip and waiting for a replica (``WAIT``), the store kept writing to the
old primary for seconds after it was demoted, and those writes were gone."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

from redis import Redis

from fraudcore import Transaction
from fraudcore.errors import StateUnavailable
from service.keys import KeyLayout

from .conftest import SENTINEL_MASTER, SENTINEL_URL, open_store

SECRET = b"sentinel"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def _sentinel_ports() -> list[int]:
    return [int(u.rsplit(":", 1)[1]) for u in SENTINEL_URL.split(",")]


def _primary() -> int:
    for port in _sentinel_ports():
        with Redis(port=port, socket_timeout=1.0) as sentinel:
            try:
                return int(sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER)[1])
            except Exception:  # noqa: BLE001 - ask the next sentinel
                continue
    raise AssertionError("no sentinel names a primary")


def _replica_up(sentinel_port: int) -> bool:
    with Redis(port=sentinel_port) as sentinel:
        replicas = sentinel.sentinel_slaves(SENTINEL_MASTER)
    return bool(replicas) and not any("down" in r["flags"] for r in replicas)


def _ready_to_fail_over(port: int, timeout: float = 30.0) -> None:
    """The primary's replica is in sync and every sentinel sees it up (a failover right
    after the previous one is refused until then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Redis(port=port) as primary:
            info = primary.info("replication")
        synced = info.get("connected_slaves", 0) >= 1 and "online" in str(info.get("slave0"))
        if synced and all(_replica_up(p) for p in _sentinel_ports()):
            return
        time.sleep(0.2)
    raise AssertionError("the Sentinel setup is not ready for a failover")


def test_a_planned_failover_under_traffic_loses_no_write(sentinel_url: str) -> None:
    prefix = f"it-sentinel-{uuid.uuid4().hex[:8]}"
    layout = KeyLayout(card_key_secret=SECRET, prefix=prefix)
    old = _primary()
    _ready_to_fail_over(old)

    async def scenario() -> tuple[list[Transaction], int, int, list[bool]]:
        async with open_store("sentinel", prefix, card_key_secret=SECRET,
                              wait_replicas=1) as store:
            recorded: list[Transaction] = []
            held = 0
            switched_at = None
            for b in range(10_000):
                batch = [Transaction(f"tx-{b}-{i}", f"card-{i % 7}", f"t-{i % 3}", 1.0 + i,
                                     T0 + timedelta(seconds=b * 20 + i)) for i in range(20)]
                while True:  # the hold policy: the same batch until it is recorded
                    try:
                        await store.exchange(batch)
                        break
                    except StateUnavailable:
                        held += 1
                        await asyncio.sleep(0.05)
                recorded += batch
                if b == 20:
                    subprocess.run(
                        ["redis-cli", "-p", str(_sentinel_ports()[0]), "SENTINEL", "FAILOVER",
                         SENTINEL_MASTER], check=True, capture_output=True,
                    )
                if b > 20 and switched_at is None and _primary() != old:
                    switched_at = time.monotonic()
                if switched_at is not None and time.monotonic() - switched_at > 3.0:
                    break
                await asyncio.sleep(0.02)
            assert switched_at is not None, "the sentinels never named another primary"
            new = _primary()
            with Redis(port=new) as primary:  # before the store removes its keys
                pipe = primary.pipeline(transaction=False)
                for tx in recorded:
                    pipe.hexists(layout.card(tx.card_id).val, tx.transaction_id)
                return recorded, held, new, pipe.execute()

    recorded, held, new, present = asyncio.run(scenario())
    assert new != old
    missing = [tx.transaction_id for tx, there in zip(recorded, present, strict=True) if not there]
    assert not missing, (
        f"{len(missing)} of {len(recorded)} recorded writes lost ({held} round trips held): "
        f"{missing[:5]}"
    )
    assert len(recorded) > 20 * 20
