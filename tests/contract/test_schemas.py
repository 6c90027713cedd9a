"""The documented JSON Schemas describe what the code reads and writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from fraudcore import FEATURE_NAMES, Transaction, parse_label, parse_transaction
from service.records import Decision, Source, dead_letter

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def schema(name: str) -> Draft202012Validator:
    document = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


@pytest.mark.parametrize(
    ("name", "parse"), [("transaction", parse_transaction), ("label", parse_label)]
)
def test_the_schema_examples_are_valid_and_accepted(name, parse):
    validator = schema(name)
    for example in validator.schema["examples"]:
        validator.validate(example)
        parse(example)


def test_decisions_match_their_schema():
    tx = Transaction("t1", "c1", "term", 12.5, datetime(2018, 8, 8, 12, tzinfo=UTC))
    for features in (None, [0.5] * len(FEATURE_NAMES)):
        decision = Decision(tx, 0.123456789, "review", "abc", 1.5e9, features=features)
        schema("decision").validate(orjson.loads(decision.to_json()))


def test_decisions_with_rules_match_their_schema():
    tx = Transaction("t1", "c1", "term", 12.5, datetime(2018, 8, 8, 12, tzinfo=UTC))
    for fired in ((), ("big-amount",), ("a", "b.c:d-e_f")):
        decision = Decision(tx, 0.5, "decline", "abc", 1.5e9, rules=fired,
                            rules_version="0123456789abcdef")
        schema("decision").validate(orjson.loads(decision.to_json()))
    document = orjson.loads(Decision(tx, 0.5, "decline", "abc", 1.5e9, rules=("a",),
                                     rules_version="0123456789abcdef").to_json())
    del document["rules_version"]
    assert not schema("decision").is_valid(document)  # the two go together


def test_a_decision_missing_a_field_fails_the_schema():
    tx = Transaction("t1", "c1", "term", 12.5, datetime(2018, 8, 8, 12, tzinfo=UTC))
    document = orjson.loads(Decision(tx, 0.5, "approve", "abc", 1.5e9).to_json())
    del document["model_version"]
    assert not schema("decision").is_valid(document)


@pytest.mark.parametrize("payload", [b'{"a": 1}', b"\xff\xfe", b"", b"x" * 70_000])
def test_dead_letters_match_their_schema(payload):
    record = orjson.loads(dead_letter(payload, Source("transactions", 2, 41), "why", at=1.5e9))
    schema("dead-letter").validate(record)
