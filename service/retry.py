"""Trying again: holding while the state store is away, and sending until the broker has it.

Two helpers, one per kind of fault the batch path waits out:

- :func:`hold`: the attempt *answers* :class:`Unavailable` (a typed outcome, not an
  exception) while the state store cannot be reached; it is tried again with capped
  backoff, counted in ``fraud_state_unavailable_total``.
- :func:`retry`: the attempt *raises* (a send the broker refused, a producer that is
  restarting); it is tried again with capped backoff until it succeeds.

Neither ever gives up: a batch is never dropped because something of the system's is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from service import metrics

__all__ = ["Sleep", "Unavailable", "hold", "retry"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

FIRST_DELAY = 0.1  # seconds; doubled after every failed attempt, up to the caller's cap


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A part of the system cannot do its work now (``"state"``: the store could not be
    reached); ``reason`` says how."""

    reason: str
    part: str = "state"


async def hold(
    attempt: Callable[[], Awaitable[T | Unavailable]],
    *,
    what: str,
    max_delay: float,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run ``attempt`` until it answers something other than :class:`Unavailable`.

    The first wait is logged as a warning, the later ones at debug level: a long outage is
    one line, not one every few seconds (:class:`~service.readiness.Readiness` logs the
    change of state)."""
    delay = FIRST_DELAY
    while True:
        outcome = await attempt()
        if not isinstance(outcome, Unavailable):
            return outcome
        if outcome.part == "state":
            metrics.STATE_UNAVAILABLE.inc()
        else:
            metrics.HELD.labels(outcome.part).inc()
        level = logging.WARNING if delay == FIRST_DELAY else logging.DEBUG
        log.log(level, "%s: %s; holding, retry in %.1f s", what, outcome.reason, delay)
        await sleep(delay)
        delay = min(delay * 2, max_delay)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_delay: float,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run ``attempt`` until it returns without raising (logged as :func:`hold` logs)."""
    delay = FIRST_DELAY
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - any failure: try again, never drop
            level = logging.WARNING if delay == FIRST_DELAY else logging.DEBUG
            log.log(level, "%s failed (%r); retry in %.1f s", what, exc, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
