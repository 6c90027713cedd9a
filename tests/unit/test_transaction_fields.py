"""The optional fields a payment system sends (currency, mcc, country, channel): validated,
normalised, kept out of ``extra``, read by rules, and never read by the model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fraudcore import (
    CHANNELS,
    FEATURE_NAMES,
    InvalidTransaction,
    Transaction,
    parse_transaction,
)
from fraudcore.features import compute
from fraudcore.state import CardHistory, TerminalHistory
from fraudrules import parse_rules

BASE = {"transaction_id": "tx-1", "card_id": "4242", "terminal_id": "T-1", "amount": 12.5,
        "timestamp": "2018-08-08T14:03:11+02:00"}


def parse(**fields: Any) -> Transaction:
    return parse_transaction({**BASE, **fields})


def test_the_fields_are_normalised_and_kept_out_of_extra() -> None:
    tx = parse(currency="eur", mcc=742, country="fr", channel="online", device="ios")
    assert (tx.currency, tx.mcc, tx.country, tx.channel) == ("EUR", "0742", "FR", "online")
    assert dict(tx.extra) == {"device": "ios"}


@pytest.mark.parametrize("name", ["currency", "mcc", "country", "channel"])
def test_missing_or_null_is_not_known(name: str) -> None:
    assert getattr(parse(), name) is None
    assert getattr(parse(**{name: None}), name) is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("currency", "EURO", "ISO 4217"), ("currency", "E1R", "ISO 4217"),
        ("currency", 978, "ISO 4217"), ("currency", "ÉUR", "ISO 4217"),
        ("mcc", "541", "four digits"), ("mcc", "54111", "four digits"),
        ("mcc", 10_000, "four digits"), ("mcc", -1, "four digits"), ("mcc", True, "four digits"),
        ("mcc", "５４１１", "four digits"), ("mcc", 5411.0, "four digits"),
        ("country", "FRA", "alpha-2"), ("country", "F", "alpha-2"), ("country", "", "alpha-2"),
        ("channel", "web", "card_present, online, moto, atm"),
        ("channel", "ONLINE", "card_present, online, moto, atm"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(name: str, value: object, says: str) -> None:
    with pytest.raises(InvalidTransaction, match=says) as caught:
        parse(**{name: value})
    assert caught.value.field == name
    assert str(caught.value).startswith(f"{name}: ")


def test_every_channel_is_accepted() -> None:
    assert [parse(channel=c).channel for c in CHANNELS] == list(CHANNELS)


def test_the_optional_fields_count_towards_the_limit_of_32() -> None:
    fields = {"currency": "EUR", "mcc": "5411", "country": "FR", "channel": "atm"}
    fields |= {f"x{i}": i for i in range(28)}
    parse(**fields)  # 32 beyond the required
    with pytest.raises(InvalidTransaction, match=r"too many extra fields \(33 > 32\)"):
        parse(**fields, one_more=1)


def test_rules_read_them_and_an_unsent_field_is_empty() -> None:
    content = b"""rules:
  - id: foreign-online
    when: channel == 'online' && country != 'FR' && country != ''
    action: review
  - id: gambling
    when: mcc in ['7995', '7800'] && currency == 'EUR'
    action: decline
  - id: unknown-country
    when: country == ''
    action: review
"""
    ruleset = parse_rules(content)
    row = [0.0] * len(FEATURE_NAMES)

    def fired(tx: Transaction) -> list[str]:
        evaluation = ruleset.evaluate(tx, row, 0.1)
        assert not evaluation.failed
        return [r.id for r in evaluation.fired]

    assert fired(parse(channel="online", country="de")) == ["foreign-online"]
    assert fired(parse(channel="online", country="FR")) == []
    assert fired(parse(mcc=7995, currency="eur", country="FR")) == ["gambling"]
    assert fired(parse(mcc=7995, currency="USD", country="FR")) == []
    assert fired(parse(channel="online")) == ["unknown-country"]


def test_the_model_reads_none_of_them() -> None:
    when = datetime(2018, 8, 8, 14, 3, tzinfo=UTC)
    plain = Transaction("tx-1", "4242", "T-1", 12.5, when)
    rich = Transaction("tx-1", "4242", "T-1", 12.5, when, {"device": "ios"}, currency="EUR",
                       mcc="7995", country="RU", channel="online")
    card = CardHistory([plain.epoch - 3600.0, plain.epoch - 60.0], [7.0, 5.0])
    terminal = TerminalHistory([1, 2, 3], [plain.epoch - 9 * 86_400], [plain.epoch - 8 * 86_400])
    assert compute(rich, card, terminal) == compute(plain, card, terminal)
