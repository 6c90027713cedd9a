"""A batch's outputs on their way to the broker: queued, then acknowledged (or sent again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from service import metrics
from service.ports import Sink
from service.readiness import Readiness
from service.retry import Sleep, retry

__all__ = ["PATIENCE", "Delivery", "Output", "send_until_acknowledged", "watched"]

#: Seconds a batch's outputs may take to be acknowledged before the worker says it holds on
#: them (a healthy broker takes milliseconds; a topic that does not exist, forever).
PATIENCE = 5.0


@contextlib.contextmanager
def watched(
    readiness: Readiness | None, topics: Iterable[str], *, after: float = PATIENCE
) -> Iterator[None]:
    """While the block runs: if it has not finished after ``after`` seconds (a send that
    waits for a topic's metadata, an acknowledgement that does not come), ``readiness``
    gets the fault ``"output"`` naming the topics. The caller clears it once delivered."""
    if readiness is None:
        yield
        return
    names = ", ".join(sorted(set(topics)))

    def late() -> None:
        readiness.fault(
            "output",
            f"sending to {names}: not acknowledged in {after:g} s (a topic that does not "
            "exist? the broker away?); sending again until it is",
        )

    handle = asyncio.get_running_loop().call_later(after, late)
    try:
        yield
    finally:
        handle.cancel()

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send."""

    topic: str
    key: bytes | None
    value: bytes


class Delivery:
    """A batch's outputs, queued on the sink. :meth:`confirmed` returns once the broker has
    acknowledged every one (sending them all again while that fails); only then are its
    decisions counted (``fraud_decisions_total`` by action) and their latency observed."""

    def __init__(
        self,
        outputs: list[Output],
        queued: list[Awaitable[object]],
        *,
        send_again: Callable[[list[Output]], Awaitable[None]],
        record_times: Sequence[float],
        clock: Callable[[], float],
        actions: Mapping[str, int] | None = None,
        duplicates: int = 0,
        readiness: Readiness | None = None,
    ) -> None:
        self.outputs = outputs
        self._queued = queued
        self._send_again = send_again
        self._record_times = record_times
        self._clock = clock
        self._actions = dict(actions or {})  # decisions by action, counted once delivered
        self._duplicates = duplicates  # of which marked duplicate: true
        self._readiness = readiness

    async def confirmed(self) -> None:
        with watched(self._readiness, (o.topic for o in self.outputs)):
            try:
                if len(self._queued) != len(self.outputs):
                    raise RuntimeError("not every record was queued")
                await asyncio.gather(*self._queued)
            except Exception as exc:  # noqa: BLE001 - any send failure: send them all again
                log.warning(
                    "delivery of %d records failed (%r); sending again", len(self.outputs), exc
                )
                await self._send_again(self.outputs)
        if self._readiness is not None:
            self._readiness.clear("output")
        for action, n in self._actions.items():
            metrics.DECISIONS.labels(action).inc(n)
        if self._duplicates:
            metrics.DUPLICATE_DECISIONS.inc(self._duplicates)
        now = self._clock()
        if self._actions:
            metrics.LAST_DECISION.set(now)
        for at in self._record_times:
            metrics.EVENT_TO_DECISION_SECONDS.observe(max(0.0, now - at))


async def send_until_acknowledged(
    sink: Sink,
    outputs: list[Output],
    *,
    max_delay: float,
    sleep: Sleep = asyncio.sleep,
    readiness: Readiness | None = None,
) -> None:
    """Send every record and wait until the broker has them all; all again while it fails.

    While it fails (a topic that does not exist, a broker that refuses), ``readiness`` has
    the fault ``"output"`` (``/health`` 503); it is cleared once every record is in."""

    async def send_all() -> None:
        try:
            pending = [await sink.send(o.topic, o.key, o.value) for o in outputs]
            await asyncio.gather(*pending)
        except Exception as exc:
            if readiness is not None:
                topics = sorted({o.topic for o in outputs})
                readiness.fault("output", f"sending to {', '.join(topics)} fails: {exc!r}")
            raise

    with watched(readiness, (o.topic for o in outputs)):
        await retry(
            send_all, what=f"sending {len(outputs)} records", max_delay=max_delay, sleep=sleep
        )
    if readiness is not None:
        readiness.clear("output")
