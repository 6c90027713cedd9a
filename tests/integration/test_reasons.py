"""Reason codes in the real worker: every decision that does not approve carries the three
features that pushed its score up most — the same the shipped model's contributions give
offline for the features the worker logged — and no approval carries any."""

from __future__ import annotations

import asyncio

import numpy as np

from fraudcore import FEATURE_NAMES
from fraudmodel.reasons import top_reasons
from fraudtools.feed import feed
from fraudtools.producer import TopicNames, send_records
from service.model import load_current
from training import generator
from training.dataset import normalise

from .conftest import BOOTSTRAP, ROOT, Worker, consume


def test_decisions_that_do_not_approve_say_why(run, tmp_path):
    rules = tmp_path / "rules.yaml"
    # A rule declines some transactions the model approves: they are explained too.
    rules.write_bytes(b"rules:\n  - id: big\n    when: amount > 150\n    action: decline\n")
    frame = normalise(
        generator.generate(generator.GeneratorConfig(customers=60, terminals=100, days=20,
                                                     seed=5)),
        source="test",
    )
    records = feed(frame, delay_days=7, labels=False)
    worker = Worker(run.env(FRAUD_INCLUDE_FEATURES="true", FRAUD_RULES_FILE=str(rules)),
                    tmp_path / "worker.log").start().wait_ready()
    try:
        asyncio.run(send_records(records, bootstrap=BOOTSTRAP,
                                 topics=TopicNames(run.topic("transactions"),
                                                   run.topic("labels"))))
        decisions = asyncio.run(consume(run.topic("decisions"), until=len(records)))
    finally:
        worker.stop()
    assert len(decisions) == len(records)
    model = load_current(ROOT / "models")
    assert model.explainer is not None, "the shipped model carries reason codes"
    flagged = [d for d in decisions if d["action"] != "approve"]
    approved = [d for d in decisions if d["action"] == "approve"]
    assert flagged and approved
    assert not any("reasons" in d for d in approved)
    by_rule_only = [d for d in flagged if d["rules"] == ["big"]]
    assert by_rule_only, "the rule declines some"
    rows = np.asarray([[d["features"][n] for n in FEATURE_NAMES] for d in flagged],
                      dtype=np.float32)
    contributions = model.explainer.explain(rows)
    for d, row in zip(flagged, contributions, strict=True):
        expected = top_reasons(row, [d["features"][n] for n in FEATURE_NAMES], k=3)
        assert d["reasons"] == [dict(r) for r in expected], d["transaction_id"]
        assert 1 <= len(d["reasons"]) <= 3
    # Faithful: all contributions add up, with the base value, to the score decided.
    totals = model.explainer.totals(contributions)
    assert np.max(np.abs(totals - np.asarray([d["score"] for d in flagged]))) < 1e-4
