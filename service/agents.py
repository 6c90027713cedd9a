"""Faust wiring only: which topic feeds which part of the batch path, and the timers.

- transactions: :class:`~service.consumer.BatchConsumer` (whole fetches, committed once the
  broker has acknowledged every output) feeds :meth:`BatchPipeline.transactions`;
- labels: a Faust agent feeds :meth:`BatchPipeline.labels`. Faust acknowledges a taken
  batch as soon as the loop asks for the next one, even when the body raised; the pipeline
  returns only once every dead letter is acknowledged and never raises for a batch;
- while a rules file is set, the allow and block lists: a Faust agent feeds the changes of
  ``FRAUD_TOPIC_LISTS`` to :meth:`ListChanges.apply` (as the labels'), a timer reads the
  changed lists again every ``FRAUD_LISTS_POLL_SECONDS``, and under
  ``FRAUD_FAIL_POLICY=hold`` no batch of transactions is decided before the lists were
  read once (:mod:`service.lists`);
- a timer looks for a new model between batches, one for a changed rules file
  (``FRAUD_RULES_POLL_SECONDS``), another reads Redis' memory every 15 s
  (``fraud_redis_used_memory_bytes``); a task freezes the startup objects.

What each batch goes through, and whose fault sends a message where, is in
:mod:`service.pipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import faust
from faust.types import TP, EventT
from mode import ServiceT

from service import metrics
from service.consumer import BatchConsumer
from service.delivery import Delivery
from service.gc_freeze import freeze_startup_objects
from service.kafka import kafka_client_options
from service.list_changes import ListChanges
from service.model import ModelHolder
from service.pipeline import BatchPipeline
from service.records import Message, Source
from service.rules import RulesHolder
from service.settings import Settings
from service.state import RedisStore

__all__ = ["wire"]

log = logging.getLogger(__name__)


def _messages(events: Sequence[EventT[bytes]]) -> list[Message]:
    return [
        Message(
            e.value, Source(e.message.topic, e.message.partition, e.message.offset), e.message.key
        )
        for e in events
    ]


def wire(
    app: faust.App,
    *,
    settings: Settings,
    pipeline: BatchPipeline,
    models: ModelHolder,
    rules: RulesHolder | None = None,
    changes: ListChanges | None = None,
) -> None:
    """Attach the consumers, the labels agent (and the lists' one, with ``changes``), the
    model, rules and lists timers and the GC task to ``app``."""
    lists = rules.lists if rules is not None else None

    async def decide(batch: list[Message], record_times: Sequence[float]) -> Delivery:
        if lists is not None and lists.hold:
            # No decision before the lists are known: a blocked card would pass.
            await lists.ready(max_delay=settings.retry_max_seconds)
        return await pipeline.transactions(batch, record_times)

    consumer = BatchConsumer(
        settings.topic_transactions,
        decide,
        batch_size=settings.batch_size,
        commit_interval=settings.commit_interval_seconds,
        group_id=settings.app_id,
        session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.kafka_session_timeout_seconds * 250),
        **kafka_client_options(settings),
    )
    pipeline.lineage.decided_before = consumer.decided_before
    pipeline.readiness.dead = consumer.dead  # /livez
    # Typed for a class, but an instance is started as it is (App._prepare_subservice).
    app.service(cast("type[ServiceT]", consumer))
    labels = app.topic(
        settings.topic_labels, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )

    async def record_labels(stream: faust.StreamT[bytes]) -> None:
        # The agent gets a faust.Stream; StreamT's type does not declare take_events.
        async for events in cast("faust.Stream[bytes]", stream).take_events(
            settings.batch_size, within=settings.batch_wait_seconds
        ):
            await pipeline.labels(_messages(events))

    async def refresh_model() -> None:
        models.refresh()
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(models.model.version).set(1)
        if models.refused is not None:
            metrics.MODEL_REFUSED.clear()
            first_line = models.refused.reason.splitlines()[0][:300]
            metrics.MODEL_REFUSED.labels(models.refused.version, first_line).set(1)
        metrics.CHALLENGER_INFO.clear()
        if models.challenger is not None:
            metrics.CHALLENGER_INFO.labels(models.challenger.version).set(1)
        metrics.CHALLENGER_REFUSED.clear()  # shown while it is the last word on the pointer
        if models.challenger_refused is not None:
            first_line = models.challenger_refused.reason.splitlines()[0][:300]
            metrics.CHALLENGER_REFUSED.labels(models.challenger_refused.version, first_line).set(1)

    async def refresh_rules() -> None:
        if rules is None:
            return
        rules.refresh()
        metrics.RULES_INFO.clear()
        if rules.rules is not None:
            metrics.RULES_INFO.labels(rules.rules.version, str(len(rules.rules.rules))).set(1)
        metrics.RULES_REFUSED.clear()
        if rules.refused is not None:
            first_line = rules.refused.reason.splitlines()[0][:300]
            metrics.RULES_REFUSED.labels(rules.refused.version, first_line).set(1)

    async def redis_memory() -> None:
        store = pipeline.store
        if not isinstance(store, RedisStore):
            return
        try:
            nodes = await store.memory()
        except Exception as exc:  # noqa: BLE001 - a gauge, never a fault: the batches say
            log.debug("could not read Redis' memory: %r", exc)
            return
        metrics.REDIS_USED_MEMORY.clear()
        metrics.REDIS_MAX_MEMORY.clear()
        for node, (used, limit) in nodes.items():
            metrics.REDIS_USED_MEMORY.labels(node).set(used)
            metrics.REDIS_MAX_MEMORY.labels(node).set(limit)

    async def refresh_lists() -> None:
        if lists is not None:
            await lists.refresh()

    async def apply_list_changes(stream: faust.StreamT[bytes]) -> None:
        assert changes is not None  # noqa: S101 - only wired with it
        async for events in cast("faust.Stream[bytes]", stream).take_events(
            settings.batch_size, within=settings.batch_wait_seconds
        ):
            await changes.apply(_messages(events))

    reported: set[TP] = set()

    async def labels_lag() -> None:
        # The labels agent's partitions, as the transactions consumer reports its own.
        try:
            assigned = {tp for tp in app.consumer.assignment() if tp.topic == settings.topic_labels}
            for tp in reported - assigned:
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            reported.clear()
            for tp in assigned:
                end, position = app.consumer.highwater(tp), await app.consumer.position(tp)
                if end is not None and position is not None:
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                        max(0, end - position)
                    )
                    reported.add(tp)
        except Exception as exc:  # noqa: BLE001 - a gauge, never a fault
            log.debug("could not read the labels' lag: %r", exc)

    app.agent(labels, name="record_labels")(record_labels)
    if changes is not None:
        list_changes = app.topic(
            settings.topic_lists, key_type=bytes, value_type=bytes,
            partitions=settings.partitions,
        )
        app.agent(list_changes, name="apply_list_changes")(apply_list_changes)
    if lists is not None:
        app.timer(interval=settings.lists_poll_seconds)(refresh_lists)
    app.timer(interval=settings.model_poll_seconds)(refresh_model)
    app.timer(interval=settings.rules_poll_seconds)(refresh_rules)
    app.timer(interval=15.0)(redis_memory)
    app.timer(interval=1.0)(labels_lag)
    app.task(freeze_startup_objects)
