"""The Kafka side of the :class:`~service.ports.Sink` port: the Faust app's producer."""

from __future__ import annotations

from collections.abc import Awaitable

import faust

__all__ = ["ProducerSink"]


class ProducerSink:
    """Queues records on the app's producer (acks=all); each send answers the future of
    the broker's acknowledgement."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[object]:
        # The producer is looked up at every send: Faust may restart it.
        return await self.app.producer.send(topic, key, value, None, None, None)
