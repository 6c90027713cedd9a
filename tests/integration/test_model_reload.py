"""A new current model is picked up without a restart, losing and doubling nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from fraudcore import FEATURE_NAMES, fingerprint
from fraudtools.feed import feed
from fraudtools.producer import TopicNames, send_records
from training import export, generator
from training.dataset import normalise

from .conftest import BOOTSTRAP, ROOT, Worker, consume


def _another_model(models_dir) -> str:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(int)
    model = LogisticRegression().fit(x, y)
    onnx = export.convert(model, len(FEATURE_NAMES))
    export.check_parity(onnx, model, x)
    current = json.loads(
        (models_dir / (models_dir / "current").read_text().strip() / "metadata.json").read_text()
    )
    metadata = {**current, "features": {**current["features"], "fingerprint": fingerprint()}}
    return export.write_artifacts(models_dir, onnx, metadata).name


def test_a_new_current_model_is_served_without_a_restart(run, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    old = (models / "current").read_text().strip()
    worker = (
        Worker(
            run.env(FRAUD_MODEL_DIR=str(models), FRAUD_MODEL_POLL_SECONDS="0.5"),
            tmp_path / "worker.log",
        )
        .start()
        .wait_ready()
    )
    try:
        frame = normalise(
            generator.generate(
                generator.GeneratorConfig(customers=50, terminals=100, days=20, seed=11)
            ),
            source="test",
        )
        records = feed(frame, delay_days=7, labels=False)
        half = len(records) // 2
        topics = TopicNames(run.topic("transactions"), run.topic("labels"))
        asyncio.run(send_records(records[:half], bootstrap=BOOTSTRAP, topics=topics))
        first = asyncio.run(consume(run.topic("decisions"), until=half))
        new = _another_model(models)
        deadline = time.monotonic() + 30
        while f"model {new} replaces {old}" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        asyncio.run(send_records(records[half:], bootstrap=BOOTSTRAP, topics=topics))
        decisions = asyncio.run(consume(run.topic("decisions"), until=len(records)))
    finally:
        worker.stop()
    assert {d["model_version"] for d in first} == {old}
    ids = [d["transaction_id"] for d in decisions]
    assert len(ids) == len(set(ids)) == len(records)
    version = {d["transaction_id"]: d["model_version"] for d in decisions}
    assert {version[r.transaction_id] for r in records[half:]} == {new}, worker.output()[-2000:]
