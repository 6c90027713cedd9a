"""fraudrules: the rules file's format, compilation, refusal with the position, evaluation
and precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import product
from pathlib import Path

import pytest

from fraudcore import FEATURE_NAMES, Transaction
from fraudrules import FIELDS, RulesError, combine, load_rules, parse_rules, version_of

T = datetime(2025, 3, 1, 3, 30, tzinfo=UTC)  # a Saturday, 03:30
ROW = [0.0] * len(FEATURE_NAMES)


def tx(amount: float = 20.0, **extra: object) -> Transaction:
    return Transaction("tx-1", "4111111111111111", "T-1", amount, T, extra)


def rules(*lines: str) -> bytes:
    return ("rules:\n" + "".join(f"{line}\n" for line in lines)).encode()


def rule(rule_id: str, when: str, action: str = "decline") -> tuple[str, ...]:
    return (f"  - id: {rule_id}", f"    when: {when}", f"    action: {action}")


def block(rule_id: str, when: str, action: str = "decline") -> tuple[str, ...]:
    """A rule whose expression is a literal block (any quotes inside)."""
    return (f"  - id: {rule_id}", "    when: |", f"      {when}", f"    action: {action}")


def fired(content: bytes, transaction: Transaction | None = None, *, score: float = 0.1,
          row: list[float] | None = None) -> list[str]:
    evaluation = parse_rules(content).evaluate(transaction or tx(), row or ROW, score)
    assert not evaluation.failed
    return [r.id for r in evaluation.fired]


def refusal(content: bytes) -> RulesError:
    with pytest.raises(RulesError) as caught:
        parse_rules(content, source="rules.yaml")
    return caught.value


# --- the format ------------------------------------------------------------------------


def test_the_issue_example_declines_a_big_amount() -> None:
    content = rules(*rule("big-amount", "amount > 5000"))
    ruleset = parse_rules(content)
    assert [(r.id, r.when, r.action, r.line) for r in ruleset.rules] == [
        ("big-amount", "amount > 5000", "decline", 2)
    ]
    assert fired(content, tx(6000.0)) == ["big-amount"]
    assert fired(content, tx(5000.0)) == []


def test_the_version_is_the_hash_of_the_bytes_and_only_named_fields_are_built() -> None:
    content = rules(*rule("a", "amount > 1.0 && score > 0.5"), *rule("b", "hour < 4", "review"))
    ruleset = parse_rules(content)
    assert ruleset.version == version_of(content) and len(ruleset.version) == 16
    assert parse_rules(content + b"# a comment\n").version != ruleset.version
    assert [f.name for f in ruleset.fields] == ["amount", "hour", "score"]


@pytest.mark.parametrize("content", [b"", b"rules:\n", b"rules: []\n", b"# nothing yet\n"])
def test_an_empty_file_or_list_is_no_rules(content: bytes) -> None:
    ruleset = parse_rules(content)
    assert ruleset.rules == () and ruleset.evaluate(tx(), ROW, 0.5).fired == ()


def test_every_field_can_be_read() -> None:
    assert set(FEATURE_NAMES) <= set(FIELDS)
    assert {"transaction_id", "card_id", "terminal_id", "amount", "timestamp", "hour",
            "weekday", "extra", "score"} <= set(FIELDS)
    row = [float(i) for i in range(len(FEATURE_NAMES))]
    checks = {
        "tid": 'transaction_id == "tx-1"',
        "card": 'card_id.startsWith("4111")',
        "terminal": 'terminal_id in ["T-1", "T-2"]',
        "time": "timestamp > timestamp('2025-01-01T00:00:00Z')",
        "hour": "hour == 3",
        "weekday": "weekday == 6",  # Saturday: ISO, 1 = Monday
        "extra": 'has(extra.channel) && extra.channel == "online"',
        "score": "score > 0.8",
        **{f"f{i}": f"{name} == {float(row[i])}" for i, name in enumerate(FEATURE_NAMES)
           if name != "amount"},
    }
    content = rules(*(line for rid, when in checks.items() for line in block(rid, when)))
    assert fired(content, tx(0.0, channel="online"), score=0.9, row=row) == list(checks)


def test_hour_and_weekday_are_read_in_the_events_own_offset() -> None:
    local = Transaction("t", "c", "T", 1.0, datetime(2025, 3, 2, 23, 0,
                                                     tzinfo=timezone(timedelta(hours=-5))))
    content = rules(*rule("late-sunday", "hour == 23 && weekday == 7"))
    assert fired(content, local) == ["late-sunday"]


def test_comparisons_with_whole_numbers_work_on_doubles() -> None:
    content = rules(*rule("count", "tx_count_by_card_1h >= 3 && amount < 100"))
    row = list(ROW)
    row[FEATURE_NAMES.index("tx_count_by_card_1h")] = 3.0
    assert fired(content, tx(50.0), row=row) == ["count"]


def test_a_multi_line_expression_in_a_block() -> None:
    content = rules("  - id: online-at-night", "    when: |", "      hour < 6 &&",
                    '      has(extra.channel) && extra.channel == "online"',
                    "    action: review", "    description: card not present, at night")
    ruleset = parse_rules(content)
    assert ruleset.rules[0].description == "card not present, at night"
    assert fired(content, tx(channel="online")) == ["online-at-night"]
    assert fired(content, tx(channel="pos")) == []


# --- refusal, with the rule and the position -------------------------------------------


def test_a_syntax_error_names_the_rule_and_its_line_and_column_in_the_file() -> None:
    error = refusal(rules(*rule("ok", "amount > 1"), *rule("big-amount", "amount > 5000 &&")))
    assert (error.rule_id, error.line, error.column) == ("big-amount", 6, 27)
    assert str(error).startswith("rules.yaml:6:27: rule 'big-amount': `when` line 1 column 17:")
    assert "Syntax error" in str(error)
    assert str(error).endswith("    amount > 5000 &&\n                    ^")


def test_a_syntax_error_in_a_block_is_placed_on_its_line() -> None:
    error = refusal(rules("  - id: b", "    when: |", "      amount > 1 &&", "        (score < ]",
                          "    action: review"))
    assert (error.rule_id, error.line, error.column) == ("b", 5, 18)
    assert "`when` line 2 column 12" in str(error)


def test_a_quoted_expression_is_placed_past_its_quote() -> None:
    error = refusal(rules(*rule("q", "'amount > 1 && )'")))
    assert (error.line, error.column) == (3, 26)


def test_an_unknown_name_is_refused_where_it_is_first_used() -> None:
    error = refusal(rules(*rule("typo", "'terminal_id == \"amonut\" && amonut > 1.0'")))
    assert (error.rule_id, error.line, error.column) == ("typo", 3, 39)
    assert "unknown name 'amonut'" in str(error)


def test_names_bound_by_a_macro_are_not_fields() -> None:
    content = rules(*rule("m", "'[1.0, 2.0].exists(x, x > amount)'"))
    assert fired(content, tx(1.5)) == ["m"]
    assert "unknown name 'y'" in str(refusal(rules(*rule("m", "'[1, 2].exists(x, x > y)'"))))


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("amount * 2 > 5000.0", "Unsupported operation: float * int"),
        ('terminal_id > 5', "TypeError"),
        ("amount", "gives 0.0, not true or false"),
        ("'\"text\"'", "not true or false"),
        ("max(amount, 1.0) > 2.0", "unknown function"),
    ],
)
def test_a_rule_that_fails_on_every_test_transaction_is_refused(when: str, why: str) -> None:
    error = refusal(rules(*rule("ok", "amount > 1"), *rule("bad", when)))
    assert (error.rule_id, error.line) == ("bad", 6)
    assert why in str(error)


@pytest.mark.parametrize(
    "when",
    [
        "amount / amount_mean_by_card_30d > 3.0",  # 0.0 / 0.0 on one test transaction
        "int(transaction_id) > 3",  # not a number on both: decided per transaction
        "extra.channel == 'online'",  # a missing key fails; with it, it works
    ],
)
def test_errors_that_depend_on_the_values_are_left_to_run_time(when: str) -> None:
    ruleset = parse_rules(rules(*block("v", when)))
    evaluation = ruleset.evaluate(tx(0.0), ROW, 0.1)
    assert evaluation.fired == () and [r.id for r, _ in evaluation.failed] == ["v"]


@pytest.mark.parametrize(
    ("content", "rule_id", "position", "why"),
    [
        (b"rules: [\n", None, (2, 1), "not valid YAML"),
        (b"rule:\n  - id: a\n", None, (1, 1), "unknown key 'rule'"),
        (b"- a\n", None, (1, 1), "must be a mapping with a `rules` list"),
        (b"rules: 5\n", None, (1, 8), "`rules` must be a list"),
        (b"rules:\n  - when: x\n", None, (2, 5), "rule 1 has no `id`"),
        (rules("  - id: 'a b'", "    when: true", "    action: allow"), None, (2, 9),
         "must be 1-64 letters"),
        (rules("  - id: a", "    whem: amount > 1", "    action: decline"), "a", (3, 5),
         "unknown key 'whem'"),
        (rules("  - id: a", "    action: decline"), "a", (2, 5), "no `when`"),
        (rules(*rule("a", "amount > 1", "block")), "a", (4, 13), "action 'block' is not one"),
        (rules(*rule("a", "amount > 1"), *rule("a", "amount > 2")), "a", (5, 5),
         "defined twice (first at line 2)"),
        (rules("  - id: a", "    id: b", "    when: true", "    action: allow"), None, (3, 5),
         "key 'id' given twice"),
        (rules(*rule("a", "''")), "a", (3, 11), "`when` must be a non-empty text"),
    ],
)
def test_a_file_not_in_the_format_is_refused_with_the_position(
    content: bytes, rule_id: str | None, position: tuple[int, int], why: str
) -> None:
    error = refusal(content)
    assert (error.rule_id, (error.line, error.column)) == (rule_id, position)
    assert why in str(error)
    assert str(error).startswith(f"rules.yaml:{position[0]}:{position[1]}:")


def test_a_file_that_is_not_text_or_cannot_be_read_is_refused(tmp_path) -> None:
    assert "not UTF-8" in str(refusal(b"rules:\n  - id: a\xff\n"))
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")
    path = tmp_path / "rules.yaml"
    path.write_bytes(rules(*rule("a", "amount > 1")))
    assert load_rules(path).source == str(path)


# --- at run time -------------------------------------------------------------------------


def test_a_rule_that_fails_on_a_transaction_does_not_fire_and_says_why() -> None:
    ruleset = parse_rules(rules(*rule("bad", "int(card_id) * 1000000 > 0"),
                                *rule("good", "amount > 1"), *rule("other", "amount > 1e9")))
    evaluation = ruleset.evaluate(tx(), ROW, 0.1)
    assert [r.id for r in evaluation.fired] == ["good"]
    [(failed, reason)] = evaluation.failed
    assert failed.id == "bad" and "overflow" in reason.lower()
    assert "4111111111111111" not in reason  # the card number the message quoted


# --- precedence ------------------------------------------------------------------------


MODEL = ("approve", "review", "decline")


@pytest.mark.parametrize("model", MODEL)
def test_no_rule_leaves_the_models_action(model: str) -> None:
    assert combine(model, []) == model  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "fired", "expected"),
    [
        # allow wins over everything
        *((m, ("allow", *other), "approve") for m in MODEL
          for other in ((), ("decline",), ("review", "approve"))),
        # decline over review and approve
        *((m, ("decline", *other), "decline") for m in MODEL
          for other in ((), ("review",), ("approve",))),
        # review: at least review; a model's decline stays
        ("approve", ("review",), "review"),
        ("review", ("review",), "review"),
        ("decline", ("review",), "decline"),
        # approve overrides the model, not a review rule
        ("decline", ("approve",), "approve"),
        ("review", ("approve",), "approve"),
        ("decline", ("approve", "review"), "review"),
    ],
)
def test_precedence(model: str, fired: tuple[str, ...], expected: str) -> None:
    assert combine(model, fired) == expected  # type: ignore[arg-type]


def test_precedence_is_the_documented_order_on_every_combination() -> None:
    """allow > decline > review > approve > model, but a review rule never lowers the
    model's decline."""
    actions = ("allow", "approve", "review", "decline")
    for model, chosen in product(MODEL, product((False, True), repeat=4)):
        fired = {a for a, on in zip(actions, chosen, strict=True) if on}
        if "allow" in fired:
            expected = "approve"
        elif "decline" in fired:
            expected = "decline"
        elif "review" in fired:
            expected = "decline" if model == "decline" and "approve" not in fired else "review"
        elif "approve" in fired:
            expected = "approve"
        else:
            expected = model
        assert combine(model, fired) == expected, (model, fired)  # type: ignore[arg-type]


def test_the_readme_tells_analysts_every_field_and_action() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Writing a rule", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in FIELDS if f"`{name}`" not in section]
    assert not missing, f"README, Writing a rule, does not name {missing}"
    assert all(f"**{action}**" in section for action in ("allow", "approve", "review", "decline"))
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    ruleset = parse_rules(example.encode())
    late_online = Transaction("t", "c", "T-1", 10.0, T, channel="online")
    row = list(ROW)
    row[FEATURE_NAMES.index("tx_count_by_card_1h")] = 3.0
    assert [r.id for r in ruleset.evaluate(late_online, row, 0.1).fired] == [
        "card-not-present-at-night"
    ]
