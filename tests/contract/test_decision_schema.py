"""Decisions with a shadow and with reasons match the documented schema; without a
challenger or an explainer they carry neither field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from fraudcore import FEATURE_NAMES, Transaction
from fraudmodel.reasons import Reason
from service.records import Decision, Shadow

SCHEMA = Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "decision.schema.json").read_text()
))
TX = Transaction("t1", "c1", "term", 12.5, datetime(2018, 8, 8, 12, tzinfo=UTC))


def test_a_decision_with_shadow_and_reasons_matches_the_schema() -> None:
    decision = Decision(
        TX, 0.91, "decline", "abc", 1.5e9,
        reasons=(Reason(feature=FEATURE_NAMES[0], value=912.0, contribution=0.41),
                 Reason(feature=FEATURE_NAMES[14], value=None, contribution=0.1)),
        shadow=Shadow("def", 0.42, "review"),
    )
    document = orjson.loads(decision.to_json())
    SCHEMA.validate(document)
    assert document["shadow"] == {"model_version": "def", "score": 0.42, "action": "review"}
    assert document["reasons"][0] == {"feature": "amount", "value": 912.0, "contribution": 0.41}


def test_without_them_a_decision_has_neither_field() -> None:
    document = orjson.loads(Decision(TX, 0.1, "approve", "abc", 1.5e9).to_json())
    SCHEMA.validate(document)
    assert "shadow" not in document and "reasons" not in document


def test_the_schema_refuses_a_wrong_shadow_or_reason() -> None:
    good = orjson.loads(Decision(TX, 0.91, "decline", "abc", 1.5e9,
                                 reasons=(Reason(feature="amount", value=912.0,
                                                 contribution=0.41),),
                                 shadow=Shadow("def", 0.42, "review")).to_json())
    for path, value in [(("shadow", "action"), "allow"), (("shadow", "score"), 1.5),
                        (("reasons", 0, "feature"), "nope"),
                        (("reasons", 0, "contribution"), -0.1)]:
        document = json.loads(json.dumps(good))
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert not SCHEMA.is_valid(document), path
