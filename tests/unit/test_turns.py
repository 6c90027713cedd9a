"""The turns of concurrent batches (service/turns.py) and what the pipeline makes of them:
a batch's claims, a turn given up before it claimed, and a fault held by one batch while
batches of other cards go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from fraudcore import SPEC, Transaction
from fraudcore.errors import StateUnavailable
from service.readiness import Readiness
from service.turns import Turns, claims

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _tx(n: int, card: str, terminal: str = "T-1") -> Transaction:
    return Transaction(f"tx-{n}", card, terminal, 10.0, T0)


def test_a_batch_claims_its_cards_and_ids_and_its_terminals_only_without_a_delay() -> None:
    batch: Sequence[Transaction] = [_tx(1, "c1"), _tx(2, "c2", "T-2")]
    assert claims(batch) == {"c1", "c2", ("id", "tx-1"), ("id", "tx-2")}
    from dataclasses import replace

    no_delay = replace(SPEC, label_delay_days=0)
    assert {("terminal", "T-1"), ("terminal", "T-2")} <= claims(batch, no_delay)


def test_a_turn_given_up_before_it_claimed_leaves_cleanly() -> None:
    async def scenario() -> bool:
        turns = Turns()
        first, second = turns.arrive(), turns.arrive()
        first.claim({"c1"})
        second.leave()  # cancelled while it waited to decode: it never claimed
        first.leave()
        await asyncio.wait_for(second.send_turn(), 1)
        return not turns.exchanging

    assert asyncio.run(scenario())


def test_a_fault_held_by_one_batch_is_not_cleared_by_a_batch_beside_it() -> None:
    async def scenario() -> list[bool]:
        turns, readiness = Turns(), Readiness()
        seen: list[bool] = []
        held, beside = turns.arrive(), turns.arrive()
        held.claim({"c1"})
        beside.claim({"c2"})
        release = asyncio.Event()

        async def holding() -> None:
            turns.enter(held)
            turns.fault(readiness, "state", str(StateUnavailable("Redis: away")))
            await release.wait()
            turns.clear(readiness, "state")
            held.leave()

        async def going_on() -> None:
            turns.enter(beside)
            turns.clear(readiness, "state")  # got past the store: but the other did not
            seen.append(readiness.ready)
            beside.leave()

        first = asyncio.ensure_future(holding())
        await asyncio.sleep(0)
        await going_on()
        release.set()
        await first
        seen.append(readiness.ready)
        return seen

    assert asyncio.run(scenario()) == [False, True]
