"""The bench's paced producer (:func:`fraudtools.bench.kafka.send_stamped`): it sends at
the offered rate without spinning the event loop, and in order."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Any

import pytest

from fraudtools.bench import kafka
from fraudtools.bench.data import Slice


@dataclass
class Clock:
    """A clock that only :meth:`sleep` moves (``time.perf_counter`` and ``monotonic``)."""

    now: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def perf_counter(self) -> float:
        return self.now

    monotonic = perf_counter

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Ack:
    timestamp: int
    timestamp_type: int = kafka.LOG_APPEND


class Producer:
    """Records what was sent, when; acknowledges at once."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes, float]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes) -> asyncio.Future[Ack]:
        self.sent.append((topic, value, self.clock.now))
        done: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        done.set_result(Ack(len(self.sent)))
        return done


def _records(n: int, every_label: int = 0) -> Slice:
    is_tx = [not (every_label and i % every_label == every_label - 1) for i in range(n)]
    return Slice(is_tx, [b"card"] * n, [f"v{i}".encode() for i in range(n)],
                 [f"t{i}" for i in range(n)])


@pytest.mark.parametrize("rate", [500, 1_000, 5_000, 20_000])
def test_paced_sends_never_sleep_less_than_a_tick_and_keep_the_rate(
    monkeypatch: pytest.MonkeyPatch, rate: int
) -> None:
    clock = Clock()
    monkeypatch.setattr(kafka, "time", clock)
    monkeypatch.setattr("asyncio.sleep", clock.sleep)  # the loop's, for this test
    producer = Producer(clock)
    records = _records(2_000, every_label=50)
    start = clock.now

    sent: Any = asyncio.run(kafka.send_stamped(
        producer, records, rate=rate, transactions="tx", labels="lb"))

    # A sleep shorter than the loop's timer resolution returns at once: the loop spins.
    assert min(clock.sleeps) >= kafka.TICK
    transactions = records.transactions
    assert len(sent.sent_at) == transactions
    # Sent in order, each when due: never early, and late by at most a tick.
    assert [value for _, value, _ in producer.sent] == records.values
    due = (i / rate for i in range(transactions))
    for (_, _, at), when in zip((s for s in producer.sent if s[0] == "tx"), due, strict=True):
        assert when - 1e-9 <= at - start <= when + kafka.TICK + 1e-9
    assert {topic for topic, _, _ in producer.sent} == {"tx", "lb"}


def test_no_garbage_collection_pauses_the_paced_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full collection over the phase's pending sends stopped the sender for up to 48 ms,
    # and what it held back then went out as one burst: the load was not the offered one.
    clock = Clock()
    monkeypatch.setattr(kafka, "time", clock)
    monkeypatch.setattr("asyncio.sleep", clock.sleep)
    collecting: list[bool] = []

    class Watching(Producer):
        async def send(self, topic: str, value: bytes, *, key: bytes) -> asyncio.Future[Ack]:
            collecting.append(gc.isenabled())
            return await super().send(topic, value, key=key)

    assert gc.isenabled()
    asyncio.run(kafka.send_stamped(Watching(clock), _records(500), rate=5_000,
                                   transactions="tx", labels="lb"))

    assert len(collecting) == 500
    assert not any(collecting)
    assert gc.isenabled()  # and on again after the phase
