"""Building the worker: settings in, a Faust app with its parts wired out.

Nothing happens at import. :func:`build_worker` makes the app, the Redis client and store,
the model holder, the :class:`~service.pipeline.BatchPipeline` and, while a rules file is
set, the allow and block lists (:mod:`service.lists`), and hands them to
:func:`service.agents.wire` and :func:`service.web.add_pages`. :func:`main`
(``fraud-worker``, ``python -m service``) reads the settings, builds, logs the model and
the settings (no secret), and runs Faust's worker command; a start-up failure is one clear
message, not a traceback; ``--help`` is the project's own (:mod:`service.usage`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from functools import partial
from typing import Literal, NoReturn

import faust
from pydantic import ValidationError

from fraudcore.errors import ModelError
from fraudrules import RulesError
from service import engine, logs, redaction, usage
from service.agents import wire
from service.delivery import send_until_acknowledged
from service.kafka import faust_broker_options
from service.list_changes import ListChanges
from service.list_store import RedisLists
from service.lists import ListsHolder
from service.model import ModelHolder
from service.pipeline import BatchPipeline, Options, OutputTopics
from service.rules import RulesHolder
from service.settings import Settings, StartupError, log_format_alone
from service.sink import ProducerSink
from service.state import RedisStore
from service.stores import build_store, check_redis, refuse_the_development_secret
from service.web import add_pages

__all__ = ["StartupError", "Worker", "build_store", "build_worker", "check_redis", "main"]

log = logging.getLogger(__name__)


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
        # No leader topic (<id>-labels-__assignor-__leader): nothing runs on the leader only,
        # and, never created, it was an ERROR line at every start ("not found in cluster
        # metadata") and a WARNING ("Ignoring missing topic").
        topic_disable_leader=True,
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
        producer_partitioner=engine.partitioner(s.engine),  # murmur2 compiled (FRAUD_ENGINE)
        web_host=s.web_host,
        web_bind=s.web_host,  # Faust listens on web_bind (default 0.0.0.0), not on web_host
        web_port=s.web_port,
        logging_config=logs.faust_logging_config(s.log_format),  # FRAUD_LOG_FORMAT
        **faust_broker_options(s),
    )


@dataclass(frozen=True)
class Worker:
    """A built worker: the Faust app and the parts wired into it."""

    settings: Settings
    app: faust.App
    models: ModelHolder
    store: RedisStore
    pipeline: BatchPipeline
    rules: RulesHolder
    lists: ListsHolder | None = None  # with a rules file
    changes: ListChanges | None = None


def build_worker(s: Settings) -> Worker:
    """Build the worker's parts from its settings and wire them into a Faust app.

    Raises :class:`StartupError` when it must not start (no usable model, a rules file that
    does not compile, inconsistent settings)."""
    refuse_the_development_secret(s)
    try:
        # Refuse to start on a wrong model: it would score every transaction wrongly.
        models = ModelHolder(s.model_dir)
    except ModelError as exc:
        raise StartupError(str(exc)) from exc
    try:
        # Refuse to start on rules that do not compile, as on a bad model.
        rules = RulesHolder(s.rules_file)
    except RulesError as exc:
        raise StartupError(f"rules refused: {exc}") from exc
    store = build_store(s)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    app = _faust_app(s)
    pipeline = BatchPipeline(
        store,
        models,
        ProducerSink(app),
        topics=OutputTopics(
            s.topic_decisions, s.topic_alerts, s.topic_dlq,
            s.topic_decision_log if s.decision_log else None,
        ),
        options=Options(
            fail_policy=s.fail_policy,
            include_features=s.include_features,
            max_future_seconds=s.max_future_seconds,
            retry_max_seconds=s.retry_max_seconds,
            miskeyed=s.miskeyed_policy,
            label_wait_seconds=s.label_wait_seconds,
        ),
        rules=rules,
        decode=engine.decoder(s.engine),
        features=engine.features(s.engine),
    )
    lists, changes = _lists(s, store, pipeline, rules) if s.rules_file else (None, None)
    wire(app, settings=s, pipeline=pipeline, models=models, rules=rules, changes=changes)
    add_pages(
        app, store=store, models=models, readiness=pipeline.readiness, lineage=pipeline.lineage,
        rules=rules,
    )
    return Worker(s, app, models, store, pipeline, rules, lists, changes)


def _lists(
    s: Settings, store: RedisStore, pipeline: BatchPipeline, rules: RulesHolder
) -> tuple[ListsHolder, ListChanges]:
    """The allow and block lists the rules read, on the state's Redis, and the path of
    their changes."""
    source = RedisLists(store.redis, keys=store.keys, max_entries=s.lists_max_entries)
    lists = ListsHolder(source, card_tag=store.card_tag, readiness=pipeline.readiness,
                        hold=s.fail_policy == "hold")
    rules.lists = lists
    deliver = partial(
        send_until_acknowledged, pipeline.sink, max_delay=s.retry_max_seconds,
        readiness=pipeline.readiness,
    )
    changes = ListChanges(
        source, rules, deliver=deliver, dlq=s.topic_dlq, readiness=pipeline.readiness,
        miskeyed=s.miskeyed_policy, retry_max_seconds=s.retry_max_seconds,
    )
    return lists, changes


def _refuse(reason: str, log_format: Literal["text", "json"]) -> NoReturn:
    message = f"fraud worker refuses to start: {reason}"
    if log_format == "json":
        logs.configure("json", "INFO")
        log.critical("%s", message)
        sys.exit(1)
    sys.exit(message)


def _faust_argv(s: Settings, options: list[str]) -> list[str]:
    """Faust's command line: its worker at the settings' log level, then the user's
    options. In JSON, ``--quiet``: no banner, no spinner, nothing printed but log lines."""
    level = {"WARNING": "warn"}.get(s.log_level, s.log_level.lower())
    quiet = ["--quiet"] if s.log_format == "json" else []
    return [*quiet, "worker", "-l", level, *options]


def main() -> None:
    """Console script: ``fraud-worker [options]``; ``--help`` lists the settings."""
    if usage.wants_help(sys.argv[1:]):
        print(usage.help_text(), end="")
        return
    redaction.install()
    try:
        settings = Settings()
    except ValidationError as exc:
        _refuse(f"invalid FRAUD_* settings:\n{exc}", log_format_alone())
    logs.configure(settings.log_format, settings.log_level)
    # Faust's consumer reads the labels in <id>-labels, service.consumer the transactions in <id>.
    logs.quiet_startup([settings.app_id, f"{settings.app_id}-labels"])
    try:
        worker = build_worker(settings)
        check_redis(settings)
    except (StartupError, OSError) as exc:
        _refuse(str(exc), settings.log_format)
    version = worker.models.model.version
    rules = worker.rules.rules
    rules_version = rules.version if rules is not None else None
    summary = usage.settings_summary(settings)
    log.info(
        "fraud worker starting: model %s; rules %s; settings: %s",
        version,
        f"{rules_version} ({len(rules.rules)} rules)" if rules is not None else "none",
        usage.summary_text(summary),
        extra={"model_version": version, "rules_version": rules_version, "settings": summary},
    )
    sys.argv = [sys.argv[0], *_faust_argv(settings, sys.argv[1:])]
    worker.app.main()
