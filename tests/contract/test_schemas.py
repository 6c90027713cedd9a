"""The documented JSON Schemas describe what the code reads and writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from fraudcore import FEATURE_NAMES, Transaction, parse_label, parse_transaction
from fraudcore.errors import InvalidEvent
from service.lists import ListChange, encode_change, parse_change
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


# -- list changes (docs/lists.md) ----------------------------------------------------------


def test_list_change_examples_are_valid_accepted_and_written_back_valid() -> None:
    validator = schema("list-change")
    for example in validator.schema["examples"]:
        validator.validate(example)
        change = parse_change(orjson.dumps(example))
        validator.validate(orjson.loads(encode_change(change)))
    # what the CLI sends
    sent = ListChange("blocked_cards", "add", "4111", 1.9e9, "why", "me", 1.7e9)
    validator.validate(orjson.loads(encode_change(sent)))


@pytest.mark.parametrize(
    "change",
    [
        {"op": "add", "value": "x"},
        {"list": "Blocked", "op": "add", "value": "x"},
        {"list": "b", "op": "block", "value": "x"},
        {"list": "b", "op": "add"},
        {"list": "b", "op": "add", "value": " "},
        {"list": "b", "op": "add", "value": True},
        {"list": "b", "op": "add", "value": "x" * 257},
        {"list": "b", "op": "add", "value": "a\tb"},
        {"list": "b", "op": "add", "value": "x", "expires": "2030-01-01T00:00:00Z"},
        {"list": "b", "op": "add", "value": "x", "expires_at": "2030-01-01T00:00:00"},
        {"list": "b", "op": "add", "value": "x", "expires_at": 1893456000},
        {"list": "b", "op": "remove", "value": "x", "expires_at": "2030-01-01T00:00:00Z"},
        {"list": "b", "op": "add", "value": "x", "reason": "r" * 501},
        {"list": "b", "op": "add", "value": "x", "by": 7},
    ],
)
def test_a_list_change_the_schema_refuses_the_worker_refuses(change: dict[str, object]) -> None:
    assert not schema("list-change").is_valid(change)
    with pytest.raises(InvalidEvent):
        parse_change(orjson.dumps(change))


@pytest.mark.parametrize(
    "change",
    [
        {"list": "b", "op": "add", "value": 4111111111111111},
        {"list": "b", "op": "add", "value": "x", "expires_at": None, "reason": None},
        {"list": "b", "op": "add", "value": "x", "expires_at": "2030-01-01T00:00:00+0100"},
        {"list": "b", "op": "add", "value": "x", "sent_at": "2030-01-01 00:00:00Z"},
        {"list": "b", "op": "remove", "value": "x", "expires_at": None, "by": ""},
    ],
)
def test_a_list_change_the_schema_accepts_the_worker_accepts(change: dict[str, object]) -> None:
    schema("list-change").validate(change)
    parse_change(orjson.dumps(change))
