"""The environment of an isolated worker: topics, consumer group and Redis key prefix of its
own, so a run (a test, the demo, a benchmark phase, a fault scenario) never meets another.

One place writes the worker's ``FRAUD_*`` settings for every caller::

    worker = IsolatedWorker.named("it-1a2b", bootstrap=..., redis_url=..., data_dir=...)
    env = worker.env(FRAUD_INCLUDE_FEATURES="true")   # for WorkerProcess(env, log)
    await create_topics(worker.bootstrap, worker.topics)

The inherited environment is kept except its ``FRAUD_*`` variables: a setting exported in
the caller's shell never leaks into the worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fraudtools.kafka_admin import PARTITIONS
from fraudtools.worker_process import ROOT, free_port

__all__ = ["TOPIC_ROLES", "IsolatedWorker", "Topics"]

#: The worker's seven topics, in the order :attr:`IsolatedWorker.topics` lists them
#: (``lists``: the allow and block lists' changes, read only while a rules file is set;
#: ``decision_log``: written only with ``FRAUD_DECISION_LOG=true``).
TOPIC_ROLES = ("transactions", "labels", "decisions", "alerts", "dlq", "lists", "decision_log")


@dataclass(frozen=True, slots=True)
class Topics:
    """The names of a worker's seven topics."""

    transactions: str
    labels: str
    decisions: str
    alerts: str
    dlq: str
    lists: str
    decision_log: str

    @classmethod
    def named(cls, stem: str) -> Topics:
        """``<stem>-transactions``, ``<stem>-labels``, ... ``<stem>-decision_log``."""
        return cls(*(f"{stem}-{role}" for role in TOPIC_ROLES))

    def __getitem__(self, role: str) -> str:
        if role not in TOPIC_ROLES:
            raise KeyError(f"no topic {role!r}: choose from {', '.join(TOPIC_ROLES)}")
        return str(getattr(self, role))

    def as_list(self) -> list[str]:
        return [self[role] for role in TOPIC_ROLES]

    def as_dict(self) -> dict[str, str]:
        return {role: self[role] for role in TOPIC_ROLES}


@dataclass(frozen=True, slots=True)
class IsolatedWorker:
    """Everything that keeps one worker apart from others on a shared broker and Redis.

    ``run_id`` names the run in logs; ``app_id`` is the Faust app id and consumer group.
    ``web_port`` None picks a free loopback port at every :meth:`env` call (two workers
    built from one value never share a port). ``settings``: further ``FRAUD_*`` values of
    this caller (e.g. ``FRAUD_BATCH_WAIT_SECONDS``), applied after the fields and before
    the overrides of :meth:`env`.
    """

    run_id: str
    app_id: str
    bootstrap: str
    redis_url: str
    prefix: str
    names: Topics
    data_dir: Path
    partitions: int = PARTITIONS
    model_dir: Path = ROOT / "models"
    web_port: int | None = None
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def named(
        cls,
        run_id: str,
        *,
        bootstrap: str,
        redis_url: str,
        data_dir: Path,
        partitions: int = PARTITIONS,
        model_dir: Path = ROOT / "models",
        web_port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> IsolatedWorker:
        """``run_id`` as the app id and the key prefix, ``<run_id>-<role>`` as the topics."""
        return cls(
            run_id=run_id, app_id=run_id, bootstrap=bootstrap, redis_url=redis_url,
            prefix=run_id, names=Topics.named(run_id), data_dir=data_dir,
            partitions=partitions, model_dir=model_dir, web_port=web_port,
            settings=dict(settings or {}),
        )

    @property
    def topics(self) -> list[str]:
        """The seven topic names (transactions, labels, decisions, alerts, dead letters, list
        changes, decision log)."""
        return self.names.as_list()

    def topic(self, role: str) -> str:
        """The topic of ``role``: ``"transactions"``, ``"labels"``, ... ``"dlq"``."""
        return self.names[role]

    def __post_init__(self) -> None:
        _check_names(self.settings)

    def env(self, inherit: Mapping[str, str] | None = None, /, **overrides: str) -> dict[str, str]:
        """The worker's environment: ``inherit`` (default: this process's) without its
        ``FRAUD_*`` variables, then this worker's settings, then ``overrides`` (full
        variable names, ``FRAUD_...``)."""
        _check_names(overrides)
        base = os.environ if inherit is None else inherit
        env = {k: v for k, v in base.items() if not k.startswith("FRAUD_")}
        t = self.names
        env.update({
            "FRAUD_ENV": "development",  # the development card-key secret is allowed
            "FRAUD_APP_ID": self.app_id,
            "FRAUD_KAFKA_BOOTSTRAP": self.bootstrap,
            "FRAUD_REDIS_URL": self.redis_url,
            "FRAUD_REDIS_KEY_PREFIX": self.prefix,
            "FRAUD_TOPIC_TRANSACTIONS": t.transactions,
            "FRAUD_TOPIC_LABELS": t.labels,
            "FRAUD_TOPIC_DECISIONS": t.decisions,
            "FRAUD_TOPIC_ALERTS": t.alerts,
            "FRAUD_TOPIC_DLQ": t.dlq,
            "FRAUD_TOPIC_LISTS": t.lists,
            "FRAUD_TOPIC_DECISION_LOG": t.decision_log,
            "FRAUD_PARTITIONS": str(self.partitions),
            "FRAUD_MODEL_DIR": str(self.model_dir),
            "FRAUD_DATA_DIR": str(self.data_dir),
            "FRAUD_WEB_PORT": str(self.web_port if self.web_port is not None else free_port()),
        })
        env.update(self.settings)
        env.update(overrides)
        return env


def _check_names(settings: Mapping[str, str]) -> None:
    wrong = sorted(k for k in settings if not k.startswith("FRAUD_"))
    if wrong:
        raise ValueError(f"worker settings are FRAUD_* variables (FRAUD_BATCH_SIZE=...), "
                         f"not {wrong}")
