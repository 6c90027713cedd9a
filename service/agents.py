"""The worker's parts on the Faust app: score transactions, record labels, new models.

Transactions come in batches from :class:`service.consumer.BatchConsumer`, which commits a
batch once the outputs :func:`score` queued are acknowledged; labels come through a Faust
agent, which acknowledges a taken batch as soon as the loop asks for the next one, even
when the body raised. So in both, nothing counts as done before every output of the batch
(decision, alert, dead letter) is confirmed by the broker: Redis outages are held and
retried, a failed send is retried, and an unexpected error dead-letters the batch with its
reason.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import metrics
from service.app import app, kafka_client_options, models, processor, redis, settings, topics
from service.consumer import BatchConsumer
from service.processing import BatchResult, Exchanged, Message, retry_while_unavailable
from service.records import Source, dead_letter

log = logging.getLogger(__name__)


def _events_to_messages(events: Sequence[Any]) -> list[Message]:
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


def _dead_batch(batch: list[Message], what: str, exc: Exception) -> list[bytes]:
    """A bug must not lose the batch: every message goes to the dead-letter topic."""
    log.exception("%s failed on a batch of %d; dead-lettering it", what, len(batch))
    now = time.time()
    reason = f"internal error ({type(exc).__name__}): {exc}"
    return [dead_letter(m.value, m.source, reason, at=now) for m in batch]


async def _guarded(work: Callable[[], Awaitable[Any]], batch: list[Message], what: str) -> Any:
    """Run ``work`` holding while Redis is down; on any other error dead-letter the batch."""
    try:
        return await retry_while_unavailable(work, max_delay=settings.retry_max_seconds, what=what)
    except Exception as exc:  # noqa: BLE001 - a bug must not lose the batch
        return _dead_batch(batch, what, exc)


# One batch at a time exchanges with Redis, in the order the batches came (its retries while
# Redis is down included), so a card's transactions are recorded in order. While the next
# batch's exchange runs in Redis, this one is scored and sent: Redis and the worker work
# side by side. Outputs are queued in batch order too.
_redis_turn = asyncio.Lock()
_send_turn = asyncio.Lock()


async def score(batch: list[Message], record_times: list[float]) -> Awaitable[None]:
    """Decide a batch of transactions and queue its outputs on the producer.

    Returns what to await for the broker's acknowledgement of all of them (sent again
    while that fails), so the next batch can be decided meanwhile.
    """
    metrics.BATCH_SIZE.observe(len(batch))
    async with _redis_turn:
        exchanged = await _guarded(partial(processor.exchange, batch), batch, "scoring")
        await _send_turn.acquire()  # before the next batch has Redis: outputs keep the order
    await asyncio.sleep(0)  # the next batch, if there is one, sends its commands to Redis now
    try:
        return await _decide_and_queue(batch, exchanged, record_times)
    finally:
        _send_turn.release()


async def _decide_and_queue(
    batch: list[Message], exchanged: Exchanged | list[bytes], record_times: list[float]
) -> Awaitable[None]:
    outcome: BatchResult | None = None
    dead: list[bytes]
    if isinstance(exchanged, Exchanged):
        try:
            outcome = processor.decide(exchanged)
            dead = outcome.dead_letters
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the batch
            dead = _dead_batch(batch, "scoring", exc)
    else:
        dead = exchanged  # the whole batch, dead-lettered: the exchange failed
    started = time.perf_counter()
    sends: list[tuple[str, bytes | None, bytes]] = []
    if outcome is not None:
        actions: Counter[str] = Counter()
        for decision in outcome.decisions:
            key = decision.transaction.card_id.encode()
            value = decision.to_json()
            sends.append((settings.topic_decisions, key, value))
            if decision.action != "approve":
                sends.append((settings.topic_alerts, key, value))
            actions[decision.action] += 1
        for action, n in actions.items():
            metrics.DECISIONS.labels(action).inc(n)
    sends += [(settings.topic_dlq, None, d) for d in dead]
    try:
        producer = app.producer
        queued = [
            await producer.send(topic, key, value, None, None, None) for topic, key, value in sends
        ]
    except Exception as exc:  # noqa: BLE001 - the confirmation below sends them again
        log.warning("queueing %d records failed (%r)", len(sends), exc)
        queued = []
    metrics.STAGE_SECONDS.labels("emit").observe(time.perf_counter() - started)
    return _confirmed(sends, queued, record_times)


async def _confirmed(
    sends: list[tuple[str, bytes | None, bytes]], queued: list[Any], record_times: list[float]
) -> None:
    try:
        if len(queued) != len(sends):
            raise RuntimeError("not every record was queued")
        await asyncio.gather(*queued)
    except Exception as exc:  # noqa: BLE001 - any send failure: send them all again
        log.warning("delivery of %d records failed (%r); sending again", len(sends), exc)
        await _send_all(sends)
    now = time.time()
    for at in record_times:
        metrics.EVENT_TO_DECISION_SECONDS.observe(max(0.0, now - at))


app.service(
    BatchConsumer(
        settings.topic_transactions,
        score,
        batch_size=settings.batch_size,
        commit_interval=settings.commit_interval_seconds,
        group_id=settings.app_id,
        session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.kafka_session_timeout_seconds * 250),
        **kafka_client_options(settings),
    )
)


@app.agent(topics.labels)
async def record_labels(stream: Any) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_seconds):
        batch = _events_to_messages(events)
        dead = await _guarded(partial(processor.labels, batch), batch, "labels")
        metrics.LABELS.inc(len(batch) - len(dead))
        if dead:
            await _send_all([(settings.topic_dlq, None, d) for d in dead])


@app.task
async def freeze_startup_objects() -> None:
    """Once the worker is up, take what it has built so far (modules, model, clients: ~100k
    objects) out of the garbage collector's full scans: they live as long as the process.
    Each full collection scanned them all and stopped the worker 50-120 ms on this machine,
    several times a minute under load: the latency tails (docs/benchmarks.md). From then on
    every collection's pause is timed (``fraud_gc_pause_seconds``)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    metrics.GC_FROZEN.set(frozen)
    metrics.GC_PAUSES.install()
    log.info("garbage collector: %d startup objects frozen", frozen)


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
