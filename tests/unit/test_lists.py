"""Allow and block lists, the pure parts: declared in the rules file (refused with the
position when wrong), named only as ``<field> in <list>``, membership of the declared field's
value; the change message (service.lists: parsed, refused with the field, written)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from fraudcore import FEATURE_NAMES, Transaction
from fraudcore.errors import InvalidEvent
from fraudrules import RulesError, list_text, parse_rules
from service.lists import ListChange, Membership, encode_change, parse_change

T = datetime(2025, 3, 1, 12, tzinfo=UTC)
ROW = [0.0] * len(FEATURE_NAMES)
CARD = "4111111111111111"

RULES = b"""lists:
  blocked_cards: card_id
  trusted_terminals: terminal_id
  blocked_devices: extra.device
rules:
  - id: blocked-card
    when: card_id in blocked_cards
    action: decline
  - id: trusted-terminal
    when: terminal_id in trusted_terminals
    action: allow
  - id: blocked-device
    when: has(extra.device) && extra.device in blocked_devices
    action: review
"""


def tx(card: str = CARD, terminal: str = "T-1", **extra: object) -> Transaction:
    return Transaction("tx-1", card, terminal, 20.0, T, extra)


def fired(content: bytes, transaction: Transaction, lists: dict[str, set[str]]) -> list[str]:
    evaluation = parse_rules(content).evaluate(transaction, ROW, 0.1, lists)
    assert not evaluation.failed, evaluation.failed
    return [r.id for r in evaluation.fired]


def refusal(content: bytes) -> RulesError:
    with pytest.raises(RulesError) as caught:
        parse_rules(content, source="rules.yaml")
    return caught.value


NO_LISTS: dict[str, set[str]] = {"blocked_cards": set(), "trusted_terminals": set(),
                                 "blocked_devices": set()}


# --- declared in the rules file ----------------------------------------------------------


def test_declared_lists_and_the_lists_the_rules_name() -> None:
    ruleset = parse_rules(RULES)
    assert dict(ruleset.lists) == {"blocked_cards": "card_id", "trusted_terminals": "terminal_id",
                                   "blocked_devices": "extra.device"}
    assert [(u.name, u.path) for u in ruleset.uses] == [
        ("blocked_cards", "card_id"), ("trusted_terminals", "terminal_id"),
        ("blocked_devices", "extra.device")]
    declared_only = parse_rules(b"lists:\n  spare: terminal_id\nrules:\n")
    assert dict(declared_only.lists) == {"spare": "terminal_id"} and declared_only.uses == ()


def test_membership_is_of_the_declared_field_s_value() -> None:
    assert fired(RULES, tx(), NO_LISTS) == []
    assert fired(RULES, tx(), {**NO_LISTS, "blocked_cards": {CARD}}) == ["blocked-card"]
    # the terminal list holds terminal ids: a card id in it says nothing about the card
    assert fired(RULES, tx(), {**NO_LISTS, "trusted_terminals": {CARD}}) == []
    assert fired(RULES, tx(terminal="T-9"), {**NO_LISTS, "trusted_terminals": {"T-9"}}) == [
        "trusted-terminal"]
    assert fired(RULES, tx(device="d-1"), {**NO_LISTS, "blocked_devices": {"d-1"}}) == [
        "blocked-device"]
    assert fired(RULES, tx(), {**NO_LISTS, "blocked_devices": {"d-1"}}) == []  # no extra.device


def test_a_rule_gets_only_the_transaction_s_own_value_never_the_list() -> None:
    ruleset = parse_rules(RULES)
    listed = {**NO_LISTS, "blocked_cards": {CARD, "4000000000000002"}}
    variables = ruleset.variables(tx(), ROW, 0.1, listed)
    assert variables["blocked_cards"] == [CARD]
    assert ruleset.variables(tx(card="4999"), ROW, 0.1, listed)["blocked_cards"] == []


def test_an_extra_number_is_matched_by_its_digits_other_kinds_never() -> None:
    content = b"lists:\n  codes: extra.code\nrules:\n  - id: c\n    when: extra.code in codes\n" \
              b"    action: review\n"
    assert fired(content, tx(code=5411), {"codes": {"5411"}}) == ["c"]
    assert fired(content, tx(code="5411"), {"codes": {"5411"}}) == ["c"]
    assert fired(content, tx(code=54.11), {"codes": {"54.11"}}) == []
    assert fired(content, tx(code=True), {"codes": {"True", "true", "1"}}) == []
    assert [list_text(v) for v in ("a", "", 7, -7, True, 1.5, None, {"a": 1})] == [
        "a", None, "7", "-7", None, None, None, None]


def test_evaluating_rules_that_read_lists_without_them_is_a_mistake_said_at_once() -> None:
    with pytest.raises(ValueError, match=r"the rules read lists \(blocked_cards"):
        parse_rules(RULES).evaluate(tx(), ROW, 0.1)


@pytest.mark.parametrize(
    ("content", "position", "why"),
    [
        (b"lists:\n  blocked_cards: amount\nrules:\n", (2, 18),
         "list 'blocked_cards': the field must be a text field"),
        (b"lists:\n  blocked_cards: hour\nrules:\n", (2, 18), "must be a text field"),
        (b"lists:\n  blocked_cards: extra.\nrules:\n", (2, 18), "or extra.<key>"),
        (b"lists:\n  blocked_cards: extra.a-b\nrules:\n", (2, 18), "or extra.<key>"),
        (b"lists:\n  blocked_cards: [card_id]\nrules:\n", (2, 18), "must be a text field"),
        (b"lists:\n  Blocked: card_id\nrules:\n", (2, 3), "list name 'Blocked' must be"),
        (b"lists:\n  amount: card_id\nrules:\n", (2, 3), "not a field's name"),
        (b"lists:\n  in: card_id\nrules:\n", (2, 3), "a word of CEL"),
        (b"lists:\n  a: card_id\n  a: terminal_id\nrules:\n", (3, 3), "key 'a' given twice"),
        (b"lists:\n  - card_id\nrules:\n", (2, 3), "`lists` must be a mapping"),
        (b"list:\n  a: card_id\nrules:\n", (1, 1), "unknown key 'list' (the file has `lists` "
         "and `rules`)"),
    ],
)
def test_a_wrong_declaration_is_refused_with_its_position(
    content: bytes, position: tuple[int, int], why: str
) -> None:
    error = refusal(content)
    assert (error.line, error.column) == position
    assert why in str(error)
    assert str(error).startswith(f"rules.yaml:{position[0]}:{position[1]}:")


def test_a_rule_naming_an_undeclared_list_is_refused_where_it_names_it() -> None:
    error = refusal(b"rules:\n  - id: b\n    when: card_id in blocked_cards\n    action: decline\n")
    assert (error.rule_id, error.line, error.column) == ("b", 3, 22)
    assert "unknown name 'blocked_cards'" in str(error) and "declared under `lists:`" in str(error)


@pytest.mark.parametrize(
    ("when", "column"),
    [
        ("terminal_id in blocked_cards", 26),  # another field's value
        ("size(blocked_cards) > 0", 16),
        ("blocked_cards == []", 11),
        ("card_id in blocked_cards || 'x' in blocked_cards", 46),  # the second use
        ("card_id in blocked_cards.map(x, x)", 22),
    ],
)
def test_a_list_is_named_only_as_its_field_in_the_list(when: str, column: int) -> None:
    error = refusal(b"lists:\n  blocked_cards: card_id\nrules:\n  - id: b\n"
                    + f"    when: {when}\n    action: decline\n".encode())
    assert (error.rule_id, error.line, error.column) == ("b", 5, column)
    assert "list 'blocked_cards' holds card_id values: name it as `card_id in blocked_cards`" \
        in str(error)


def test_the_usual_forms_are_accepted() -> None:
    content = (b"lists:\n  blocked_cards: card_id\n  bad: extra.device\nrules:\n"
               b"  - id: a\n    when: '!(card_id in blocked_cards) && amount > 1'\n"
               b"    action: review\n"
               b"  - id: b\n    when: |\n      card_id in blocked_cards\n"
               b"        || (has(extra.device) && extra.device in bad)\n    action: decline\n"
               b"  - id: c\n    when: card_id  in  blocked_cards && 'blocked_cards' != ''\n"
               b"    action: decline\n")
    ruleset = parse_rules(content)
    assert [r.id for r in ruleset.rules] == ["a", "b", "c"]
    assert fired(content, tx(device="d"), {"blocked_cards": {CARD}, "bad": set()}) == ["b", "c"]


def test_the_declarations_are_part_of_the_version() -> None:
    assert parse_rules(RULES).version != parse_rules(RULES.replace(b"extra.device",
                                                                   b"extra.phone")).version


# --- membership ---------------------------------------------------------------------------


def test_membership_ignores_expired_entries_and_hashes_card_ids() -> None:
    entries = {"a": 0.0, "b": 100.0, "tag-of-c": 0.0}
    at = Membership(entries, now=99.0)
    assert "a" in at and "b" in at and "c" not in at and 3 not in at
    assert "b" not in Membership(entries, now=100.0)  # expired at its expiry
    hashed = Membership(entries, now=0.0, key=lambda card: f"tag-of-{card}")
    assert "c" in hashed and "tag-of-c" not in hashed and "a" not in hashed


# --- the change message ------------------------------------------------------------------


def test_a_change_is_parsed_and_written_back_the_same() -> None:
    raw = {"list": "blocked_cards", "op": "add", "value": CARD,
           "expires_at": "2026-12-31T01:00:00+01:00", "reason": "chargeback 1182", "by": "alice",
           "sent_at": "2026-06-01T09:00:00Z"}
    change = parse_change(orjson.dumps(raw))
    assert change == ListChange("blocked_cards", "add", CARD,
                                datetime(2026, 12, 31, tzinfo=UTC).timestamp(), "chargeback 1182",
                                "alice", datetime(2026, 6, 1, 9, tzinfo=UTC).timestamp())
    assert parse_change(encode_change(change)) == change
    written = orjson.loads(encode_change(change))
    assert written["expires_at"] == "2026-12-31T00:00:00+00:00"
    minimal = parse_change(b'{"list": "t", "op": "remove", "value": "T-1"}')
    assert minimal == ListChange("t", "remove", "T-1")
    assert orjson.loads(encode_change(minimal)) == {"list": "t", "op": "remove", "value": "T-1"}
    assert parse_change(b'{"list": "t", "op": "add", "value": "x", "expires_at": null}'
                        ).expires_at == 0.0
    assert parse_change(b'{"list": "t", "op": "add", "value": 4111111111111111}').value == CARD


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (None, "empty message: a list change needs a JSON object value"),
        (b"{", "not valid JSON"),
        (b"[]", "a list change must be a JSON object"),
        (b'{"op": "add", "value": "x"}', "list: must be a non-empty text"),
        (b'{"list": "Blocked", "op": "add", "value": "x"}', "list: a list's name is 1-64"),
        (b'{"list": "b", "op": "ad", "value": "x"}', "op: must be add or remove"),
        (b'{"list": "b", "value": "x"}', "op: must be add or remove"),
        (b'{"list": "b", "op": "add"}', "value: must be a non-empty text"),
        (b'{"list": "b", "op": "add", "value": "  "}', "value: must be a non-empty text"),
        (b'{"list": "b", "op": "add", "value": true}', "value: must be a non-empty text"),
        (b'{"list": "b", "op": "add", "value": 41.5}', "value: must be a non-empty text"),
        (b'{"list": "b", "op": "add", "value": "T-1\\n"}', "value: holds a control character"),
        (b'{"list": "b", "op": "add", "value": "' + b"x" * 257 + b'"}',
         "value: longer than 256 characters"),
        (b'{"list": "b", "op": "add", "value": "x", "expires": "2030-01-01T00:00:00Z"}',
         "expires: unknown field (a list change has list, op, value, expires_at"),
        (b'{"list": "b", "op": "add", "value": "x", "expires_at": "2030-01-01T00:00:00"}',
         "expires_at: give the offset"),
        (b'{"list": "b", "op": "add", "value": "x", "expires_at": "next week"}',
         "expires_at: 'next week' is not an ISO 8601 time"),
        (b'{"list": "b", "op": "add", "value": "x", "expires_at": 17}',
         "expires_at: must be an ISO 8601 time"),
        (b'{"list": "b", "op": "remove", "value": "x", "expires_at": "2030-01-01T00:00:00Z"}',
         "expires_at: only an add has an expiry"),
        (b'{"list": "b", "op": "add", "value": "x", "reason": 1}', "reason: must be a non-empty"),
        (b'{"list": "b", "op": "add", "value": "x", "reason": "' + b"r" * 501 + b'"}',
         "reason: longer than 500 characters"),
        (b'{"list": "b", "op": "add", "value": "x", "sent_at": "yesterday"}', "sent_at: "),
    ],
)
def test_a_bad_change_is_refused_with_the_field_first(payload: bytes | None, why: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_change(payload)
    assert str(caught.value).startswith(why)


def test_the_analysts_doc_example_compiles_and_its_messages_are_changes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "lists.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    ruleset = parse_rules(example.encode())
    assert dict(ruleset.lists) == {"blocked_cards": "card_id", "trusted_terminals": "terminal_id",
                                   "blocked_countries": "country",
                                   "blocked_devices": "extra.device_id"}
    assert [r.id for r in ruleset.rules] == ["blocked-card", "trusted-terminal",
                                             "device-seen-in-fraud"]
    messages = doc.split("```json\n", 1)[1].split("```", 1)[0]
    changes = [parse_change(m.encode()) for m in messages.replace("\n ", " ").splitlines()]
    assert [(c.list, c.op) for c in changes] == [("blocked_cards", "add"),
                                                 ("blocked_cards", "remove")]
