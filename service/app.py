"""Building the worker: settings in, a Faust app with its parts wired out.

Nothing happens at import. :func:`build_worker` makes the app, the Redis client and store,
the model holder and the :class:`~service.pipeline.BatchPipeline`, and hands them to
:func:`service.agents.wire` and :func:`service.web.add_pages`. :func:`main`
(``fraud-worker``, ``python -m service``) reads the settings, builds, and runs Faust's
worker command; a start-up failure is one clear message, not a traceback.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import ValidationError
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fraudcore.errors import ModelError
from service import redaction
from service.agents import wire
from service.kafka import faust_broker_options
from service.model import ModelHolder
from service.pipeline import BatchPipeline, Options, OutputTopics
from service.settings import DEVELOPMENT_CARD_KEY_SECRET, Settings
from service.sink import ProducerSink
from service.state import RedisStore
from service.web import add_pages

__all__ = ["StartupError", "Worker", "build_store", "build_worker", "check_redis", "main"]

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The worker must not start; the message says why and what to do."""


def _faust_app(s: Settings) -> faust.App:
    return faust.App(
        # Transactions are consumed by the group named app_id (service.consumer); Faust's own
        # consumer reads the labels in a group of its own.
        f"{s.app_id}-labels",
        broker=f"kafka://{s.kafka_bootstrap}",
        autodiscover=False,  # service.agents.wire adds every part explicitly
        datadir=str(s.data_dir),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.partitions,
        topic_allow_declare=False,  # `make up` (or the compose topics step) creates them
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=s.kafka_session_timeout_seconds,
        broker_heartbeat_interval=s.kafka_session_timeout_seconds / 4,
        # A batch's outputs are all queued before the producer's sender next runs, so they go
        # in one request anyway: lingering would only add to every decision's latency.
        producer_linger_ms=0,
        # aiokafka holds one batch per partition and makes send() wait while it is full: with
        # the default 16 KB a batch of 500 decisions waited ~15 times for the sender and went
        # in ~17 requests. 256 KB holds a whole batch's outputs (the broker's default: 1 MB).
        producer_max_batch_size=256 * 1024,
        web_host=s.web_host,
        web_bind=s.web_host,  # Faust listens on web_bind (default 0.0.0.0), not on web_host
        web_port=s.web_port,
        **faust_broker_options(s),
    )


def _redis_options(s: Settings) -> dict[str, Any]:
    """TLS options for Redis.from_url: the CA of a rediss:// server (FRAUD_REDIS_CA_FILE)."""
    if s.redis_ca_file is None:
        return {}
    if not s.redis_url.get_secret_value().startswith("rediss://"):
        # redis:// connections take no ssl_* option (TypeError at the first command).
        raise StartupError("FRAUD_REDIS_CA_FILE needs a rediss:// FRAUD_REDIS_URL")
    return {"ssl_ca_certs": str(s.redis_ca_file)}


def _refuse_the_development_secret(s: Settings) -> None:
    """The development card-key secret is public: with it anyone can compute the keyed hash
    of any card number, so only a development stack may use it."""
    if s.env != "development" and (
        s.card_key_secret.get_secret_value() == DEVELOPMENT_CARD_KEY_SECRET
    ):
        raise StartupError(
            "FRAUD_CARD_KEY_SECRET is not set (the development value is public: anyone could "
            "compute the Redis key of a card number). Set a secret of your own, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, and keep it: "
            "changing it starts every card from an empty history. For a local stack, "
            "FRAUD_ENV=development allows the development value."
        )


#: Redis maxmemory policies that drop keys: the feature state would vanish without a word
#: (every key of the store has a TTL, so the volatile-* policies take them too).
EVICTING = frozenset({
    "allkeys-lru", "allkeys-lfu", "allkeys-random",
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
})


def check_redis(s: Settings) -> None:
    """Before the worker starts: refuse a Redis that evicts keys. A Redis that does not
    answer yet, or does not let this user read its configuration (managed services often
    do not), is a warning: the batch path holds until Redis answers."""
    client = SyncRedis.from_url(
        s.redis_url.get_secret_value(), socket_timeout=5.0, **_redis_options(s)
    )
    try:
        policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except RedisError as exc:
        log.warning(
            "could not read Redis' maxmemory-policy (%s: %s); make sure it is noeviction: "
            "an evicting Redis drops feature state silently",
            type(exc).__name__,
            exc,
        )
        return
    finally:
        client.close()
    if policy in EVICTING:
        raise StartupError(
            f"Redis evicts keys (maxmemory-policy {policy}): cards and terminals would lose "
            "their history without a word. Set `maxmemory-policy noeviction` (the worker "
            "holds, and says so, when Redis is full) and give Redis the memory it needs."
        )


def build_store(s: Settings) -> RedisStore:
    """The worker's Redis client and store, from its settings (URL, TLS, card-key secret,
    prefix, id index): ``fraud-backfill`` writes through the same one. Contacts nothing.

    Raises :class:`StartupError` for the public development secret outside development."""
    _refuse_the_development_secret(s)
    redis = Redis.from_url(
        s.redis_url.get_secret_value(), socket_timeout=5.0, **_redis_options(s)
    )
    return RedisStore(
        redis,
        card_key_secret=s.card_key_secret.get_secret_value().encode(),
        prefix=s.redis_key_prefix,
        ids=s.unique_ids_across_cards,
    )


@dataclass(frozen=True)
class Worker:
    """A built worker: the Faust app and the parts wired into it."""

    settings: Settings
    app: faust.App
    models: ModelHolder
    store: RedisStore
    pipeline: BatchPipeline


def build_worker(s: Settings) -> Worker:
    """Build the worker's parts from its settings and wire them into a Faust app.

    Raises :class:`StartupError` when it must not start (no usable model, inconsistent
    settings)."""
    _refuse_the_development_secret(s)
    try:
        # Refuse to start on a wrong model: it would score every transaction wrongly.
        models = ModelHolder(s.model_dir)
    except ModelError as exc:
        raise StartupError(str(exc)) from exc
    store = build_store(s)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    app = _faust_app(s)
    pipeline = BatchPipeline(
        store,
        models,
        ProducerSink(app),
        topics=OutputTopics(s.topic_decisions, s.topic_alerts, s.topic_dlq),
        options=Options(
            fail_policy=s.fail_policy,
            include_features=s.include_features,
            max_future_seconds=s.max_future_seconds,
            retry_max_seconds=s.retry_max_seconds,
            miskeyed=s.miskeyed_policy,
            label_wait_seconds=s.label_wait_seconds,
        ),
    )
    wire(app, settings=s, pipeline=pipeline, models=models)
    add_pages(
        app, store=store, models=models, readiness=pipeline.readiness, lineage=pipeline.lineage
    )
    return Worker(s, app, models, store, pipeline)


def main() -> None:
    """Console script: ``fraud-worker [faust worker options]``."""
    redaction.install()
    try:
        settings = Settings()
        worker = build_worker(settings)
        check_redis(settings)
    except ValidationError as exc:
        sys.exit(f"fraud worker refuses to start: invalid FRAUD_* settings:\n{exc}")
    except (StartupError, OSError) as exc:
        sys.exit(f"fraud worker refuses to start: {exc}")
    level = {"WARNING": "warn"}.get(settings.log_level, settings.log_level.lower())
    sys.argv = [sys.argv[0], "worker", "-l", level, *sys.argv[1:]]
    worker.app.main()
