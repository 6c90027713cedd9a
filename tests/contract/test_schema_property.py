"""The documented JSON Schemas and the worker's validator agree on random payloads
(hypothesis): what one accepts the other accepts — except for the differences listed in
``_intended``, each a rule a JSON Schema cannot state.

Payloads are drawn field by field from valid values, values on either side of each limit
(length 128, amount 1,000,000, years 2000 and 2100, 32 extra fields, the optional fields'
codes) and wrong types, so both sides of every rule are reached.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fraudcore import parse_label, parse_transaction
from fraudcore.errors import InvalidEvent

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


TRANSACTION, LABEL = _schema("transaction"), _schema("label")

_text = st.text(max_size=6)
ids = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=0, max_size=8),
    st.sampled_from(["tx-1", " ", "\t", "a\x00b", "a\x1fb", "a\x7fb", "a\x85b", "a\u200bb",
                     "a\u00a0b", "a\u2028b", "ok id", "x" * 128, "x" * 129, "é" * 128]),
    st.integers(-(10**6), 10**6),
    st.sampled_from([0, -1, 10**127, 10**128, True, None, 1.5, 10.0, [], {}]),
)
amounts = st.one_of(
    st.sampled_from([0, 0.0, 57.16, 1_000_000, 1_000_000.0, 1_000_000.01, -0.01, -1]),
    st.floats(-10.0, 2_000_000.0, allow_nan=False),
    st.sampled_from([True, "12.5", None]),
)
times = st.one_of(
    st.sampled_from([
        "2018-08-08T14:03:11+02:00", "2018-08-08T14:03:11Z", "2018-08-08T14:03:11.123456Z",
        "2018-08-08T14:03+02:00", "2018-08-08T14:03:11", "2018-08-08", "1999-12-31T23:59:59Z",
        "2000-01-01T00:00:00Z", "2100-12-31T23:59:59Z", "2101-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z", "2018-02-30T10:00:00Z", "2018-13-01T10:00:00Z",
        "2018-08-08 14:03:11+02:00", "20180808T140311+0200", "2018-08-08T14:03:11+0200",
        "2018-08-08T24:00:00Z", "garbage",
    ]),
    st.sampled_from([1533730991, None, ""]),
)
optional = {  # the optional fields: valid, either case, null, and wrong by one
    "currency": st.sampled_from(["EUR", "eur", "Usd", "EU", "EURO", "E1R", "ÉUR", "", 978, None]),
    "mcc": st.sampled_from(["5411", "0000", "9999", 5411, 0, 9999, 10_000, -1, "541", "54111",
                            "54a1", "５４１１", 5411.0, True, None]),
    "country": st.sampled_from(["FR", "fr", "F", "FRA", "F1", "ÉT", "", 250, None]),
    "channel": st.sampled_from(["card_present", "online", "moto", "atm", "ONLINE", "web", "",
                                1, None]),
}
extras = st.dictionaries(st.text(min_size=1, max_size=4).map(lambda k: f"x-{k}"), _text,
                         max_size=34)


def _payload(draw: Any, label: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "transaction_id": draw(ids), "card_id": draw(ids), "terminal_id": draw(ids),
        "amount": draw(amounts), "timestamp": draw(times),
    }
    if label:
        payload["known_at"] = draw(times)
    for key in draw(st.sets(st.sampled_from(sorted(payload)), max_size=1)):
        del payload[key]  # a missing field now and then
    if not label:
        for key in draw(st.sets(st.sampled_from(sorted(optional)))):
            payload[key] = draw(optional[key])
    payload.update(draw(extras))
    return payload


def _integral_float(value: object) -> bool:
    return isinstance(value, float) and value.is_integer()


def _printable(text: str) -> bool:
    return text.isprintable()


def _intended(payload: dict[str, Any], label: bool) -> str | None:
    """Why schema and validator may disagree on this payload, or None if they must not."""
    if any(_integral_float(payload.get(name)) for name in ("transaction_id", "card_id",
                                                           "terminal_id", "mcc")):
        # JSON Schema counts 10.0 an integer; the validator takes an integer or a string.
        return "an integral number written as a float"
    for name in ("transaction_id", "card_id", "terminal_id"):
        value = payload.get(name)
        if isinstance(value, str) and not all(
            _printable(c) or unicodedata.category(c) == "Cc" for c in value
        ):
            # The schema names the control characters; the validator refuses every
            # character str.isprintable() refuses (format, separators, unassigned, ...).
            return "a non-printable character other than a control character"
    for name in ("timestamp", "known_at"):
        value = payload.get(name)
        if isinstance(value, str) and value[:4].isdigit():
            try:
                datetime.fromisoformat(value)
            except ValueError:
                # The pattern checks the form; the calendar (Feb 30, hour 24) only the
                # validator can check.
                return "a timestamp of the right form that is no real date and time"
    if label and all(isinstance(payload.get(k), str) for k in ("timestamp", "known_at")):
        try:
            if datetime.fromisoformat(payload["known_at"]) < datetime.fromisoformat(
                payload["timestamp"]
            ):
                return "known_at before timestamp"
        except (ValueError, TypeError):
            pass
    if not label and len(payload) > 37:
        return None  # maxProperties says it: no difference allowed
    return None


def _accepted(parse: Any, payload: dict[str, Any]) -> bool:
    try:
        parse(payload)
    except InvalidEvent:
        return False
    return True


@settings(max_examples=1_500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data(), label=st.booleans())
def test_the_schema_and_the_validator_accept_the_same_payloads(
    data: st.DataObject, label: bool
) -> None:
    payload = _payload(data.draw, label)
    schema = LABEL if label else TRANSACTION
    by_schema = schema.is_valid(payload)
    by_validator = _accepted(parse_label if label else parse_transaction, payload)
    if by_schema != by_validator:
        why = _intended(payload, label)
        assert why is not None, (
            f"schema {'accepts' if by_schema else 'refuses'}, validator "
            f"{'accepts' if by_validator else 'refuses'}: {payload!r}"
        )
        assert by_schema and not by_validator, (why, payload)  # the validator is the stricter


_VALID = {"transaction_id": "tx-1", "card_id": "4242", "terminal_id": "T-1", "amount": 12.5,
          "timestamp": "2018-08-08T14:03:11+02:00"}


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_optional_fields_are_judged_alike(data: st.DataObject) -> None:
    """On an otherwise valid transaction, so that the optional fields and the count of
    fields beyond the required ones decide alone."""
    payload = dict(_VALID)
    for key in data.draw(st.sets(st.sampled_from(sorted(optional)))):
        payload[key] = data.draw(optional[key])
    payload.update(data.draw(extras))
    by_schema, by_validator = TRANSACTION.is_valid(payload), _accepted(parse_transaction, payload)
    if by_schema != by_validator and _intended(payload, label=False) is not None:
        assert by_schema and not by_validator, payload  # the validator is the stricter
        return
    assert by_schema == by_validator, payload
