"""Transaction and label validation on hand-written events: every field, every reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fraudcore import (
    FraudError,
    InvalidEvent,
    InvalidLabel,
    InvalidTransaction,
    Limits,
    parse_label,
    parse_transaction,
)

TX_FIELDS = ("transaction_id", "card_id", "terminal_id", "amount", "timestamp")
ID_FIELDS = ("transaction_id", "card_id", "terminal_id")
LABEL_FIELDS = (*TX_FIELDS, "known_at")


def tx(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "transaction_id": "tx-1",
        "card_id": "card-1",
        "terminal_id": "term-1",
        "amount": 42.5,
        "timestamp": "2024-05-17T14:30:00+02:00",
    }
    raw.update(changes)
    return raw


def label(**changes: Any) -> dict[str, Any]:
    raw = tx(known_at="2024-05-24T14:30:00+02:00")
    raw.update(changes)
    return raw


def without(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != name}


def tx_error(raw: object, **kwargs: Any) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as info:
        parse_transaction(raw, **kwargs)
    return info.value


def label_error(raw: object, **kwargs: Any) -> InvalidLabel:
    with pytest.raises(InvalidLabel) as info:
        parse_label(raw, **kwargs)
    return info.value


# --- the exception tree -------------------------------------------------------------


def test_errors_are_value_errors_of_the_project_tree() -> None:
    assert issubclass(InvalidTransaction, InvalidEvent)
    assert issubclass(InvalidLabel, InvalidEvent)
    assert issubclass(InvalidEvent, ValueError)
    assert issubclass(InvalidEvent, FraudError)
    assert not issubclass(InvalidLabel, InvalidTransaction)


# --- a valid transaction ------------------------------------------------------------


def test_valid_transaction_is_parsed() -> None:
    t = parse_transaction(tx())
    assert t.transaction_id == "tx-1"
    assert t.card_id == "card-1"
    assert t.terminal_id == "term-1"
    assert t.amount == 42.5
    assert t.timestamp == datetime(2024, 5, 17, 12, 30, tzinfo=UTC)
    assert t.timestamp.utcoffset() == timedelta(hours=2)  # its own offset is kept
    assert dict(t.extra) == {}


def test_epoch_is_the_instant_in_seconds() -> None:
    # 2024-05-17T12:30:00Z, worked out by hand: 19860 days since 1970-01-01, plus 12.5 h.
    assert parse_transaction(tx()).epoch == 19_860 * 86_400 + 12 * 3_600 + 30 * 60
    epoch_zero = tx(timestamp="1970-01-01T00:00:00Z")
    assert parse_transaction(epoch_zero, limits=Limits(min_year=1970)).epoch == 0.0
    assert parse_transaction(tx(timestamp="2000-01-01T01:00:00+01:00")).epoch == 946_684_800.0


def test_z_suffix_is_accepted_as_utc() -> None:
    t = parse_transaction(tx(timestamp="2024-05-17T12:30:00Z"))
    assert t.timestamp.utcoffset() == timedelta(0)
    assert t.epoch == parse_transaction(tx()).epoch


def test_fractional_seconds_and_negative_offsets() -> None:
    t = parse_transaction(tx(timestamp="2024-05-17T07:30:00.250-05:00"))
    assert t.timestamp.tzinfo == timezone(timedelta(hours=-5))
    assert t.epoch == parse_transaction(tx()).epoch + 0.25


def test_integer_ids_are_converted_to_strings() -> None:
    t = parse_transaction(tx(transaction_id=123, card_id=0, terminal_id=987654321))
    assert (t.transaction_id, t.card_id, t.terminal_id) == ("123", "0", "987654321")


def test_integer_amount_becomes_float() -> None:
    t = parse_transaction(tx(amount=7))
    assert t.amount == 7.0 and isinstance(t.amount, float)


def test_zero_amount_and_amount_at_the_limit_are_accepted() -> None:
    assert parse_transaction(tx(amount=0)).amount == 0.0
    assert parse_transaction(tx(amount=1_000_000.0)).amount == 1_000_000.0


def test_extra_fields_are_kept() -> None:
    t = parse_transaction(tx(merchant="ACME", mcc=5411, tags=["a"]))
    assert dict(t.extra) == {"merchant": "ACME", "tags": ["a"]}  # mcc: a field of its own
    assert t.mcc == "5411"


def test_extra_fields_up_to_the_limit_are_accepted() -> None:
    extras = {f"x{i}": i for i in range(32)}
    assert len(parse_transaction(tx(**extras)).extra) == 32


def test_too_many_extra_fields() -> None:
    err = tx_error(tx(**{f"x{i}": i for i in range(33)}))
    assert err.field is None
    assert "too many extra fields" in str(err) and "33 > 32" in str(err)


def test_extra_field_limit_is_configurable() -> None:
    err = tx_error(tx(a=1, b=2), limits=Limits(max_extra_fields=1))
    assert "2 > 1" in str(err)


# --- what is not an object -----------------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], ["tx-1"], "tx-1", 42, 1.5])
def test_not_an_object(raw: object) -> None:
    err = tx_error(raw)
    assert err.field is None
    assert "expected a JSON object" in str(err)
    assert label_error(raw).field is None


# --- missing fields ------------------------------------------------------------------


@pytest.mark.parametrize("name", TX_FIELDS)
def test_transaction_field_missing(name: str) -> None:
    err = tx_error(without(tx(), name))
    assert err.field == name
    assert str(err) == f"{name}: missing required field"


@pytest.mark.parametrize("name", LABEL_FIELDS)
def test_label_field_missing(name: str) -> None:
    err = label_error(without(label(), name))
    assert err.field == name
    assert "missing required field" in str(err)


def test_null_field_is_not_a_missing_field_but_a_wrong_type() -> None:
    err = tx_error(tx(card_id=None))
    assert err.field == "card_id"
    assert "NoneType" in str(err)


# --- identifiers -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ID_FIELDS)
@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "bool"),
        (False, "bool"),
        (1.0, "float"),
        (3.5, "float"),
        (["a"], "list"),
        ({}, "dict"),
    ],
)
def test_identifier_of_the_wrong_type(name: str, value: object, type_name: str) -> None:
    err = tx_error(tx(**{name: value}))
    assert err.field == name
    assert str(err) == f"{name}: expected a string or integer, got {type_name}"


@pytest.mark.parametrize("name", ID_FIELDS)
def test_empty_identifier(name: str) -> None:
    err = tx_error(tx(**{name: ""}))
    assert err.field == name
    assert "length must be 1 to 128" in str(err)


@pytest.mark.parametrize("name", ID_FIELDS)
def test_identifier_length_limit(name: str) -> None:
    assert getattr(parse_transaction(tx(**{name: "x" * 128})), name) == "x" * 128
    err = tx_error(tx(**{name: "x" * 129}))
    assert err.field == name
    assert "length must be 1 to 128" in str(err)


def test_identifier_length_limit_is_configurable_and_counts_integer_digits() -> None:
    limits = Limits(max_id_length=3)
    short = tx(transaction_id="t1", card_id=999, terminal_id="k")
    assert parse_transaction(short, limits=limits).card_id == "999"
    assert tx_error({**short, "card_id": 1000}, limits=limits).field == "card_id"


@pytest.mark.parametrize("name", ID_FIELDS)
@pytest.mark.parametrize("value", ["a\nb", "tab\there", "nul\x00", "esc\x1b[0m", "\u200b"])
def test_non_printable_identifier(name: str, value: str) -> None:
    err = tx_error(tx(**{name: value}))
    assert err.field == name
    assert "non-printable" in str(err)


def test_printable_unicode_identifier_is_accepted() -> None:
    assert parse_transaction(tx(terminal_id="café-Zürich 7")).terminal_id == "café-Zürich 7"


def test_huge_integer_identifier_is_an_invalid_transaction() -> None:
    err = tx_error(tx(card_id=10**5000))
    assert err.field == "card_id"


# --- amount ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "bool"),
        (False, "bool"),
        ([1.0], "list"),
        ("12.5", "str"),
        (None, "NoneType"),
        ({}, "dict"),
    ],
)
def test_amount_of_the_wrong_type(value: object, type_name: str) -> None:
    err = tx_error(tx(amount=value))
    assert err.field == "amount"
    assert str(err) == f"amount: expected a number, got {type_name}"


@pytest.mark.parametrize("value", [-0.01, -1, -1e6])
def test_negative_amount(value: float) -> None:
    err = tx_error(tx(amount=value))
    assert err.field == "amount"
    assert str(err) == "amount: must not be negative"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_amount(value: float) -> None:
    err = tx_error(tx(amount=value))
    assert err.field == "amount"
    assert str(err) == "amount: must be finite"


@pytest.mark.parametrize("value", [1_000_000.01, 2_000_000, 1e300])
def test_amount_over_the_limit(value: float) -> None:
    err = tx_error(tx(amount=value))
    assert err.field == "amount"
    assert "above the limit of 1e+06" in str(err)


def test_amount_limit_is_configurable() -> None:
    limits = Limits(max_amount=100.0)
    assert parse_transaction(tx(amount=100), limits=limits).amount == 100.0
    assert tx_error(tx(amount=100.5), limits=limits).field == "amount"


def test_integer_amount_beyond_float_range_is_an_invalid_transaction() -> None:
    err = tx_error(tx(amount=10**400))
    assert err.field == "amount"


# --- timestamp -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1715949000, 1715949000.0, None, ["2024-05-17T12:30:00Z"], True])
def test_timestamp_of_the_wrong_type(value: object) -> None:
    err = tx_error(tx(timestamp=value))
    assert err.field == "timestamp"
    assert "expected an ISO 8601 string with offset" in str(err)


@pytest.mark.parametrize(
    "value", ["2024-05-17T14:30:00", "2024-05-17 14:30:00", "2024-05-17", "2024-05-17T14:30"]
)
def test_timestamp_without_offset(value: str) -> None:
    err = tx_error(tx(timestamp=value))
    assert err.field == "timestamp"
    assert "needs a UTC offset" in str(err)


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "17/05/2024 14:30+02:00"],
)
def test_unparsable_timestamp(value: str) -> None:
    err = tx_error(tx(timestamp=value))
    assert err.field == "timestamp"
    assert str(err) == "timestamp: not an ISO 8601 timestamp"


@pytest.mark.parametrize(
    ("value", "year"),
    [("1999-12-31T23:59:59Z", 1999), ("2101-01-01T00:00:00Z", 2101), ("0001-01-01T00:00:00Z", 1)],
)
def test_timestamp_year_out_of_range(value: str, year: int) -> None:
    err = tx_error(tx(timestamp=value))
    assert err.field == "timestamp"
    assert f"year {year} outside 2000..2100" in str(err)


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00Z", "2100-12-31T23:59:59Z"])
def test_timestamp_years_at_the_bounds_are_accepted(value: str) -> None:
    assert parse_transaction(tx(timestamp=value)).timestamp.year in (2000, 2100)


# --- labels ----------------------------------------------------------------------------


def test_valid_label_is_parsed() -> None:
    lab = parse_label(label(transaction_id=77))
    assert lab.transaction_id == "77"
    assert (lab.card_id, lab.terminal_id, lab.amount) == ("card-1", "term-1", 42.5)
    assert lab.known_at - lab.timestamp == timedelta(days=7)
    assert lab.known_epoch - lab.epoch == 7 * 86_400


def test_label_known_at_the_same_instant_is_accepted() -> None:
    lab = parse_label(label(known_at="2024-05-17T12:30:00Z"))  # same instant, other offset
    assert lab.known_epoch == lab.epoch


def test_label_known_before_its_transaction() -> None:
    err = label_error(label(known_at="2024-05-17T12:29:59Z"))
    assert err.field == "known_at"
    assert "before the transaction's timestamp" in str(err)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"known_at": "2024-05-24T14:30:00"}, "known_at"),
        ({"known_at": "soon"}, "known_at"),
        ({"known_at": "2200-01-01T00:00:00Z"}, "known_at"),
        ({"timestamp": 1715949000}, "timestamp"),
        ({"card_id": True}, "card_id"),
        ({"terminal_id": ""}, "terminal_id"),
        ({"amount": -5}, "amount"),
        ({"amount": math.nan}, "amount"),
    ],
)
def test_invalid_label_names_the_field(changes: dict[str, Any], field: str) -> None:
    err = label_error(label(**changes))
    assert err.field == field
    assert not isinstance(err, InvalidTransaction)


def test_a_whitespace_only_id_is_rejected_as_the_dataset_reader_does():
    from fraudcore import InvalidTransaction, parse_transaction

    with pytest.raises(InvalidTransaction) as info:
        parse_transaction({"transaction_id": "  ", "card_id": "c", "terminal_id": "t",
                           "amount": 1.0, "timestamp": "2018-04-01T00:00:00+00:00"})
    assert info.value.field == "transaction_id"


# --- what a dead letter says (the reasons a producer reads to fix an event) ---------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (tx(card_id=True), "card_id"),
        (tx(card_id=10**200), "card_id"),  # an integer id too long
        (tx(terminal_id=""), "terminal_id"),
        (tx(transaction_id="a\x00b"), "transaction_id"),
        (without(tx(), "card_id"), "card_id"),
        (tx(amount=10**400), "amount"),  # beyond the float range
        (tx(amount=math.inf), "amount"),
        (tx(amount=-1), "amount"),
        (tx(amount="12"), "amount"),
        (tx(timestamp=1715949000), "timestamp"),
        (tx(timestamp="yesterday"), "timestamp"),
        (tx(timestamp="2024-05-17T14:30:00"), "timestamp"),
        (tx(timestamp="1999-12-31T23:59:59Z"), "timestamp"),
    ],
)
def test_a_reason_begins_with_the_field_it_names(raw: dict[str, Any], field: str) -> None:
    # "Validation names the field and the reason": the reason reads "<field>: <what>".
    err = tx_error(raw)
    assert err.field == field
    assert str(err).startswith(f"{field}: ")
    assert len(str(err)) > len(f"{field}: ")


def test_a_label_known_too_early_names_known_at_first() -> None:
    err = label_error(label(known_at="2024-05-17T12:29:59Z"))
    assert str(err).startswith("known_at ")


def test_an_integer_amount_beyond_the_float_range_is_not_finite() -> None:
    assert str(tx_error(tx(amount=10**400))) == "amount: must be finite"


@pytest.mark.parametrize(
    ("raw", "type_name"), [([1, 2], "list"), ("{}", "str"), (None, "NoneType"), (7, "int")]
)
def test_not_an_object_says_what_it_got(raw: object, type_name: str) -> None:
    assert str(tx_error(raw)) == f"expected a JSON object, got {type_name}"
    assert str(label_error(raw)) == f"expected a JSON object, got {type_name}"


@pytest.mark.parametrize(("value", "type_name"), [(1715949000, "int"), (None, "NoneType")])
def test_a_timestamp_of_the_wrong_type_says_what_it_got(value: object, type_name: str) -> None:
    message = str(tx_error(tx(timestamp=value)))
    assert message.endswith(f", got {type_name}")


@pytest.mark.parametrize("value", [-5_000, -(10**127) + 1, -1])
def test_negative_integer_ids_within_the_length_are_accepted(value: int) -> None:
    # An integer id is its decimal text: 1 to 128 characters, the minus sign included.
    assert parse_transaction(tx(card_id=value)).card_id == str(value)


def test_a_negative_integer_id_one_character_too_long_is_refused() -> None:
    err = tx_error(tx(card_id=-(10**127)))  # "-1" and 127 zeros: 129 characters
    assert err.field == "card_id"
    assert str(err) == "card_id: length must be 1 to 128"
