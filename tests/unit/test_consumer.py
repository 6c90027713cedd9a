"""The transactions consumer's bookkeeping: which offsets are done when acks come back out
of order (the consumer itself runs against the real broker in tests/integration)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from service.consumer import BatchConsumer

TP = TopicPartition("transactions", 0)


async def _handle(messages: object, times: object) -> None:  # never called here
    raise AssertionError("not used")


def test_offsets_are_done_in_batch_order_however_the_acks_arrive() -> None:
    async def scenario() -> list[dict[TopicPartition, int]]:
        consumer = BatchConsumer("transactions", _handle, batch_size=10, max_in_flight=3)
        loop = asyncio.get_running_loop()
        acks = [loop.create_future() for _ in range(3)]
        for ack, end in zip(acks, (10, 20, 30), strict=True):
            consumer._in_flight.append((ack, {TP: end}, 0.0))
        seen = []
        acks[1].set_result(None)  # the second batch is acknowledged first
        await consumer._settle(keep=3)
        seen.append(dict(consumer._done))  # nothing: the first is still in flight
        acks[0].set_result(None)
        await consumer._settle(keep=2)
        seen.append(dict(consumer._done))  # the first two, in order
        settling = asyncio.ensure_future(consumer._settle(keep=0))
        await asyncio.sleep(0)
        assert not settling.done()  # keep=0 waits for the last one
        acks[2].set_result(None)
        await settling
        seen.append(dict(consumer._done))
        assert not consumer._in_flight
        return seen

    assert asyncio.run(scenario()) == [{}, {TP: 20}, {TP: 30}]


def test_a_full_window_waits_for_the_oldest_batch() -> None:
    async def scenario() -> bool:
        consumer = BatchConsumer("transactions", _handle, batch_size=10, max_in_flight=2)
        loop = asyncio.get_running_loop()
        oldest, newest = loop.create_future(), loop.create_future()
        consumer._in_flight.extend([(oldest, {TP: 10}, 0.0), (newest, {TP: 20}, 0.0)])
        waiting = asyncio.ensure_future(consumer._settle(keep=1))
        await asyncio.sleep(0)
        blocked = not waiting.done()
        oldest.set_result(None)
        await waiting
        assert consumer._done == {TP: 10} and len(consumer._in_flight) == 1
        return blocked

    assert asyncio.run(scenario())


def test_the_oldest_undecided_record_is_the_oldest_of_the_batches_in_hand() -> None:
    async def scenario() -> list[float]:
        consumer = BatchConsumer("transactions", _handle, batch_size=10, max_in_flight=3)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        now = time.time()
        ages = [consumer.oldest_undecided()]  # nothing in hand
        consumer._in_flight.extend([(first, {TP: 10}, now - 30.0), (second, {TP: 20}, now - 5.0)])
        ages.append(consumer.oldest_undecided())
        first.set_result(None)
        await consumer._settle(keep=1)
        ages.append(consumer.oldest_undecided())
        return ages

    none, both, second = asyncio.run(scenario())
    assert none == 0.0
    assert 30.0 <= both < 31.0
    assert 5.0 <= second < 6.0


def test_the_consumer_is_dead_once_its_loop_has_ended() -> None:
    async def scenario() -> list[str | None]:
        consumer = BatchConsumer("transactions", _handle, batch_size=10)
        seen = [consumer.dead()]  # not started yet: not dead
        loop = asyncio.get_running_loop()
        consumer._fetching = loop.create_future()
        seen.append(consumer.dead())  # running
        consumer._fetching.set_exception(RuntimeError("broker gone for good"))
        seen.append(consumer.dead())
        consumer._fetching.exception()  # retrieved: no "never retrieved" warning
        return seen

    before, running, crashed = asyncio.run(scenario())
    assert before is None and running is None
    assert crashed is not None and "broker gone for good" in crashed
