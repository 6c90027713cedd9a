"""A batch's outputs on their way to the broker: queued, then acknowledged (or sent again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from service import metrics
from service.ports import Sink
from service.retry import Sleep, retry

__all__ = ["Delivery", "Output", "send_until_acknowledged"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send."""

    topic: str
    key: bytes | None
    value: bytes


class Delivery:
    """A batch's outputs, queued on the sink. :meth:`confirmed` returns once the broker has
    acknowledged every one (sending them all again while that fails)."""

    def __init__(
        self,
        outputs: list[Output],
        queued: list[Awaitable[object]],
        *,
        send_again: Callable[[list[Output]], Awaitable[None]],
        record_times: Sequence[float],
        clock: Callable[[], float],
    ) -> None:
        self.outputs = outputs
        self._queued = queued
        self._send_again = send_again
        self._record_times = record_times
        self._clock = clock

    async def confirmed(self) -> None:
        try:
            if len(self._queued) != len(self.outputs):
                raise RuntimeError("not every record was queued")
            await asyncio.gather(*self._queued)
        except Exception as exc:  # noqa: BLE001 - any send failure: send them all again
            log.warning("delivery of %d records failed (%r); sending again", len(self.outputs), exc)
            await self._send_again(self.outputs)
        now = self._clock()
        for at in self._record_times:
            metrics.EVENT_TO_DECISION_SECONDS.observe(max(0.0, now - at))


async def send_until_acknowledged(
    sink: Sink, outputs: list[Output], *, max_delay: float, sleep: Sleep = asyncio.sleep
) -> None:
    """Send every record and wait until the broker has them all; all again while it fails."""

    async def send_all() -> None:
        pending = [await sink.send(o.topic, o.key, o.value) for o in outputs]
        await asyncio.gather(*pending)

    await retry(send_all, what=f"sending {len(outputs)} records", max_delay=max_delay, sleep=sleep)
