"""Pure parts of the measuring harnesses (fraudtools.bench, fraudtools.chaos): the key
classification of the memory phase, the chaos table (the bench's bar:
test_bench_figures.py)."""

from __future__ import annotations

from fraudtools.bench.memory import KeyKind, kind_of
from fraudtools.chaos import FAULTS, Outcome
from fraudtools.chaos.report import table
from service.keys import KeyLayout


def test_every_key_of_the_layout_is_classified_by_kind_and_owner() -> None:
    keys = KeyLayout(card_key_secret=b"s", prefix="bench-1")
    card, other_card = keys.card("card-1"), keys.card("card-2")
    terminal = keys.terminal("T:1")  # a colon inside an id stays in the owner
    assert kind_of(card.tx, keys) == KeyKind("card", card.tx.removesuffix(":tx"), "tx")
    assert kind_of(card.val, keys) == KeyKind("card", card.tx.removesuffix(":tx"), "val")
    assert kind_of(other_card.tx, keys) != kind_of(card.tx, keys)
    for part in ("tx", "fraud", "known"):
        found = kind_of(getattr(terminal, part), keys)
        assert found == KeyKind("t", terminal.tx.removesuffix(":tx"), part)
    assert kind_of(keys.transaction_id("tx-1"), keys) == KeyKind(
        "id", keys.transaction_id("tx-1"), "")


def test_keys_of_another_prefix_or_version_are_not_counted() -> None:
    keys = KeyLayout(card_key_secret=b"s", prefix="bench-1")
    assert kind_of(KeyLayout(card_key_secret=b"s", prefix="bench-2").card("c").tx, keys) is None
    assert kind_of("bench-1:v0:card:{x}:tx", keys) is None


def test_the_chaos_table_has_a_row_per_scenario_and_says_fail() -> None:
    ok = Outcome("rebalance", FAULTS["rebalance"].title, events=10, decisions=10)
    bad = Outcome("broker-restart", FAULTS["broker-restart"].title, events=10, lost=2,
                  mismatched=1, differ_from_uninterrupted=3, problems=["2 lost"])
    lines = table([ok, bad]).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith(f"| {FAULTS['rebalance'].title} |") and lines[2].endswith("pass |")
    assert "1 (3 differ from an uninterrupted run)" in lines[3] and lines[3].endswith("FAIL |")
