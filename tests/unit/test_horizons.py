"""The edges of what the worker takes (README: "events dated further ahead of the worker's
clock are dead-lettered", FRAUD_MAX_FUTURE_SECONDS; "a label dated more than
FRAUD_MAX_FUTURE_SECONDS ahead, or known more than 33 days after its transaction, is
dead-lettered too"): exactly at an edge is taken, a microsecond beyond is not. The real
pipeline on the in-memory store, the worker's clock fixed; and the settings, as the worker
reads them, reaching the parts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from service.app import build_worker
from service.memory import MemoryStore
from service.model import ModelHolder
from service.pipeline import BatchPipeline, Options
from service.settings import Settings

from .test_pipeline import (
    NOW,
    TOPICS,
    RecordingSink,
    decide,
    label,
    messages,
    sink_of,
    tx,
)

ROOT = Path(__file__).resolve().parents[2]
CLOCK = datetime.fromtimestamp(NOW, UTC)
HORIZON = 60.0
EDGE = CLOCK + timedelta(seconds=HORIZON)
BEYOND = EDGE + timedelta(microseconds=1)


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(ROOT / "models")


def _pipeline(models: ModelHolder, store: MemoryStore) -> BatchPipeline:
    return BatchPipeline(
        store, models, RecordingSink(), topics=TOPICS,
        options=Options(max_future_seconds=HORIZON, label_wait_seconds=3600.0),
        clock=lambda: NOW,
    )


def test_a_transaction_exactly_at_the_horizon_is_decided_one_beyond_is_dead_lettered(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = _pipeline(models, store)
    asyncio.run(decide(p, messages(tx(0, at=EDGE), tx(1, at=BEYOND, card="card-2"))))
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-0"]
    [dead] = sink_of(p).records("dlq")
    assert dead["reason"] == "timestamp: more than 60 s ahead of the worker's clock"
    assert orjson.loads(dead["payload"])["transaction_id"] == "tx-1"
    assert store.state.cards["card-1"].get("tx-0") is not None
    assert "card-2" not in store.state.cards  # the refused one recorded nothing


@pytest.mark.parametrize("field", ["timestamp", "known_at"])
def test_a_label_exactly_at_the_horizon_is_recorded_one_beyond_is_dead_lettered(
    models: ModelHolder, field: str
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = _pipeline(models, store)
    # Transactions at the edge and beyond it cannot both be recorded (one is refused), so
    # the label's own time moves: its transaction is recorded earlier for known_at, and
    # for timestamp the label names a transaction dated at the edge.
    at = EDGE if field == "timestamp" else CLOCK
    asyncio.run(decide(p, messages(tx(0, at=at))))
    fields = orjson.loads(tx(0, at=at))
    fields["known_at"] = EDGE.isoformat()
    at_edge = orjson.dumps(fields)
    fields[field] = BEYOND.isoformat()
    if field == "timestamp":
        fields["known_at"] = BEYOND.isoformat()
    beyond = orjson.dumps(fields)
    assert asyncio.run(p.labels(messages(beyond, topic="fraud-labels"))) == 0
    [dead] = sink_of(p).records("dlq")
    assert dead["reason"] == (
        "timestamp or known_at: more than 60 s ahead of the worker's clock"
    )
    assert asyncio.run(p.labels(messages(at_edge, topic="fraud-labels"))) == 1
    assert [x.transaction_id for x in store.labels] == ["tx-0"]


def test_a_label_known_exactly_33_days_after_its_transaction_counts_one_more_microsecond_not(
    models: ModelHolder,
) -> None:
    """33 days: what a card keeps (FeatureSpec.card_retention_seconds); the clock is set
    so that neither label is from the future."""
    late = NOW + 34 * 86_400
    store = MemoryStore(clock=lambda: late)
    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS,
                      options=Options(label_wait_seconds=3600.0), clock=lambda: late)
    asyncio.run(decide(p, messages(tx(0))))
    at_edge = label(0, known_after=timedelta(days=33))
    beyond = label(0, known_after=timedelta(days=33, microseconds=1))
    assert asyncio.run(p.labels(messages(beyond, topic="fraud-labels"))) == 0
    [dead] = sink_of(p).records("dlq")
    assert dead["reason"].startswith("known_at: more than 33 days after the transaction")
    assert asyncio.run(p.labels(messages(at_edge, topic="fraud-labels"))) == 1


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """The settings as the worker reads them: from FRAUD_* variables."""
    for name, value in {"FRAUD_ENV": "development", "FRAUD_MODEL_DIR": str(ROOT / "models"),
                        "FRAUD_DATA_DIR": str(tmp_path / "w"), **env}.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_fraud_max_future_seconds_reaches_transactions_and_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    worker = build_worker(_settings(monkeypatch, tmp_path, FRAUD_MAX_FUTURE_SECONDS="90"))
    assert worker.pipeline.options.max_future_seconds == 90.0
    assert worker.pipeline._labels.options.max_future_seconds == 90.0


@pytest.mark.parametrize(("value", "ids"), [("false", False), ("true", True), (None, True)])
def test_fraud_unique_ids_across_cards_reaches_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, ids: bool
) -> None:
    env = {} if value is None else {"FRAUD_UNIQUE_IDS_ACROSS_CARDS": value}
    worker = build_worker(_settings(monkeypatch, tmp_path, **env))
    assert worker.store.ids is ids
