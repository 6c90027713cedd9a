"""The decision log end to end: the real worker logs every decision with the features it
computed from Redis; ``fraud-tail --raw --to-end`` copies the log and the labels out of
Kafka; ``python -m training from-log`` joins them into a training set; and training on it
gives the model that training on the offline replay gives, because the features are the
same to the last bit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pytest

from fraudcore import FEATURE_NAMES, decide
from fraudtools.feed import feed, with_labels_behind
from fraudtools.producer import TopicNames, send_records
from service.model import load_current
from training import generator, pipeline, protocol
from training.dataset import COLUMNS, normalise
from training.from_log import read_features
from training.replay import replay
from training.train import Candidate

from ..unit.test_export_parity import _honest
from .conftest import BOOTSTRAP, ROOT, Worker, consume

SPLIT = protocol.Split(date(2018, 5, 1))


@pytest.fixture(scope="module")
def frame():
    config = generator.GeneratorConfig(
        customers=80, terminals=160, days=52, start=date(2018, 4, 1), seed=2
    )
    return normalise(generator.generate(config), source="test")


def _copy(topic: str, out: Path) -> int:
    """The topic's records, from the start to its end now, as JSON lines (fraud-tail)."""
    with out.open("wb") as file:
        done = subprocess.run(
            [sys.executable, "-m", "fraudtools.tail", "--topic", topic, "--bootstrap", BOOTSTRAP,
             "--from-beginning", "--to-end", "--raw"],
            stdout=file, stderr=subprocess.PIPE, text=False, timeout=120, check=True,
        )
    assert b"records of" in done.stderr, done.stderr
    return len(out.read_bytes().splitlines())


def test_the_logged_features_are_the_replays_and_train_the_same_model(
    run, frame, tmp_path: Path
) -> None:
    worker = Worker(run.env(FRAUD_DECISION_LOG="true"), tmp_path / "worker.log")
    worker.start().wait_ready()
    try:
        records = feed(frame, delay_days=7)
        transactions = sum(r.kind == "transaction" for r in records)
        labelled = {r.transaction_id for r in records if r.kind == "label"}  # known in time
        # Paced as test_worker's parity test is (the terminals' state is shared across
        # partitions, and each label right behind its transaction).
        asyncio.run(send_records(
            with_labels_behind(records), bootstrap=BOOTSTRAP,
            topics=TopicNames(run.topic("transactions"), run.topic("labels")), rate=250,
        ))
        decisions = asyncio.run(consume(run.topic("decisions"), until=transactions))
    finally:
        worker.stop()
    assert len(decisions) == transactions == len(frame), worker.output()[-3000:]

    log_file, labels_file = tmp_path / "log.jsonl", tmp_path / "labels.jsonl"
    assert _copy(run.topic("decision_log"), log_file) == len(frame)
    assert _copy(run.topic("labels"), labels_file) == len(labelled)

    # Every decision logged once, with the features of the offline replay to the last bit.
    logged = {r["transaction_id"]: r for r in map(orjson.loads, log_file.read_bytes().splitlines())}
    assert len(logged) == len(frame)
    offline, _ = replay(frame, dtype=np.float64)
    expected = offline.set_index("TRANSACTION_ID")[list(FEATURE_NAMES)]
    online = np.array([list(logged[t]["features"].values()) for t in expected.index])
    differ = np.flatnonzero((online != expected.to_numpy()).any(axis=1))
    assert not differ.size, [expected.index[i] for i in differ[:5]]
    # ... the score and the action the model gave them, and the thresholds it used
    model = load_current(ROOT / "models")
    scores = model.score(online.astype(np.float32))
    assert np.array_equal(scores, [logged[t]["score"] for t in expected.index])
    assert {orjson.dumps(r["thresholds"]) for r in logged.values()} == {
        orjson.dumps({"review": model.info.thresholds.review,
                      "decline": model.info.thresholds.decline})}
    by_id = {d["transaction_id"]: d for d in decisions}
    for t, record in logged.items():
        assert record["model_action"] == decide(record["score"], model.info.thresholds)
        assert record["action"] == by_id[t]["action"] and not record["degraded"]

    # from-log joins the log with the labels topic into a training set
    training_set = tmp_path / "set.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "training", "from-log", "--log", str(log_file), "--labels",
         str(labels_file), "--out", str(training_set)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(frame):,} transactions" in done.stdout
    featured = read_features(training_set)
    # The data as the service knew it: a fraud whose label had not come by the end is not
    # one yet (the last week's).
    known = frame.assign(TX_FRAUD=frame["TRANSACTION_ID"].isin(labelled).astype(np.int8))
    assert featured[list(COLUMNS)].equals(known)
    assert known["TX_FRAUD"].sum() < frame["TX_FRAUD"].sum()

    # training on the logged features gives the model the replay's features give
    candidates = [Candidate("logistic_regression", _honest)]
    on_log = pipeline.run(known, split=SPLIT, models_dir=tmp_path / "a", source="log",
                          validation_folds=2, candidates=candidates, featured=featured)
    on_replay = pipeline.run(known, split=SPLIT, models_dir=tmp_path / "b", source="replay",
                             validation_folds=2, candidates=candidates)
    assert on_log.metadata.version == on_replay.metadata.version
    assert on_log.replay.transactions == 0  # nothing was replayed
