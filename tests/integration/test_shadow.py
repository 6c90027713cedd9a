"""A challenger scored in the shadow of the model, in the real worker: every decision
carries its score and action while ``models/challenger`` names it, no action is ever its,
and removing the pointer stops the shadow without a restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from fraudcore import FEATURE_NAMES, Thresholds, decide, fingerprint
from fraudtools.feed import feed
from fraudtools.producer import TopicNames, send_records
from service.model import load_model
from training import export, generator
from training.dataset import normalise

from .conftest import BOOTSTRAP, ROOT, Worker, consume


def _challenger(models_dir: Path) -> str:
    """A model that calls fraud nearly everything with an amount (its shadow disagrees),
    written beside the current one, which stays current."""
    current = (models_dir / "current").read_text().strip()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > -1.0).astype(int))
    onnx = export.convert(model, len(FEATURE_NAMES))
    export.check_parity(onnx, model, x)
    metadata = json.loads((models_dir / current / "metadata.json").read_text())
    metadata = {**metadata, "features": {**metadata["features"], "fingerprint": fingerprint()}}
    version = export.write_artifacts(models_dir, onnx, metadata).name
    (models_dir / "current").write_text(current + "\n")  # written, not promoted
    return version


def _records(seed: int) -> list:
    frame = normalise(
        generator.generate(generator.GeneratorConfig(customers=40, terminals=80, days=15,
                                                     seed=seed)),
        source="test",
    )
    return feed(frame, delay_days=7, labels=False)


def test_the_challenger_scores_in_the_shadow_and_never_decides(run, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    live_version = (models / "current").read_text().strip()
    challenger_version = _challenger(models)
    (models / "challenger").write_text(challenger_version + "\n")
    live, challenger = load_model(models / live_version), load_model(models / challenger_version)
    worker = Worker(
        run.env(FRAUD_MODEL_DIR=str(models), FRAUD_MODEL_POLL_SECONDS="0.5",
                FRAUD_INCLUDE_FEATURES="true"),
        tmp_path / "worker.log",
    ).start().wait_ready()
    topics = TopicNames(run.topic("transactions"), run.topic("labels"))
    records = _records(21)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    try:
        asyncio.run(send_records(first, bootstrap=BOOTSTRAP, topics=topics))
        shadowed = asyncio.run(consume(run.topic("decisions"), until=len(first)))
        _, health = worker.health() or (0, {})
        serving_metric = worker.metric("fraud_challenger_info")
        (models / "challenger").unlink()
        deadline = time.monotonic() + 30
        while "removed: no shadow scores" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        asyncio.run(send_records(second, bootstrap=BOOTSTRAP, topics=topics))
        everything = asyncio.run(
            consume(run.topic("decisions"), until=len(first) + len(second))
        )
    finally:
        worker.stop()
    assert f"challenger {challenger_version} replaces no challenger" in worker.output()
    assert health["challenger_version"] == challenger_version, health
    assert health["challenger_refused"] is None
    assert serving_metric == 1
    assert len(shadowed) == len(first)
    assert "removed: no shadow scores" in worker.output()
    rows = np.asarray([[d["features"][n] for n in FEATURE_NAMES] for d in shadowed],
                      dtype=np.float32)
    live_scores, challenger_scores = live.score(rows), challenger.score(rows)
    thresholds: Thresholds = live.info.thresholds
    for d, live_score, shadow_score in zip(shadowed, live_scores, challenger_scores,
                                           strict=True):
        assert d["model_version"] == live_version
        assert d["score"] == round(float(live_score), 6)
        assert d["action"] == decide(float(live_score), thresholds)  # the model's, never its
        assert d["shadow"]["model_version"] == challenger_version
        assert abs(d["shadow"]["score"] - float(shadow_score)) <= 1e-6
        assert d["shadow"]["action"] == decide(float(shadow_score),
                                               challenger.info.thresholds)
    disagree = sum(d["action"] != d["shadow"]["action"] for d in shadowed)
    assert disagree > len(shadowed) // 2  # the challenger declines what the model approves
    later = {r.transaction_id for r in second}
    after = [d for d in everything if d["transaction_id"] in later]
    assert len(after) == len(second)
    assert not any("shadow" in d for d in after), "the shadow outlived its pointer"


def test_a_challenger_that_fails_its_checks_is_refused_and_the_worker_serves(run, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    live_version = (models / "current").read_text().strip()
    broken = models / "broken-1"
    shutil.copytree(models / live_version, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    (models / "challenger").write_text("broken-1\n")
    worker = Worker(run.env(FRAUD_MODEL_DIR=str(models), FRAUD_MODEL_POLL_SECONDS="0.5"),
                    tmp_path / "worker.log")
    worker.start().wait_ready()
    records = _records(23)[:60]
    try:
        asyncio.run(send_records(records, bootstrap=BOOTSTRAP,
                                 topics=TopicNames(run.topic("transactions"),
                                                   run.topic("labels"))))
        decisions = asyncio.run(consume(run.topic("decisions"), until=len(records)))
        _, health = worker.health() or (0, {})
        refused_metric = worker.metric("fraud_challenger_refused_info")
    finally:
        worker.stop()
    assert "refused challenger broken-1, keeping no challenger" in worker.output()
    assert health["status"] == "ok", health  # a refused challenger is not a fault
    assert health["challenger_version"] is None
    assert health["challenger_refused"]["version"] == "broken-1"
    assert "the file was changed or corrupted" in health["challenger_refused"]["reason"]
    assert refused_metric == 1
    assert len(decisions) == len(records)
    assert {d["model_version"] for d in decisions} == {live_version}
    assert not any("shadow" in d for d in decisions)
