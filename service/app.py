"""The Faust app, its topics, and the worker's shared parts (the entry point).

Run it with ``make worker``, ``fraud-worker``, or ``faust -A service.app worker -l info``.
Settings come from ``FRAUD_*`` environment variables (:class:`service.settings.Settings`).
"""

from __future__ import annotations

import logging
import ssl
import sys
from typing import Any

import faust
from redis.asyncio import Redis

from fraudcore.errors import ModelError
from service.model import ModelHolder
from service.processing import Processor
from service.settings import Settings
from service.state import RedisStore

__all__ = ["app", "kafka_client_options", "main", "models", "processor", "settings", "topics"]

log = logging.getLogger(__name__)

settings = Settings()
settings.data_dir.mkdir(parents=True, exist_ok=True)


def _ssl_context(s: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(s.kafka_ca_file) if s.kafka_ca_file else None)


def kafka_client_options(s: Settings) -> dict[str, Any]:
    """aiokafka's options for the broker, its security and this worker's client id."""
    options: dict[str, Any] = {
        "bootstrap_servers": s.kafka_bootstrap.split(","),
        "client_id": s.app_id,
        "security_protocol": s.kafka_security_protocol,
    }
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(s)
    if s.kafka_security_protocol.startswith("SASL"):
        password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username or "",
            "sasl_plain_password": password,
        }
    return options


def _broker_options(s: Settings) -> dict[str, Any]:
    """The same security for Faust's clients (the labels agent and the producer)."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    context = _ssl_context(s)
    if s.kafka_security_protocol == "SSL":
        return {"broker_credentials": context}
    password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
    return {
        "broker_credentials": faust.SASLCredentials(
            username=s.kafka_sasl_username or "",
            password=password,
            mechanism=s.kafka_sasl_mechanism,
            ssl_context=context if s.kafka_security_protocol == "SASL_SSL" else None,
        )
    }


app = faust.App(
    # Transactions are consumed by the group named app_id (service.consumer); Faust's own
    # consumer reads the labels in a group of its own.
    f"{settings.app_id}-labels",
    broker=f"kafka://{settings.kafka_bootstrap}",
    autodiscover=["service.agents"],
    origin="service.app",
    datadir=str(settings.data_dir),
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.partitions,
    topic_allow_declare=False,  # `make up` (or the compose topics step) creates them
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_session_timeout=settings.kafka_session_timeout_seconds,
    broker_heartbeat_interval=settings.kafka_session_timeout_seconds / 4,
    # A batch's outputs are all queued before the producer's sender next runs, so they go
    # in one request anyway: lingering would only add to every decision's latency.
    producer_linger_ms=0,
    # aiokafka holds one batch per partition and makes send() wait while it is full: with
    # the default 16 KB a batch of 500 decisions waited ~15 times for the sender and went in
    # ~17 requests. 256 KB holds a whole batch's outputs (within the broker's default 1 MB).
    producer_max_batch_size=256 * 1024,
    web_host=settings.web_host,
    web_port=settings.web_port,
    **_broker_options(settings),
)


def _topic(name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.partitions)


class _Topics:
    transactions = _topic(settings.topic_transactions)
    labels = _topic(settings.topic_labels)
    decisions = _topic(settings.topic_decisions)
    alerts = _topic(settings.topic_alerts)
    dlq = _topic(settings.topic_dlq)


topics = _Topics()

try:
    models = ModelHolder(settings.model_dir)
except ModelError as exc:
    # Refuse to start: a wrong model would score every transaction wrongly.
    sys.exit(f"fraud worker refuses to start: {exc}")


def _redis_options(s: Settings) -> dict[str, Any]:
    """TLS options for Redis.from_url: the CA of a rediss:// server (FRAUD_REDIS_CA_FILE)."""
    if s.redis_ca_file is None:
        return {}
    if not s.redis_url.get_secret_value().startswith("rediss://"):
        # redis:// connections take no ssl_* option (TypeError at the first command).
        sys.exit(
            "fraud worker refuses to start: FRAUD_REDIS_CA_FILE needs a rediss:// FRAUD_REDIS_URL"
        )
    return {"ssl_ca_certs": str(s.redis_ca_file)}


redis = Redis.from_url(
    settings.redis_url.get_secret_value(), socket_timeout=5.0, **_redis_options(settings)
)
store = RedisStore(
    redis,
    card_key_secret=settings.card_key_secret.get_secret_value().encode(),
    prefix=settings.redis_key_prefix,
    ids=settings.unique_ids_across_cards,
)
processor = Processor(
    store,
    models,
    fail_policy=settings.fail_policy,
    include_features=settings.include_features,
    max_future_seconds=settings.max_future_seconds,
)


def main() -> None:
    """Console script: ``fraud-worker [faust worker options]``."""
    level = {"WARNING": "warn"}.get(settings.log_level, settings.log_level.lower())
    sys.argv = [sys.argv[0], "worker", "-l", level, *sys.argv[1:]]
    app.main()
