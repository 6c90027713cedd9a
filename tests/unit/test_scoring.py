"""service.scoring: the shadow of a challenger never changes an action, reasons only on the
decisions that do not approve, and neither holds a batch when it fails.

The models are stand-ins answering fixed scores, with the shipped model's metadata (pure
code under test: what the scoring does with what they answer)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from fraudcore import FEATURE_NAMES, Thresholds, Transaction
from fraudrules import parse_rules
from fraudrules.ruleset import RuleSet
from service.model import Model, ModelHolder
from service.records import Decision
from service.scoring import score_batch

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
N = len(FEATURE_NAMES)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def live() -> Model:
    """Scores 0.01 (approve under the shipped thresholds) unless told otherwise."""
    shipped = ModelHolder(ROOT / "models").model
    assert shipped.info.thresholds.review > 0.01
    return Model(shipped.info, FixedSession([0.01] * 10))  # type: ignore[arg-type]


class FixedSession:
    """An onnxruntime session that answers ``scores`` as fraud probabilities."""

    def __init__(self, scores: list[float] | Exception) -> None:
        self.scores = scores
        self.calls = 0

    def run(self, outputs: object, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        if isinstance(self.scores, Exception):
            raise self.scores
        (rows,) = inputs.values()
        p = np.asarray(self.scores[: len(rows)], dtype=np.float32)
        return [np.stack([1.0 - p, p], axis=1)]


class FixedExplainer:
    """Contributions of feature ``i`` equal to ``weights[i]`` for every row asked for."""

    def __init__(self, weights: list[float] | Exception) -> None:
        self.weights = weights
        self.rows_asked: list[int] = []

    def explain(self, rows: np.ndarray) -> np.ndarray:
        self.rows_asked.append(len(rows))
        if isinstance(self.weights, Exception):
            raise self.weights
        return np.tile(np.asarray(self.weights, dtype=np.float32), (len(rows), 1))


@dataclass
class Models:
    model: Model
    challenger: Model | None = None


@dataclass
class Rules:
    rules: RuleSet | None


def challenger(live: Model, scores: list[float] | Exception, *, version: str = "challenger-1",
               review: float = 0.5, decline: float = 0.9) -> Model:
    info = replace(live.info, version=version, thresholds=Thresholds(review, decline))
    return Model(info, FixedSession(scores))  # type: ignore[arg-type]


def batch(amounts: list[float]) -> tuple[list[list[float]], list[tuple[Transaction, bool]]]:
    rows, scored = [], []
    for i, amount in enumerate(amounts):
        row = [0.0] * N
        row[0] = amount
        rows.append(row)
        scored.append((Transaction(f"tx-{i}", f"card-{i}", "T-1", amount, T), False))
    return rows, scored


def decide(models: Models, amounts: list[float], rules: RuleSet | None = None) -> list[Decision]:
    rows, scored = batch(amounts)
    return score_batch(models, Rules(rules), rows, scored, now=T.timestamp(), degraded=False,
                       keep_features=False)


def test_without_a_challenger_there_is_no_shadow(live: Model) -> None:
    decisions = decide(Models(live), [10.0, 20.0])
    assert [d.shadow for d in decisions] == [None, None]
    assert b'"shadow"' not in decisions[0].to_json()


def test_the_shadow_never_changes_the_action(live: Model) -> None:
    amounts = [10.0, 20.0, 30.0]
    alone = decide(Models(live), amounts)
    before = metric("fraud_shadow_decisions_total", action="approve", shadow_action="decline")
    shadowed = decide(Models(live, challenger(live, [0.95, 0.6, 0.1])), amounts)
    assert [(d.score, d.action, d.model_version) for d in shadowed] == [
        (d.score, d.action, d.model_version) for d in alone
    ]
    assert [d.action for d in alone] == ["approve"] * 3
    assert [(s.model_version, s.action) for s in (d.shadow for d in shadowed) if s] == [
        ("challenger-1", "decline"), ("challenger-1", "review"), ("challenger-1", "approve")
    ]
    assert [s.score for s in (d.shadow for d in shadowed) if s] == pytest.approx([0.95, 0.6, 0.1])
    after = metric("fraud_shadow_decisions_total", action="approve", shadow_action="decline")
    assert after - before == 1
    record = orjson.loads(shadowed[0].to_json())
    assert record["shadow"] == {"model_version": "challenger-1", "score": pytest.approx(0.95),
                                "action": "decline"}
    assert record["action"] == "approve"


def test_the_shadow_applies_the_same_rules_on_the_challenger_s_score(live: Model) -> None:
    rules = parse_rules(b"""rules:
  - id: high-score
    when: score > 0.7
    action: decline
  - id: small
    when: amount < 15
    action: review
""")
    decisions = decide(Models(live, challenger(live, [0.8, 0.2], review=0.95, decline=0.99)),
                       [10.0, 20.0], rules)
    # Live: scored 0.01: only the amount rule fires on the first.
    assert [(d.action, d.rules) for d in decisions] == [("review", ("small",)), ("approve", ())]
    # Shadow: the challenger's 0.8 fires the score rule; its own thresholds say approve.
    assert [d.shadow.action for d in decisions if d.shadow] == ["decline", "approve"]


def test_rules_that_do_not_read_the_score_are_not_evaluated_again(live: Model) -> None:
    rules = parse_rules(b"rules:\n  - id: small\n    when: amount < 15\n    action: allow\n")
    decisions = decide(Models(live, challenger(live, [0.99, 0.99])), [10.0, 20.0], rules)
    assert [d.shadow.action for d in decisions if d.shadow] == ["approve", "decline"]


def test_a_failing_challenger_decides_without_shadow_and_never_raises(live: Model) -> None:
    before = metric("fraud_shadow_failures_total")
    decisions = decide(Models(live, challenger(live, RuntimeError("fell over"))), [10.0, 20.0])
    assert [d.shadow for d in decisions] == [None, None]
    assert [d.action for d in decisions] == [d.action for d in decide(Models(live), [10.0, 20.0])]
    assert metric("fraud_shadow_failures_total") - before == 1


def explained(live: Model, explainer: FixedExplainer) -> Model:
    return replace(live, explainer=explainer)


def test_reasons_only_for_the_decisions_that_do_not_approve(live: Model) -> None:
    weights = [0.0] * N
    weights[3], weights[7], weights[1], weights[5] = 0.2, 0.05, -0.3, 0.1
    explainer = FixedExplainer(weights)
    rules = parse_rules(b"rules:\n  - id: big\n    when: amount > 500\n    action: decline\n")
    decisions = decide(Models(explained(live, explainer)), [10.0, 900.0, 20.0, 800.0], rules)
    assert [d.action for d in decisions] == ["approve", "decline", "approve", "decline"]
    assert explainer.rows_asked == [2]  # one call, the two declines only
    assert [d.reasons is None for d in decisions] == [True, False, True, False]
    reasons = decisions[1].reasons
    assert reasons == (
        {"feature": FEATURE_NAMES[3], "value": 0.0, "contribution": 0.2},
        {"feature": FEATURE_NAMES[5], "value": 0.0, "contribution": 0.1},
        {"feature": FEATURE_NAMES[7], "value": 0.0, "contribution": 0.05},
    )
    record = orjson.loads(decisions[3].to_json())
    assert [r["feature"] for r in record["reasons"]] == [FEATURE_NAMES[i] for i in (3, 5, 7)]
    assert "reasons" not in orjson.loads(decisions[0].to_json())


def test_an_approving_batch_asks_the_explainer_nothing(live: Model) -> None:
    explainer = FixedExplainer([0.1] * N)
    decisions = decide(Models(explained(live, explainer)), [10.0, 20.0])
    assert [d.action for d in decisions] == ["approve", "approve"]
    assert explainer.rows_asked == []


def test_failing_reasons_decide_without_them(live: Model) -> None:
    before = metric("fraud_reason_failures_total")
    rules = parse_rules(b"rules:\n  - id: big\n    when: amount > 500\n    action: review\n")
    decisions = decide(Models(explained(live, FixedExplainer(ValueError("bad")))), [900.0], rules)
    assert decisions[0].action == "review" and decisions[0].reasons is None
    assert metric("fraud_reason_failures_total") - before == 1


def test_the_shadow_sees_the_lists_the_live_rules_saw(live: Model) -> None:
    """Rules that read the score and a list: evaluated again for the shadow with the
    batch's list contents (without them evaluation raises, which would hold the batch)."""
    rules = parse_rules(b"""lists:
  blocked_terminals: terminal_id
rules:
  - id: blocked
    when: terminal_id in blocked_terminals
    action: decline
  - id: high-score
    when: score > 0.7
    action: review
""")
    decisions = decide(Models(live, challenger(live, [0.8, 0.1], review=0.95, decline=0.99)),
                       [10.0, 20.0], rules)
    assert [d.action for d in decisions] == ["approve", "approve"]  # the lists read empty
    assert [d.shadow.action for d in decisions if d.shadow] == ["review", "approve"]



def test_anything_failing_in_the_shadow_decides_without_it(live: Model) -> None:
    """Not only the challenger's call: a challenger that answers one score for two rows
    fails further on (pairing scores with decisions), and the batch is still decided."""
    before = metric("fraud_shadow_failures_total")
    short = challenger(live, [0.9])  # FixedSession answers at most one score
    decisions = decide(Models(live, short), [10.0, 20.0])
    assert [d.shadow for d in decisions] == [None, None]
    assert [d.action for d in decisions] == ["approve", "approve"]
    assert metric("fraud_shadow_failures_total") - before == 1


def test_anything_failing_in_the_reasons_decides_without_them(live: Model) -> None:
    before = metric("fraud_reason_failures_total")
    explainer = FixedExplainer([0.1] * (N - 1))  # one contribution short: top_reasons refuses
    rules = parse_rules(b"rules:\n  - id: big\n    when: amount > 500\n    action: review\n")
    decisions = decide(Models(explained(live, explainer)), [900.0], rules)
    assert decisions[0].action == "review" and decisions[0].reasons is None
    assert metric("fraud_reason_failures_total") - before == 1


def test_only_the_rules_that_read_the_score_are_evaluated_again() -> None:
    rules = parse_rules(b"""lists:
  blocked_terminals: terminal_id
rules:
  - id: blocked
    when: terminal_id in blocked_terminals
    action: decline
  - id: band
    when: score > 0.5 && amount > 100
    action: review
  - id: night
    when: hour < 6
    action: review
""")
    again = rules.reading("score")
    assert [r.id for r in again.rules] == ["band"]
    assert {f.name for f in again.fields} == {"score", "amount"}
    assert again.uses == () and again.version == rules.version
    assert [r.id for r in rules.reading("blocked_terminals").rules] == ["blocked"]
    assert {u.name for u in rules.reading("blocked_terminals").uses} == {"blocked_terminals"}
