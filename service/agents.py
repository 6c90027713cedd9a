"""The worker's agents: score transactions, record labels, pick up new models.

Faust acknowledges a taken batch as soon as the loop asks for the next one, even when the
body raised. So nothing leaves the loop body before every output of the batch (decision,
alert, dead letter) is confirmed by the broker: Redis outages are held and retried, a
failed send is retried, and an unexpected error dead-letters the batch with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import metrics
from service.app import app, models, processor, redis, settings, topics
from service.processing import BatchResult, Message, retry_while_unavailable
from service.records import Source, dead_letter

log = logging.getLogger(__name__)


def _messages(events: Sequence[Any]) -> list[Message]:
    return [
        Message(e.value, Source(e.message.topic, e.message.partition, e.message.offset))
        for e in events
    ]


async def _send_all(sends: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send every record and wait until the broker has them all; retry while it fails."""
    delay = 0.1
    while True:
        try:
            producer = app.producer
            pending = [
                await producer.send(topic, key, value, None, None, None)
                for topic, key, value in sends
            ]
            await asyncio.gather(*pending)
            return
        except Exception as exc:  # noqa: BLE001 - any send failure: retry, never drop
            log.warning("sending %d records failed (%r); retry in %.1f s", len(sends), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_seconds)


async def _guarded(work: Callable[[], Awaitable[Any]], batch: list[Message], what: str) -> Any:
    """Run ``work`` holding while Redis is down; on any other error dead-letter the batch."""
    try:
        return await retry_while_unavailable(work, max_delay=settings.retry_max_seconds, what=what)
    except Exception as exc:  # noqa: BLE001 - a bug must not lose the batch
        log.exception("%s failed on a batch of %d; dead-lettering it", what, len(batch))
        now = time.time()
        reason = f"internal error ({type(exc).__name__}): {exc}"
        return [dead_letter(m.value, m.source, reason, at=now) for m in batch]


@app.agent(topics.transactions)
async def score(stream: Any) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_seconds):
        batch = _messages(events)
        metrics.BATCH_SIZE.observe(len(batch))
        outcome = await _guarded(partial(processor.transactions, batch), batch, "scoring")
        if not isinstance(outcome, BatchResult):
            await _send_all([(settings.topic_dlq, None, d) for d in outcome])
            continue
        started = time.perf_counter()
        sends: list[tuple[str, bytes | None, bytes]] = []
        for decision in outcome.decisions:
            key = decision.transaction.card_id.encode()
            value = decision.to_json()
            sends.append((settings.topic_decisions, key, value))
            if decision.action != "approve":
                sends.append((settings.topic_alerts, key, value))
            metrics.DECISIONS.labels(decision.action).inc()
        sends += [(settings.topic_dlq, None, d) for d in outcome.dead_letters]
        await _send_all(sends)
        now = time.time()
        for event in events:
            metrics.EVENT_TO_DECISION_SECONDS.observe(max(0.0, now - event.message.timestamp))
        metrics.STAGE_SECONDS.labels("emit").observe(time.perf_counter() - started)


@app.agent(topics.labels)
async def record_labels(stream: Any) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_seconds):
        batch = _messages(events)
        dead = await _guarded(partial(processor.labels, batch), batch, "labels")
        metrics.LABELS.inc(len(batch) - len(dead))
        if dead:
            await _send_all([(settings.topic_dlq, None, d) for d in dead])


@app.timer(interval=settings.model_poll_seconds)
async def refresh_model() -> None:
    models.refresh()
    metrics.MODEL_INFO.clear()
    metrics.MODEL_INFO.labels(models.model.version).set(1)


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    try:
        redis_ok = bool(await redis.ping())
    except Exception:  # noqa: BLE001 - health reports, never raises
        redis_ok = False
    body = {
        "status": "ok" if redis_ok else "degraded",
        "redis": redis_ok,
        "model_version": models.model.version,
    }
    return web.bytes(
        orjson.dumps(body), content_type="application/json", status=200 if redis_ok else 503
    )


@app.page("/metrics")
async def prometheus(web: Any, request: Any) -> Any:
    # As a header: aiohttp refuses a content_type argument with a charset in it (500).
    return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
