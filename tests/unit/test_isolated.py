"""The isolated worker's environment (fraudtools.isolated): one place for every caller."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fraudtools.isolated import TOPIC_ROLES, IsolatedWorker, Topics


def _worker(**changes: Any) -> IsolatedWorker:
    base = IsolatedWorker.named(
        "it-abc",
        bootstrap="127.0.0.1:9092",
        redis_url="redis://127.0.0.1:6379/0",
        data_dir=Path("/tmp/fraud-it/abc"),
        model_dir=Path("/models"),
        web_port=7001,
        settings={"FRAUD_BATCH_WAIT_SECONDS": "0.01"},
    )
    return dataclasses.replace(base, **changes)


def test_every_setting_of_an_isolated_worker() -> None:
    env = _worker().env({"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "FRAUD_ENV": "development",
        "FRAUD_APP_ID": "it-abc",
        "FRAUD_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "FRAUD_REDIS_URL": "redis://127.0.0.1:6379/0",
        "FRAUD_REDIS_KEY_PREFIX": "it-abc",
        "FRAUD_TOPIC_TRANSACTIONS": "it-abc-transactions",
        "FRAUD_TOPIC_LABELS": "it-abc-labels",
        "FRAUD_TOPIC_DECISIONS": "it-abc-decisions",
        "FRAUD_TOPIC_ALERTS": "it-abc-alerts",
        "FRAUD_TOPIC_DLQ": "it-abc-dlq",
        "FRAUD_TOPIC_LISTS": "it-abc-lists",
        "FRAUD_TOPIC_DECISION_LOG": "it-abc-decision_log",
        "FRAUD_PARTITIONS": "4",
        "FRAUD_MODEL_DIR": "/models",
        "FRAUD_DATA_DIR": "/tmp/fraud-it/abc",
        "FRAUD_WEB_PORT": "7001",
        "FRAUD_BATCH_WAIT_SECONDS": "0.01",
    }


def test_inherited_fraud_settings_never_reach_the_worker() -> None:
    inherited = {"HOME": "/root", "FRAUD_FAIL_POLICY": "open", "FRAUD_APP_ID": "prod"}
    env = _worker().env(inherited)
    assert env["HOME"] == "/root"
    assert "FRAUD_FAIL_POLICY" not in env
    assert env["FRAUD_APP_ID"] == "it-abc"


def test_overrides_win_over_settings_and_fields() -> None:
    env = _worker().env({}, FRAUD_BATCH_WAIT_SECONDS="0.5", FRAUD_REDIS_KEY_PREFIX="other")
    assert env["FRAUD_BATCH_WAIT_SECONDS"] == "0.5"
    assert env["FRAUD_REDIS_KEY_PREFIX"] == "other"


def test_settings_win_over_fields() -> None:
    worker = _worker(settings={"FRAUD_LOG_LEVEL": "INFO", "FRAUD_PARTITIONS": "8"})
    env = worker.env({})
    assert (env["FRAUD_LOG_LEVEL"], env["FRAUD_PARTITIONS"]) == ("INFO", "8")


def test_a_free_port_for_every_environment_unless_one_is_given() -> None:
    free = _worker(web_port=None)
    ports = {free.env({})["FRAUD_WEB_PORT"] for _ in range(3)}
    assert all(p.isdigit() and int(p) > 0 for p in ports)
    assert _worker().env({})["FRAUD_WEB_PORT"] == "7001"


def test_a_setting_that_is_not_a_fraud_variable_is_refused() -> None:
    with pytest.raises(ValueError, match="FRAUD_"):
        _worker().env({}, BATCH_SIZE="1")
    with pytest.raises(ValueError, match="FRAUD_"):
        _worker(settings={"LOG_LEVEL": "INFO"})


def test_topics_in_role_order() -> None:
    worker = _worker()
    assert worker.topics == [f"it-abc-{role}" for role in TOPIC_ROLES]
    assert worker.topic("dlq") == worker.names.dlq == "it-abc-dlq"
    with pytest.raises(KeyError, match="choose from"):
        worker.topic("nope")


def test_app_id_prefix_and_topics_may_differ() -> None:
    """As the benchmark has it: a group per phase, one key prefix for the run."""
    worker = IsolatedWorker(
        run_id="bench-1", app_id="bench-1-main", bootstrap="b:1", redis_url="redis://r",
        prefix="bench-1", names=Topics.named("bench-1-main"), data_dir=Path("/d"),
    )
    env = worker.env({})
    assert env["FRAUD_APP_ID"] == "bench-1-main"
    assert env["FRAUD_REDIS_KEY_PREFIX"] == "bench-1"
    assert env["FRAUD_TOPIC_DECISIONS"] == "bench-1-main-decisions"
