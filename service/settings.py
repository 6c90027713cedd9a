"""The worker's settings: one frozen object, read from ``FRAUD_*`` environment variables.

Built once at the entry point (:mod:`service.app`) and passed down; no other module reads
the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEVELOPMENT_CARD_KEY_SECRET", "Settings", "StartupError", "log_format_alone"]

#: The card-key secret a worker gets when none is set: public (it is in this file), so only
#: a development stack (FRAUD_ENV=development) may run with it.
DEVELOPMENT_CARD_KEY_SECRET = "change-me-in-production"


class StartupError(Exception):
    """The worker must not start; the message says why and what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUD_", frozen=True, extra="ignore")

    env: Literal["production", "development"] = Field(
        "production",
        description="development allows the public development card-key secret (make demo, "
        "the tests, the compose stack); production refuses it",
    )
    app_id: str = Field("fraud-scorer", description="Faust app id and Kafka consumer group")
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="the Kafka brokers to start from, host:port, comma-separated"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how to reach the brokers: in clear, over TLS, with SASL, or both"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="the SASL mechanism (SASL_PLAINTEXT, SASL_SSL)"
    )
    kafka_sasl_username: str | None = Field(None, description="the SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="the SASL password")
    kafka_ca_file: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (SSL, SASL_SSL); "
        "unset: the system's CAs"
    )

    redis_mode: Literal["single", "cluster", "sentinel"] = Field(
        "single",
        description="single: FRAUD_REDIS_URL is one Redis; cluster: it lists one or more seed "
        "nodes of a Redis Cluster, comma-separated; sentinel: it lists the sentinels, which "
        "name the primary of FRAUD_REDIS_SENTINEL_MASTER",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// (TLS); user and password in the first address "
        "apply to every node",
    )
    redis_sentinel_master: str | None = Field(
        None, description="the service name the sentinels monitor (sentinel mode)"
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="the sentinels' own password, when they have one (sentinel mode)"
    )
    redis_wait_replicas: int | None = Field(
        None,
        ge=0,
        description="replicas that must hold a batch's writes before it is decided (WAIT), so "
        "a failover loses none; default 1 in cluster and sentinel mode, 0 for one Redis",
    )
    redis_ca_file: Path | None = Field(
        None, description="CA bundle that signed the Redis server's certificate (rediss://)"
    )
    redis_key_prefix: str = Field("fraud", description="namespace of every Redis key")
    card_key_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_CARD_KEY_SECRET),
        description="HMAC key that turns card ids into Redis keys; card ids never appear in clear",
    )

    topic_transactions: str = Field(
        "transactions", description="the transactions to score (key: the card id)"
    )
    topic_labels: str = Field(
        "fraud-labels", description="the fraud labels: which transactions were fraud"
    )
    topic_decisions: str = Field("decisions", description="one decision per transaction")
    topic_alerts: str = Field("fraud-alerts", description="the decisions that are not approve")
    topic_dlq: str = Field(
        "transactions-dlq", description="dead letters: the records refused, with the reason"
    )
    topic_lists: str = Field(
        "fraud-lists",
        description="changes of the allow and block lists (key: the list's name; read while a "
        "rules file is set; docs/lists.md)",
    )
    decision_log: bool = Field(
        False,
        description="log every decision with its features, thresholds, model action, rules "
        "and lists on FRAUD_TOPIC_DECISION_LOG, to retrain on (`python -m training from-log`, "
        "docs/decision-log.md)",
    )
    topic_decision_log: str = Field(
        "fraud-decision-log", description="the decision log (written while FRAUD_DECISION_LOG)"
    )
    partitions: int = Field(4, ge=1, description="partitions of the topics, as created")

    model_dir: Path = Field(
        Path("models"),
        description="directory of the model versions and of `current`, naming the one to serve",
    )
    model_poll_seconds: float = Field(5.0, gt=0, description="how often to look for a new model")
    rules_file: Path | None = Field(
        None,
        description="YAML file of analysts' rules applied after the model (README: Writing a "
        "rule); read again when it changes, a file that does not compile is refused and the "
        "rules in service kept; unset: no rules",
    )
    rules_poll_seconds: float = Field(
        5.0, gt=0, description="how often to look for a changed rules file"
    )
    lists_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="how often each worker looks in Redis for changed allow and block lists: "
        "every worker decides on a change within this",
    )
    lists_max_entries: int = Field(
        100_000,
        ge=1,
        description="most entries of one list (every worker holds every list in memory): an "
        "add to a full list is dead-lettered",
    )

    batch_size: int = Field(500, ge=1, description="most events in one micro-batch")
    batch_wait_seconds: float = Field(
        0.005, ge=0, description="longest wait to fill a batch of labels (transactions never wait)"
    )
    commit_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="how often decided offsets are committed; a crash repeats at most "
        "this much, answered as duplicates",
    )
    fail_policy: Literal["hold", "open"] = Field(
        "hold",
        description="when Redis is down: hold (stop, retry, commit nothing) or open (score on "
        "empty history and mark decisions degraded)",
    )
    miskeyed_policy: Literal["dead-letter", "accept"] = Field(
        "dead-letter",
        description="a record whose Kafka key is not its card id (or is empty): dead-lettered "
        "with the reason, or accepted (counted in fraud_miskeyed_total; the card's order "
        "across partitions is then not guaranteed)",
    )
    max_future_seconds: float = Field(
        3600.0, gt=0, description="events dated further ahead of the clock are dead-lettered"
    )
    label_wait_seconds: float = Field(
        30.0,
        ge=0,
        description="how long a label read before its transaction was recorded waits for it "
        "before it is dead-lettered as unknown (the rest of its batch is recorded meanwhile)",
    )
    kafka_session_timeout_seconds: float = Field(
        10.0, gt=0, description="how soon the group notices a dead worker and rebalances"
    )
    retry_max_seconds: float = Field(5.0, gt=0, description="longest backoff between retries")

    unique_ids_across_cards: bool = Field(
        True,
        description="dead-letter a transaction id already used by another card (one more Redis "
        "key per transaction, kept as long as a card's history)",
    )

    include_features: bool = Field(
        False, description="add the feature vector to every decision (audit, parity checks)"
    )
    engine: Literal["native", "python"] = Field(
        "native",
        description="the per-transaction hot path (decoding, Redis commands and replies, "
        "features): native: the compiled core (fraudnative, Rust); python: fraudcore and "
        "service.exchange, the reference (the same decisions, bit for bit, at more CPU)",
    )

    web_host: str = Field(
        "127.0.0.1", description="address the web server (/health, /metrics) listens on"
    )
    web_port: int = Field(6066, description="port of the web server")
    data_dir: Path = Field(
        Path(".stack/worker"),
        description="Faust's data directory (holds nothing that must be kept)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the least severe log lines printed"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: Faust's lines; json: one JSON object a line (timestamp, level, "
        "logger, message; topic, partition and offset when about a record; exception)",
    )

    @property
    def wait_replicas(self) -> int:
        """Replicas a batch's writes must reach (FRAUD_REDIS_WAIT_REPLICAS, or the mode's
        default: a cluster or Sentinel setup has replicas to fail over to)."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 0 if self.redis_mode == "single" else 1


class _LogFormatAlone(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUD_", frozen=True, extra="ignore")

    log_format: Literal["text", "json"] = "text"


def log_format_alone() -> Literal["text", "json"]:
    """``FRAUD_LOG_FORMAT`` read on its own (text when it is not valid either): the format
    in which to say that the other settings are not valid."""
    try:
        return _LogFormatAlone().log_format
    except ValidationError:
        return "text"
