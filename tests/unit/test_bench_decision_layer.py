"""Pure parts of the decision-layer bench (fraudtools.bench.decision_layer): its rules file,
the optional fields it adds, the medians and ratios to plain, and the report's table."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest

from fraudcore import FEATURE_NAMES
from fraudrules import FIELDS, parse_rules
from fraudtools.bench.decision_layer import (
    NOT_AVAILABLE,
    RULES,
    VARIANTS,
    Run,
    _plus,
    median,
    rules_yaml,
    summarize,
    with_optional_fields,
)
from fraudtools.bench.report import decision_layer_lines
from service.records import decode_transaction


def _transaction(**fields: object) -> bytes:
    return orjson.dumps({"transaction_id": "17", "card_id": "608", "terminal_id": "42",
                         "amount": 105.55, "timestamp": "2018-04-02T14:01:40+00:00", **fields})


def test_the_rules_file_holds_50_rules_that_all_compile() -> None:
    ruleset = parse_rules(rules_yaml().encode(), source="bench-rules.yaml")
    assert len(ruleset.rules) == len(RULES) == 50
    assert len({rule.id for rule in ruleset.rules}) == 50
    assert all(rule.program is not None for rule in ruleset.rules)
    assert [(r.id, r.action, r.when) for r in ruleset.rules] == list(RULES)
    assert {f.name for f in ruleset.fields} <= set(FIELDS)
    assert not ruleset.uses and not ruleset.lists


def test_every_name_a_rule_reads_is_a_field() -> None:
    words = {w for _, _, when in RULES
             for w in re.findall(r"(?<![\w.\"'])[a-z_][a-z0-9_]*(?![\w\"'(])",
                                 re.sub(r"'[^']*'|\"[^\"]*\"", "", when))}
    assert words - {"in", "extra", "device_id"} <= set(FIELDS)


def test_the_rules_are_an_analyst_s_mix() -> None:
    text = " ".join(when for _, _, when in RULES)
    for name in ("amount", "score", "hour", "weekday", "currency", "mcc", "country", "channel",
                 "tx_count_by_card_1h", "amount_ratio_median_by_card_30d", "terminal_id in [",
                 ".startsWith(", ".matches("):
        assert name in text, name
    features = {n for n in FEATURE_NAMES if n != "amount" and n in text}
    assert len(features) >= 15
    assert {action for _, action, _ in RULES} == {"allow", "approve", "review", "decline"}


def test_the_rules_never_fail_and_mostly_do_not_fire() -> None:
    ruleset = parse_rules(rules_yaml().encode())
    row = [0.0] * len(FEATURE_NAMES)
    row[FEATURE_NAMES.index("tx_count_by_card_30d")] = 40.0
    row[FEATURE_NAMES.index("seconds_since_last_by_card_30d")] = 3_600.0
    for value in (_transaction(),
                  _transaction(currency="EUR", mcc="5411", country="FR", channel="atm"),
                  _transaction(amount=9_000.0, channel="online", device_id="emulator")):
        for score in (0.01, 0.6, 0.99):
            assert ruleset.evaluate(decode_transaction(value), row, score).failed == ()
    assert ruleset.evaluate(decode_transaction(_transaction()), row, 0.01).fired == ()
    ordinary = _transaction(currency="EUR", mcc="5411", country="FR", channel="card_present")
    assert ruleset.evaluate(decode_transaction(ordinary), row, 0.2).fired == ()
    bot = _transaction(amount=9_000.0, channel="online", device_id="emulator")
    fired = {rule.id for rule in ruleset.evaluate(decode_transaction(bot), row, 0.01).fired}
    assert {"big-amount", "emulator"} <= fired  # extra read once has() said it is there


def test_the_optional_fields_are_valid_and_one_in_ten_sends_none() -> None:
    values = [_transaction(transaction_id=str(i)) for i in range(30)]
    out = with_optional_fields(values)
    assert len(out) == 30
    decoded = [decode_transaction(v) for v in out]
    assert [tx.transaction_id for tx in decoded] == [str(i) for i in range(30)]
    bare = [i for i, tx in enumerate(decoded) if tx.channel is None]
    assert bare == [9, 19, 29] and all(out[i] == values[i] for i in bare)
    full = [tx for tx in decoded if tx.channel is not None]
    assert all(tx.currency and tx.mcc and tx.country and not tx.extra for tx in full)
    assert len({tx.channel for tx in full}) == 4 and len({tx.mcc for tx in full}) > 5
    assert with_optional_fields(values) == out  # the same transactions every run


def test_the_parts_of_a_round_add_up() -> None:
    a = Run("rules50", 2, 500, 0.1, 0.05, not_approve=10, fired=2, changed=1, rule_errors=1,
            stages={"rules": 0.02, "model": 0.01}, decided=500)
    b = Run("rules50", 2, 500, 0.3, 0.15, not_approve=30, fired=1, stages={"rules": 0.04},
            decided=499, dead=1)
    both = _plus(a, b)
    assert (both.variant, both.round_no, both.measured, both.decided, both.dead) == (
        "rules50", 2, 1_000, 999, 1)
    assert (both.not_approve, both.fired, both.changed, both.rule_errors) == (40, 3, 1, 1)
    assert both.wall == pytest.approx(0.4) and both.cpu_us == pytest.approx(200.0)
    assert both.tps == pytest.approx(2_500.0)
    assert both.stages["rules"] == pytest.approx(0.06) and both.stages["reasons"] == 0.0


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert math.isnan(median([]))


def _run(variant: str, round_no: int, tps: float, cpu_us: float, **counts: Any) -> Run:
    measured = 1_000
    return Run(variant, round_no, measured, wall=measured / tps, cpu=cpu_us * measured / 1e6,
               **counts)


def _runs(*, reasons: bool = True) -> list[Run]:
    # plain drifts from round to round; each variant is measured beside it
    plain = [(10_000.0, 100.0), (5_000.0, 200.0), (8_000.0, 125.0)]
    runs = []
    for r, (tps, cpu) in enumerate(plain):
        runs.append(_run("plain", r, tps, cpu, not_approve=20,
                         stages={"model": 0.01}))
        runs.append(_run("rules50", r, tps * 0.5, cpu * 2.0, not_approve=30, fired=12,
                         changed=10, stages={"model": 0.01, "rules": 0.1}))
        runs.append(_run("shadow", r, tps * 0.8, cpu * 1.2, not_approve=20, shadowed=1_000))
        if reasons:
            runs.append(_run("reasons", r, tps * (0.95 if r else 0.85), cpu * 1.05,
                             not_approve=20, explained=20, stages={"reasons": 0.002}))
        runs.append(_run("all", r, tps * 0.4, cpu * 2.5, not_approve=30, fired=12, changed=10,
                         explained=30))
    return runs


def test_the_ratios_are_medians_of_each_round_s_ratio_to_plain() -> None:
    variants = summarize(_runs(), explains=True)["variants"]
    plain, rules = variants["plain"], variants["rules50"]
    assert (plain["tps_median"], plain["tps_min"], plain["tps_max"]) == (8_000, 5_000, 10_000)
    assert plain["cpu_us_median"] == 125.0 and plain["tps_vs_plain"] == 1.0
    # the medians' ratio would be 4,000 / 8,000 too, but a drifting round does not matter:
    assert rules["tps_vs_plain"] == 0.5 and rules["cpu_vs_plain"] == 2.0
    assert rules["tps_median"] == 4_000 and rules["cpu_us_median"] == 250.0
    assert variants["shadow"]["tps_vs_plain"] == 0.8
    assert variants["reasons"]["tps_vs_plain"] == 0.95  # the median of 0.85, 0.95, 0.95
    assert variants["reasons"]["tps_vs_plain_range"] == [0.85, 0.95]
    assert rules["cpu_vs_plain_range"] == [2.0, 2.0]
    assert rules["not_approve_share"] == 0.03 and plain["not_approve_share"] == 0.02
    assert (rules["rules_fired"], rules["changed_by_rules"]) == (12, 10)
    assert rules["stage_us"] == {"model": 10.0, "rules": 100.0}
    assert variants["reasons"]["reasons_us_per_explained_row"] == 100.0  # 2 ms over 20 rows
    assert plain["reasons_us_per_explained_row"] is None
    assert [r["round"] for r in rules["runs"]] == [1, 2, 3]
    assert list(variants) == [v.name for v in VARIANTS]


def test_the_approve_path_bound_is_within_10_percent_of_plain() -> None:
    bound = summarize(_runs(), explains=True)["reasons_within_10_percent"]
    assert bound == {"value": 0.95, "met": True}
    slow = [r if r.variant != "reasons" else _run("reasons", r.round_no, 1_000.0, 500.0)
            for r in _runs()]
    assert summarize(slow, explains=True)["reasons_within_10_percent"]["met"] is False


def test_without_an_explainer_reasons_are_not_measured_and_say_so() -> None:
    summary = summarize(_runs(reasons=False), explains=False)
    reasons = summary["variants"]["reasons"]
    assert reasons == {"description": VARIANTS[3].description, "available": False,
                       "note": NOT_AVAILABLE}
    assert summary["reasons_within_10_percent"] is None
    assert NOT_AVAILABLE in summary["variants"]["all"]["description"]
    with pytest.raises(ValueError, match="no run of reasons"):
        summarize(_runs(reasons=False), explains=True)


def _section(*, explains: bool = True) -> dict[str, Any]:
    return {"transactions": 2_000, "measured": 1_000, "rounds": 3, "batch": 500,
            "redis_mode": "single", "rules": 50, "model_version": "m1",
            "challenger_version": "m1-shadow",
            **summarize(_runs(reasons=explains), explains=explains)}


def test_the_report_has_a_row_per_variant() -> None:
    lines = decision_layer_lines(_section())
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(VARIANTS)
    assert rows[1].startswith("| plain: ") and "| 8,000 (5,000–10,000) | 1.00 | 125.0 | 1.00 |" \
        in rows[1]
    rules = next(r for r in rows if r.startswith("| rules50"))
    assert "| 4,000 (2,500–5,000) | 0.50 | 250.0 | 2.00 | 3.0% | 12 / 10 |" in rules
    assert "model 10.0, rules 100.0" in rules
    reasons = next(r for r in rows if r.startswith("| reasons"))
    assert reasons.endswith("| 100.0 |") and "| 0.95 (0.85–0.95) |" in reasons
    assert lines[-1].endswith("0.95 of plain, met.")
    assert "3 rounds;" in lines[0] and "1,000 transactions measured" in lines[0]
    assert "1 round;" in decision_layer_lines({**_section(), "rounds": 1})[0]


def test_the_report_says_when_reasons_are_not_available() -> None:
    lines = decision_layer_lines(_section(explains=False))
    reasons = next(r for r in lines if r.startswith("| reasons"))
    assert NOT_AVAILABLE in reasons and "0." not in reasons
    assert lines[-1].endswith("not measured (the model carries no reasons).")
