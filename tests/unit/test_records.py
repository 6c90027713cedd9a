"""Wire formats: decoding events, the decision record, the dead letter."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from fraudcore import FEATURE_NAMES, InvalidEvent, InvalidLabel, InvalidTransaction, Transaction
from service.records import (
    MAX_DLQ_PAYLOAD,
    Decision,
    Source,
    dead_letter,
    decode_label,
    decode_transaction,
)

TX_JSON = (
    b'{"transaction_id":"tx-9","card_id":1234,"terminal_id":"T-1","amount":19.99,'
    b'"timestamp":"2024-05-17T14:30:00+02:00","device":"web"}'
)
LABEL_JSON = (
    b'{"transaction_id":"tx-9","card_id":"1234","terminal_id":"T-1","amount":19.99,'
    b'"timestamp":"2024-05-17T12:30:00Z","known_at":"2024-05-24T12:30:00Z"}'
)


# --- decoding ----------------------------------------------------------------------------------


def test_decode_transaction() -> None:
    tx = decode_transaction(TX_JSON)
    assert (tx.transaction_id, tx.card_id, tx.terminal_id, tx.amount) == (
        "tx-9",
        "1234",
        "T-1",
        19.99,
    )
    assert tx.timestamp == datetime(2024, 5, 17, 12, 30, tzinfo=UTC)
    assert dict(tx.extra) == {"device": "web"}


def test_decode_label() -> None:
    label = decode_label(LABEL_JSON)
    assert label.transaction_id == "tx-9"
    assert label.known_at - label.timestamp == timedelta(days=7)


@pytest.mark.parametrize("decode", [decode_transaction, decode_label])
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"not json",
        b"{'single': 'quotes'}",
        b'{"amount": NaN}',
        b"\xff\xfe{}",
        b'{"a":1e400}',
    ],
)
def test_not_json(decode: Any, payload: bytes) -> None:
    with pytest.raises(InvalidEvent, match="not valid JSON") as info:
        decode(payload)
    assert info.value.field is None


@pytest.mark.parametrize(
    ("decode", "kind"), [(decode_transaction, "transaction"), (decode_label, "label")]
)
def test_none_payload(decode: Any, kind: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(None)
    assert str(info.value) == f"empty message: a {kind} needs a JSON object value"
    assert info.value.field is None


@pytest.mark.parametrize("payload", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object(payload: bytes) -> None:
    with pytest.raises(InvalidTransaction, match="expected a JSON object"):
        decode_transaction(payload)
    with pytest.raises(InvalidLabel, match="expected a JSON object"):
        decode_label(payload)


def test_invalid_fields_keep_their_field_name_through_decoding() -> None:
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(TX_JSON.replace(b"19.99", b"-1"))
    assert info.value.field == "amount"
    with pytest.raises(InvalidLabel) as label_info:
        decode_label(LABEL_JSON.replace(b'"known_at":"2024-05-24', b'"known_at":"2024-05-10'))
    assert label_info.value.field == "known_at"


# --- decisions ---------------------------------------------------------------------------------

TX = Transaction(
    transaction_id="tx-9",
    card_id="1234",
    terminal_id="T-1",
    amount=19.99,
    timestamp=datetime(2024, 5, 17, 14, 30, tzinfo=timezone(timedelta(hours=2))),
)
DECIDED_AT = 1_715_949_000.123456  # 2024-05-17T12:30:00.123456Z


def decision(**kwargs: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "transaction": TX,
        "score": 0.12345678,
        "action": "review",
        "model_version": "39f0291d18e4",
        "decided_at": DECIDED_AT,
    }
    fields.update(kwargs)
    return orjson.loads(Decision(**fields).to_json())  # type: ignore[no-any-return]


def test_decision_json() -> None:
    assert decision() == {
        "transaction_id": "tx-9",
        "card_id": "1234",
        "terminal_id": "T-1",
        "amount": 19.99,
        "timestamp": "2024-05-17T14:30:00+02:00",
        "score": 0.123457,
        "action": "review",
        "model_version": "39f0291d18e4",
        "decided_at": "2024-05-17T12:30:00.123+00:00",
        "duplicate": False,
        "degraded": False,
    }


@pytest.mark.parametrize(
    ("score", "rounded"),
    [
        (0.0, 0.0),
        (1.0, 1.0),
        (0.9999996, 1.0),
        (0.0000004, 0.0),
        (0.5000016, 0.500002),
        (0.1234564, 0.123456),
    ],
)
def test_score_is_rounded_to_six_places(score: float, rounded: float) -> None:
    assert decision(score=score)["score"] == rounded


def test_duplicate_and_degraded_flags() -> None:
    record = decision(duplicate=True, degraded=True, action="approve")
    assert record["duplicate"] is True
    assert record["degraded"] is True
    assert record["action"] == "approve"


def test_timestamp_keeps_the_event_offset_and_decided_at_is_utc() -> None:
    utc_tx = Transaction("a", "b", "c", 1.0, datetime(2024, 1, 1, 23, 59, 59, 500_000, tzinfo=UTC))
    record = decision(transaction=utc_tx, decided_at=0.0)
    assert record["timestamp"] == "2024-01-01T23:59:59.500000+00:00"
    assert record["decided_at"] == "1970-01-01T00:00:00.000+00:00"
    assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None


def test_features_are_keyed_by_feature_names_in_order() -> None:
    values = [float(i) / 4 for i in range(len(FEATURE_NAMES))]
    record = decision(features=values)
    assert list(record["features"]) == list(FEATURE_NAMES)
    assert record["features"]["amount"] == 0.0
    assert record["features"][FEATURE_NAMES[-1]] == (len(FEATURE_NAMES) - 1) / 4
    assert "features" not in decision(features=None)


@pytest.mark.parametrize("n", [len(FEATURE_NAMES) - 1, len(FEATURE_NAMES) + 1])
def test_features_of_the_wrong_length_are_refused(n: int) -> None:
    with pytest.raises(ValueError):
        decision(features=[0.0] * n)


# --- dead letters --------------------------------------------------------------------------------

SOURCE = Source(topic="transactions", partition=3, offset=1_234_567)
AT = 1_715_949_000.5


def letter(payload: bytes | None, reason: str = "amount: must not be negative") -> dict[str, Any]:
    return orjson.loads(dead_letter(payload, SOURCE, reason, at=AT))  # type: ignore[no-any-return]


def test_dead_letter_of_utf8_payload() -> None:
    payload = '{"card_id": "carte-é", "amount": -1}'.encode()
    assert letter(payload) == {
        "reason": "amount: must not be negative",
        "topic": "transactions",
        "partition": 3,
        "offset": 1_234_567,
        "failed_at": "2024-05-17T12:30:00.500+00:00",
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_truncated": False,
        "payload": '{"card_id": "carte-é", "amount": -1}',
        "payload_encoding": "utf-8",
    }


def test_dead_letter_of_invalid_utf8_is_base64() -> None:
    payload = b"\xff\xfe\x00garbage\x80"
    record = letter(payload, reason="not valid JSON")
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == payload
    assert record["payload_bytes"] == len(payload)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["payload_truncated"] is False
    assert record["reason"] == "not valid JSON"


@pytest.mark.parametrize("payload", [None, b""])
def test_dead_letter_of_empty_payload(payload: bytes | None) -> None:
    record = letter(payload, reason="empty message")
    assert record["payload"] == ""
    assert record["payload_encoding"] == "utf-8"
    assert record["payload_bytes"] == 0
    assert record["payload_sha256"] == hashlib.sha256(b"").hexdigest()
    assert record["payload_truncated"] is False


def test_payload_of_exactly_the_limit_is_kept_whole() -> None:
    payload = b"x" * MAX_DLQ_PAYLOAD
    record = letter(payload)
    assert record["payload_truncated"] is False
    assert record["payload"] == payload.decode()


def test_payload_over_the_limit_is_truncated_with_the_hash_of_the_whole() -> None:
    payload = b"0123456789" * (MAX_DLQ_PAYLOAD // 10 + 1)  # a few bytes over
    assert len(payload) > MAX_DLQ_PAYLOAD
    record = letter(payload)
    assert record["payload_truncated"] is True
    assert record["payload_encoding"] == "utf-8"
    assert record["payload"] == payload[:MAX_DLQ_PAYLOAD].decode()
    assert record["payload_bytes"] == len(payload)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["payload_sha256"] != hashlib.sha256(payload[:MAX_DLQ_PAYLOAD]).hexdigest()


def test_binary_payload_over_the_limit_is_truncated_base64() -> None:
    payload = b"\xff" * (MAX_DLQ_PAYLOAD + 100)
    record = letter(payload)
    assert record["payload_truncated"] is True
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == payload[:MAX_DLQ_PAYLOAD]
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()


def test_utf8_payload_cut_inside_a_character_is_still_text() -> None:
    payload = b"a" * (MAX_DLQ_PAYLOAD - 1) + "é".encode() * 10  # the cut falls inside an é
    payload.decode("utf-8")  # the payload is valid UTF-8
    record = letter(payload)
    assert record["payload_truncated"] is True
    assert record["payload_encoding"] == "utf-8"
    assert payload.decode().startswith(record["payload"])
