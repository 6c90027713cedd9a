"""The decision log (FRAUD_DECISION_LOG): what the pipeline writes, and training's
``from-log`` reading it back into a training set (service/records.py, training/from_log.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from fraudcore import FEATURE_NAMES, Thresholds, Transaction, decide, fingerprint
from fraudmodel.reasons import Reason
from service.model import ModelHolder
from service.pipeline import OutputTopics
from service.records import Decision, Shadow
from service.rules import RulesHolder
from training import cli
from training.dataset import COLUMNS, DatasetError
from training.from_log import PROVENANCE, read_features, read_frauds, read_log, training_set

from .test_lists_service import RULES, blocked_and_trusted
from .test_pipeline import ROOT, messages, pipeline, sink_of, tx
from .test_pipeline import decide as decide_batch

SCHEMA = Draft202012Validator(json.loads((ROOT / "docs/schemas/decision-log.schema.json")
                                         .read_text()))
LOGGED = OutputTopics("decisions", "alerts", "dlq", decision_log="log")
T = datetime(2025, 3, 1, 12, tzinfo=UTC)
THRESHOLDS = Thresholds(0.3, 0.7)


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(ROOT / "models")


def logged(p: Any) -> list[dict[str, Any]]:
    return sink_of(p).records("log")


# --- what the pipeline writes ------------------------------------------------------------


def test_every_decision_is_logged_with_its_features_and_the_decisions_do_not_show_them(
    models: ModelHolder,
) -> None:
    p = pipeline(models)
    p.topics = LOGGED
    asyncio.run(decide_batch(p, messages(*(tx(n, amount=10.0 + n) for n in range(4)),
                                         tx(4, amount=9_000.0))))
    decisions, records = sink_of(p).records("decisions"), logged(p)
    assert [r["transaction_id"] for r in records] == [d["transaction_id"] for d in decisions]
    assert not any("features" in d for d in decisions)  # FRAUD_INCLUDE_FEATURES is off
    model = models.model
    for record, decision in zip(records, decisions, strict=True):
        SCHEMA.validate(record)
        assert list(record["features"]) == list(FEATURE_NAMES)
        assert record["feature_fingerprint"] == fingerprint()
        assert record["thresholds"] == {"review": model.info.thresholds.review,
                                        "decline": model.info.thresholds.decline}
        assert record["model_action"] == decide(record["score"], model.info.thresholds)
        assert record["action"] == decision["action"]
        assert round(record["score"], 6) == decision["score"]
        assert "rules" not in record  # no rules file
    vectors = np.array([list(r["features"].values()) for r in records], dtype=np.float32)
    assert np.allclose(model.score(vectors), [r["score"] for r in records], atol=0, rtol=0)
    # the output is acknowledged with the decisions: a log record per decision, keyed by card
    assert {o.key for o in sink_of(p).sent if o.topic == "log"} == {b"card-1"}


def test_without_the_log_nothing_is_written_to_it(models: ModelHolder) -> None:
    p = pipeline(models)
    asyncio.run(decide_batch(p, messages(tx(0), tx(1))))
    assert {o.topic for o in sink_of(p).sent} == {"decisions"}


def test_the_log_keeps_the_models_action_before_the_rules_and_the_lists_that_held_a_field(
    models: ModelHolder, tmp_path: Path
) -> None:
    _, lists = blocked_and_trusted()
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_bytes(RULES)
    p = pipeline(models)
    p.topics = LOGGED
    p.rules = RulesHolder(rules_file, lists=lists)
    asyncio.run(decide_batch(p, messages(tx(1, card="card-7"), tx(2, card="card-8"),
                                         tx(3, card="card-7", terminal="T-OK"))))
    got = {r["transaction_id"]: r for r in logged(p)}
    for record in got.values():
        SCHEMA.validate(record)
    assert (got["tx-1"]["model_action"], got["tx-1"]["action"]) == ("approve", "decline")
    assert got["tx-1"]["lists"] == ["blocked_cards"] and got["tx-1"]["rules"] == ["blocked-card"]
    assert got["tx-2"]["lists"] == [] and got["tx-2"]["rules"] == []
    assert got["tx-3"]["lists"] == ["blocked_cards", "trusted_terminals"]
    assert {r["rules_version"] for r in got.values()} == {p.rules.rules.version}  # type: ignore[union-attr]


def test_a_log_record_holds_the_sent_optional_fields_the_shadow_and_the_reasons() -> None:
    transaction = Transaction("t1", "c1", "term", 12.5, T, currency="EUR", channel="online")
    features = [float(i) + 0.1 for i in range(len(FEATURE_NAMES))]
    decision = Decision(
        transaction, 0.912345678, "decline", "m1", 1.7e9, features=features,
        thresholds=THRESHOLDS, model_action="decline",
        reasons=(Reason(feature="amount", value=12.5, contribution=0.4),),
        shadow=Shadow("m2", 0.123456789, "approve"),
    )
    record = orjson.loads(decision.log_json())
    SCHEMA.validate(record)
    assert (record["currency"], record["channel"]) == ("EUR", "online")
    assert "mcc" not in record and "country" not in record  # not sent
    assert record["score"] == 0.912345678 and record["shadow"]["score"] == 0.123456789
    assert list(record["features"].values()) == features  # float64, not rounded
    assert record["reasons"][0]["feature"] == "amount"
    with pytest.raises(ValueError, match="features and thresholds"):
        dataclasses.replace(decision, features=None).log_json()


def test_the_schema_refuses_a_record_without_features_or_with_a_wrong_action() -> None:
    good = orjson.loads(Decision(Transaction("t1", "c1", "term", 1.0, T), 0.1, "approve", "m",
                                 1.7e9, features=[0.0] * len(FEATURE_NAMES),
                                 thresholds=THRESHOLDS).log_json())
    SCHEMA.validate(good)
    for change in ({"features": None}, {"model_action": "allow"}, {"log_version": 2},
                   {"thresholds": {"review": 0.3}}):
        assert not SCHEMA.is_valid(good | change), change


# --- from the log to a training set ------------------------------------------------------


def _decision(n: int, *, duplicate: bool = False, degraded: bool = False,
              decided_at: float = 1.7e9, score: float = 0.1) -> Decision:
    transaction = Transaction(f"tx-{n}", f"card-{n % 3}", f"T-{n % 2}", 10.0 + n,
                              T + timedelta(minutes=n))
    features = [n + i / 7 for i in range(len(FEATURE_NAMES))]  # not exact in float32
    return Decision(transaction, score, "approve", "m1", decided_at + n, duplicate=duplicate,
                    degraded=degraded, features=features, thresholds=THRESHOLDS)


def _write(path: Path, decisions: list[Decision]) -> Path:
    path.write_bytes(b"".join(d.log_json() + b"\n" for d in decisions))
    return path


def _labels(path: Path, *ids: int) -> Path:
    path.write_bytes(b"".join(orjson.dumps({
        "transaction_id": f"tx-{n}", "card_id": f"card-{n % 3}", "terminal_id": f"T-{n % 2}",
        "amount": 10.0 + n, "timestamp": (T + timedelta(minutes=n)).isoformat(),
        "known_at": (T + timedelta(days=7)).isoformat(),
    }) + b"\n" for n in ids))
    return path


def test_the_training_set_has_one_labelled_row_per_transaction_at_the_logged_precision(
    tmp_path: Path,
) -> None:
    first = [_decision(n) for n in range(6)]
    again = [
        first[2],  # resent as it was (its acknowledgement was lost)
        _decision(3, duplicate=True, decided_at=1.6e9),  # redelivered: earlier, but a copy
        _decision(4, degraded=True),
    ]
    log = read_log(_write(tmp_path / "log.jsonl", [*first[:4], *again, first[5]]))
    frame, summary = training_set(log, read_frauds(_labels(tmp_path / "l.jsonl", 1, 5, 99)))
    assert list(frame.columns) == [*COLUMNS, *FEATURE_NAMES, *PROVENANCE]
    assert frame["TRANSACTION_ID"].tolist() == ["tx-0", "tx-1", "tx-2", "tx-3", "tx-5"]
    assert frame["TX_FRAUD"].tolist() == [0, 1, 0, 0, 1]
    expected = np.array([first[n].features for n in (0, 1, 2, 3, 5)], dtype=np.float64)
    assert np.array_equal(frame[list(FEATURE_NAMES)].to_numpy(), expected)  # bit for bit
    assert summary.records == 8 and summary.transactions == 5
    assert (summary.copies, summary.degraded, summary.frauds) == (2, 1, 2)
    assert summary.labels_unmatched == 1  # tx-99 was never logged
    kept, summary = training_set(log, set(), keep_degraded=True)
    assert "tx-4" in kept["TRANSACTION_ID"].tolist() and summary.degraded == 0


def test_labels_from_a_table(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    pd.DataFrame({"TRANSACTION_ID": ["tx-1", "tx-2"], "TX_FRAUD": [1, 0]}).to_csv(table)
    assert read_frauds(table) == {"tx-1"}
    pd.DataFrame({"TRANSACTION_ID": ["tx-1"], "TX_FRAUD": [2]}).to_csv(table)
    with pytest.raises(DatasetError, match="0 or 1"):
        read_frauds(table)
    with pytest.raises(DatasetError, match="unknown labels file type"):
        read_frauds(_labels(tmp_path / "labels.txt", 1))


@pytest.mark.parametrize(("change", "message"), [
    ({"feature_fingerprint": "0000000000000000"}, "other feature definitions"),
    ({"log_version": None}, "is this the decision log"),
    ({"features": {"amount": 1.0}}, "must name the 22 features"),
    ({"score": "high"}, "not a decision log record"),
])
def test_a_record_that_is_not_this_codes_log_is_refused_with_its_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    bad = orjson.loads(_decision(1).log_json()) | change
    path = tmp_path / "log.jsonl"
    path.write_bytes(_decision(0).log_json() + b"\n" + orjson.dumps(bad) + b"\n")
    with pytest.raises(DatasetError, match=rf"log.jsonl:2: .*{message}"):
        read_log(path)


def test_from_log_writes_a_set_that_train_reads_without_a_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "log.jsonl", [_decision(n) for n in range(5)])
    _labels(tmp_path / "labels.jsonl", 2)
    out = tmp_path / "set.parquet"
    assert cli.main(["from-log", "--log", str(tmp_path / "log.jsonl"), "--labels",
                     str(tmp_path / "labels.jsonl"), "--out", str(out)]) == 0
    assert "5 transactions (1 frauds)" in capsys.readouterr().out
    featured = read_features(out)
    assert featured["TRANSACTION_ID"].tolist() == [f"tx-{n}" for n in range(5)]
    assert featured["TX_FRAUD"].tolist() == [0, 0, 1, 0, 0]
    assert featured[list(FEATURE_NAMES)].dtypes.unique().tolist() == [np.float32]
    assert np.array_equal(featured[list(FEATURE_NAMES)].to_numpy(),
                          np.array([_decision(n).features for n in range(5)], dtype=np.float32))
    assert cli.main(["from-log", "--log", str(tmp_path / "none.jsonl"), "--labels",
                     str(tmp_path / "labels.jsonl"), "--out", str(out)]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err


def test_a_features_file_without_the_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    pd.DataFrame({c: ["1"] for c in COLUMNS}).to_csv(path, index=False)
    with pytest.raises(DatasetError, match="missing column.*amount.*from-log"):
        read_features(path)
