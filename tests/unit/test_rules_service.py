"""The rules in the worker: loaded and refused at start, reloaded and refused between batches,
applied to a batch's decisions after the model (service.rules, the pipeline, the worker)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from fraudcore import FEATURE_NAMES, Transaction
from fraudrules import RulesError, version_of
from service.app import StartupError, build_worker
from service.model import ModelHolder
from service.records import Decision
from service.rules import UNREADABLE, RulesHolder, apply_rules
from service.settings import Settings

from .test_pipeline import ROOT, decide, messages, pipeline, sink_of, tx

BIG = b"rules:\n  - id: big-amount\n    when: amount > 5000\n    action: decline\n"
BROKEN = b"rules:\n  - id: broken\n    when: amount > 5000 &&\n    action: decline\n"
ROW = [0.0] * len(FEATURE_NAMES)
T = datetime(2025, 3, 1, 12, tzinfo=UTC)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def decision(amount: float, action: str = "approve", card: str = "4000123412341234") -> Decision:
    return Decision(Transaction(f"t-{amount}", card, "T", amount, T), 0.01, action,  # type: ignore[arg-type]
                    "m1", 1.7e9)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_bytes(BIG)
    return path


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(ROOT / "models")


# --- the holder --------------------------------------------------------------------------


def test_without_a_file_there_are_no_rules() -> None:
    holder = RulesHolder(None)
    assert holder.rules is None and not holder.refresh() and holder.refused is None


def test_a_file_that_does_not_compile_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(BROKEN)
    with pytest.raises(RulesError, match=r"rules.yaml:3:27: rule 'broken'"):
        RulesHolder(path)
    with pytest.raises(RulesError, match="cannot read"):
        RulesHolder(tmp_path / "none.yaml")


def test_a_changed_file_replaces_the_rules_and_a_broken_one_is_refused_and_kept_out(
    rules_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = iter(range(100, 200))
    holder = RulesHolder(rules_file, clock=lambda: float(next(clock)))
    first = holder.rules
    assert first is not None and first.version == version_of(BIG)
    assert not holder.refresh()  # unchanged

    rules_file.write_bytes(BIG.replace(b"5000", b"3000"))
    assert holder.refresh()
    assert holder.rules is not None and holder.rules.version != first.version
    second = holder.rules

    caplog.set_level(logging.ERROR, logger="service.rules")
    rules_file.write_bytes(BROKEN)
    assert not holder.refresh()
    assert holder.rules is second  # the rules in service keep deciding
    assert holder.refused is not None and holder.refused.version == version_of(BROKEN)
    assert "rule 'broken'" in holder.refused.reason and holder.refused.at == 100.0
    assert not holder.refresh()  # the same content is not tried (nor logged) again
    assert [r.message.count("refused rules") for r in caplog.records] == [1]

    rules_file.write_bytes(BIG.replace(b"5000", b"3000"))  # the served rules again
    assert not holder.refresh() and holder.refused is None and holder.rules is second

    rules_file.unlink()
    assert not holder.refresh() and holder.rules is second
    assert holder.refused is not None and holder.refused.version == UNREADABLE

    rules_file.write_bytes(BIG)
    assert holder.refresh() and holder.refused is None
    assert holder.rules is not None and holder.rules.version == first.version


# --- applying them -----------------------------------------------------------------------


def test_without_rules_the_decisions_are_left_as_they_are() -> None:
    decisions = [decision(10.0)]
    assert apply_rules(None, decisions, [ROW]) is decisions
    assert apply_rules(RulesHolder(None), decisions, [ROW]) is decisions
    document = orjson.loads(decisions[0].to_json())
    assert "rules" not in document and "rules_version" not in document


def test_rules_set_the_action_name_what_fired_and_are_counted(rules_file: Path) -> None:
    rules_file.write_bytes(BIG + b"  - id: vip\n    when: terminal_id == 'VIP'\n"
                           b"    action: allow\n")
    holder = RulesHolder(rules_file)
    before = metric("fraud_rule_hits_total", rule="big-amount")
    small, big = apply_rules(holder, [decision(10.0), decision(6000.0)], [ROW, ROW])
    assert (small.action, small.rules) == ("approve", ())
    assert (big.action, big.rules) == ("decline", ("big-amount",))
    assert small.rules_version == big.rules_version == version_of(rules_file.read_bytes())
    assert metric("fraud_rule_hits_total", rule="big-amount") == before + 1
    document = orjson.loads(big.to_json())
    assert (document["rules"], document["rules_version"]) == (["big-amount"], big.rules_version)
    assert orjson.loads(small.to_json())["rules"] == []


def test_a_failing_rule_does_not_fire_is_counted_and_logged_once_without_the_card(
    rules_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules_file.write_bytes(b"rules:\n  - id: overflow\n    when: int(card_id) * 1000000 > 0\n"
                           b"    action: decline\n")
    holder = RulesHolder(rules_file)
    before = metric("fraud_rule_errors_total", rule="overflow")
    caplog.set_level(logging.WARNING, logger="service.rules")
    for _ in range(2):
        decided = apply_rules(holder, [decision(1.0), decision(2.0)], [ROW, ROW])
        assert [(d.action, d.rules) for d in decided] == [("approve", ())] * 2
    assert metric("fraud_rule_errors_total", rule="overflow") == before + 4
    lines = [r.getMessage() for r in caplog.records if "overflow" in r.getMessage()]
    assert len(lines) == 1 and "did not fire" in lines[0]
    assert "4000123412341234" not in caplog.text


# --- in the pipeline and the worker ------------------------------------------------------


def test_the_pipeline_applies_the_rules_after_the_model_and_alerts_on_them(
    models: ModelHolder, rules_file: Path
) -> None:
    p = pipeline(models)
    p.rules = RulesHolder(rules_file)
    asyncio.run(decide(p, messages(tx(1, amount=20.0), tx(2, amount=9000.0))))
    decisions = sink_of(p).records("decisions")
    version = version_of(BIG)
    assert [(d["transaction_id"], d["rules"], d["rules_version"]) for d in decisions] == [
        ("tx-1", [], version), ("tx-2", ["big-amount"], version)
    ]
    assert decisions[1]["action"] == "decline"
    assert "tx-2" in [a["transaction_id"] for a in sink_of(p).records("alerts")]


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(env="development", model_dir=ROOT / "models",  # type: ignore[arg-type]
                    data_dir=tmp_path / "w", **values)


def test_the_worker_starts_with_its_rules_and_refuses_rules_that_do_not_compile(
    tmp_path: Path, rules_file: Path
) -> None:
    worker = build_worker(_settings(tmp_path, rules_file=rules_file))
    assert worker.rules.rules is not None and worker.pipeline.rules is worker.rules
    assert build_worker(_settings(tmp_path)).rules.rules is None
    rules_file.write_bytes(BROKEN)
    with pytest.raises(StartupError, match=r"rules refused: .*rules.yaml:3:27: rule 'broken'"):
        build_worker(_settings(tmp_path, rules_file=rules_file))
