"""The compiled core's wire side against the Python reference, on random inputs
(hypothesis): a transaction's Redis commands byte for byte (``service.exchange``), the card
script's reply read back, the floats as Python's ``repr`` writes them, Kafka's murmur2 of a
record's key (its partition), and the decoder's
fast path — it takes only what ``fraudcore.parse_transaction`` takes, with the same
values, and leaves the rest to it."""

from __future__ import annotations

import json
import math
import struct
from array import array
from datetime import UTC, datetime, timedelta, timezone

import fraudcore_native
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

import fraudnative
from fraudcore import CardHistory, InvalidEvent, TerminalHistory, Transaction, compute
from fraudtools.bench import data as bench_data
from service.commands import Script
from service.engine import decoder, partitioner
from service.exchange import NativeCalls, PythonCalls
from service.keys import KeyLayout, terminal_tag
from service.records import decode_transaction
from service.replies import card_history
from service.scripts import CARD, TERMINAL

# --- floats as repr writes them -------------------------------------------------------------


@settings(max_examples=3000)
@given(x=st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_written_as_pythons_repr(x: float) -> None:
    assert fraudcore_native.float_repr(x) == repr(x)


@pytest.mark.parametrize(
    "x",
    [
        1e16,
        1e15,
        9999999999999998.0,
        0.0001,
        0.0001 - 1e-20,
        1e-05,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        1.5e9,
        123456789.125,
    ],
)
def test_floats_at_the_edges_of_the_layouts(x: float) -> None:
    assert fraudcore_native.float_repr(x) == repr(x)


# --- a transaction's commands ---------------------------------------------------------------

ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
epochs = st.floats(946_684_800.0, 4_102_444_800.0)  # 2000 to 2100, as validation allows


@settings(max_examples=500)
@given(terminal=ids)
def test_terminal_tags_are_the_references(terminal: str) -> None:
    assert fraudcore_native.terminal_tag(terminal) == terminal_tag(terminal)


@settings(max_examples=800, deadline=None)
@given(
    transaction_id=ids,
    card_id=ids,
    terminal_id=ids,
    epoch=epochs,
    amount=st.floats(0, 1_000_000),
    now=epochs,
    with_ids=st.booleans(),
    prefix=st.sampled_from(["fraud", "bench-1a2b", "é:x"]),
)
def test_every_command_is_the_references_byte_for_byte(
    transaction_id: str,
    card_id: str,
    terminal_id: str,
    epoch: float,
    amount: float,
    now: float,
    with_ids: bool,
    prefix: str,
) -> None:
    keys = KeyLayout(card_key_secret=b"s" * 32, prefix=prefix)
    card, terminal = Script.of(CARD), Script.of(TERMINAL)
    tx = Transaction(
        transaction_id, card_id, terminal_id, amount, datetime.fromtimestamp(epoch, UTC)
    )
    want = PythonCalls(keys, card, terminal, ids=with_ids).calls(tx, now)
    got = NativeCalls(keys, card, terminal, ids=with_ids).calls(tx, now)
    assert got == want  # packed bytes, first key, script
    assert len(got) == (3 if with_ids else 2)


def test_the_generated_traffics_commands_are_the_references() -> None:
    keys = KeyLayout(card_key_secret=b"s" * 32)
    card, terminal = Script.of(CARD), Script.of(TERMINAL)
    python, native = (kind(keys, card, terminal, ids=True) for kind in (PythonCalls, NativeCalls))
    data = bench_data.build(2_000)
    for value in data.take(2_000, start=0).transactions_only().values:
        tx = decode_transaction(value)
        assert native.calls(tx, 1.75e9) == python.calls(tx, 1.75e9)


# --- the partition of a record -------------------------------------------------------------


@settings(max_examples=1000)
@given(key=st.binary(max_size=80))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert fraudnative.murmur2(key) == murmur2(key)


@settings(max_examples=300)
@given(key=st.binary(max_size=40), partitions=st.integers(1, 64))
def test_a_keyed_record_goes_where_aiokafka_sends_it(key: bytes, partitions: int) -> None:
    every = list(range(partitions))
    partition = partitioner("native")
    assert partition is not None and partitioner("python") is None
    assert partition(key, every, every) == DefaultPartitioner()(key, every, every)


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    partition = partitioner("native")
    assert partition is not None
    assert {partition(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
    assert {partition(None, [0, 1], []) for _ in range(200)} == {0, 1}


# --- the card script's reply ----------------------------------------------------------------


@settings(max_examples=500)
@given(
    entries=st.lists(st.tuples(epochs, st.floats(0, 1e6), st.integers(0, 2**32 - 1)), max_size=60),
    sort=st.booleans(),
)
def test_a_cards_history_reads_back_as_the_references(
    entries: list[tuple[float, float, int]],
    sort: bool,
) -> None:
    if sort:
        entries.sort()  # the usual case: HVALS in insertion (time) order
    joined = b"".join(struct.pack("<3d", t, a, float(c)) for t, a, c in entries)
    want = card_history(joined)
    got = fraudnative.card_history(joined)
    assert (list(got.timestamps), list(got.amounts)) == (want.timestamps, want.amounts)


def test_a_history_as_arrays_gives_the_same_features_as_lists() -> None:
    when = datetime(2026, 4, 1, 8, 30, tzinfo=UTC)
    t = when.timestamp()
    tx = Transaction("tx", "card", "terminal", 42.0, when)
    times, amounts = [t - 9_000.0 * i for i in range(30, 0, -1)], [float(i) for i in range(30)]
    terminal = TerminalHistory([3, 9, 20], [t - 9e5], [t - 8e5])
    want = compute(tx, CardHistory(times, amounts), terminal)
    got = fraudnative.compute(tx, CardHistory(array("d", times), array("d", amounts)), terminal)
    assert struct.pack(f"<{len(want)}d", *got) == struct.pack(f"<{len(want)}d", *want)


def test_a_history_that_is_not_whole_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="not whole entries of 24"):
        fraudnative.card_history(b"x" * 25)


# --- decoding -------------------------------------------------------------------------------

_FIELDS = ("transaction_id", "card_id", "terminal_id", "amount", "timestamp")


def _reference(payload: bytes) -> Transaction | None:
    try:
        return decode_transaction(payload)
    except InvalidEvent:
        return None


def _same(a: Transaction, b: Transaction) -> None:
    """Equal in every field, the timestamp in its own zone too (a decision prints it)."""
    assert a == b
    assert a.timestamp.isoformat() == b.timestamp.isoformat()
    assert a.timestamp.tzinfo == b.timestamp.tzinfo
    assert a.extra == b.extra
    assert struct.pack("<2d", a.amount, a.epoch) == struct.pack("<2d", b.amount, b.epoch)


zones = st.one_of(
    st.just(UTC),
    st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59)),
)


def _stamp(d: datetime, zone: timezone, digits: int) -> str:
    """An ISO 8601 timestamp with 0 to 6 digits of fraction."""
    text = d.replace(tzinfo=zone).isoformat(timespec="microseconds")
    whole, fraction = text[:19], text[20:26]
    return whole + (f".{fraction[:digits]}" if digits else "") + text[26:]


good_stamps = st.builds(
    _stamp,
    st.datetimes(datetime(1999, 12, 25), datetime(2101, 1, 5)),
    zones,
    st.integers(0, 6),
).flatmap(lambda s: st.sampled_from([s, s.replace("+00:00", "Z")]))
wild_stamps = st.one_of(
    good_stamps.map(lambda s: s[:19]),
    good_stamps.map(str.lower),
    st.text(max_size=30),
    st.sampled_from(
        [
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.5+01:30",
            "2026-01-01 00:00:00Z",
            "2026-01-01",
        ]
    ),
)
good_ids = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20),
    st.integers(-(10**12), 10**12),
)
wild_ids = st.one_of(
    st.text(max_size=6),
    st.text(min_size=120, max_size=140),
    st.integers(-(10**20), 10**20),
    st.just(" "),
    st.just("a\tb"),
    st.just("é"),
    st.floats(),
    st.booleans(),
    st.none(),
)
good_amounts = st.one_of(st.floats(0, 1_000_000), st.integers(0, 1_000_000))
wild_amounts = st.one_of(
    st.floats(),
    st.integers(-10, 10**7),
    st.just(True),
    st.just("1"),
    st.just(-0.0),
    st.just(1_000_000.0000001),
    st.just(-1e-300),
)
good_optional = {
    "currency": st.sampled_from(["EUR", "eur", "GbP", None]),
    "mcc": st.one_of(st.integers(0, 9999), st.sampled_from(["5411", "0000", None])),
    "country": st.sampled_from(["FR", "us", None]),
    "channel": st.sampled_from(["online", "card_present", "moto", "atm", None]),
}
wild_optional = st.one_of(
    st.text(max_size=5),
    st.integers(-5, 10_001),
    st.booleans(),
    st.just("ONLINE"),
    st.just("EU1"),
    st.just("54 1"),
    st.floats(),
)


def mostly(
    good: st.SearchStrategy[object], wild: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    """Valid four times in five, so that most payloads reach the fast path whole."""
    return st.integers(0, 4).flatmap(lambda i: wild if i == 0 else good)


payloads = st.fixed_dictionaries(
    {
        "transaction_id": mostly(good_ids, wild_ids),
        "card_id": mostly(good_ids, wild_ids),
        "terminal_id": mostly(good_ids, wild_ids),
        "amount": mostly(good_amounts, wild_amounts),
        "timestamp": mostly(good_stamps, wild_stamps),
    },
    optional={
        **{k: mostly(v, wild_optional) for k, v in good_optional.items()},
        "device": st.text(max_size=4),
    },
)


def _json(value: object) -> str:
    # an integer orjson cannot write (beyond 64 bits): as JSON writes it
    big = isinstance(value, int) and not isinstance(value, bool)
    return str(value) if big else orjson.dumps(value).decode()


def _encode(obj: dict[str, object], style: str) -> bytes:
    """JSON as orjson writes it, or as other producers do: ASCII with ``\\u`` escapes and
    spaces (Python's json), integers as floats (``5`` as ``5.0``), exponents (``1E2``)."""
    if style == "escaped":
        return json.dumps(obj, ensure_ascii=True, separators=(" , ", " : ")).encode()
    if style == "numbers":
        numbers = {
            k: (f"{v:.1E}" if isinstance(v, float) and math.isfinite(v) and v else v)
            for k, v in obj.items()
        }
        return (
            "{"
            + ",".join(
                f"{_json(k)}:{v if isinstance(v, str) and k == 'amount' else _json(v)}"
                for k, v in numbers.items()
            )
            + "}"
        ).encode()
    return ("{" + ",".join(f"{_json(k)}:{_json(v)}" for k, v in obj.items()) + "}").encode()


@settings(max_examples=3000, deadline=None)
@given(
    obj=payloads,
    drop=st.sampled_from([None, *_FIELDS]),
    style=st.sampled_from(["orjson", "escaped", "numbers"]),
)
def test_the_fast_path_takes_only_what_the_reference_takes_with_its_values(
    obj: dict[str, object],
    drop: str | None,
    style: str,
) -> None:
    if drop is not None:
        obj.pop(drop)
    payload = _encode(obj, style)
    fast = fraudnative.decode_transaction(payload)
    want = _reference(payload)
    if fast is not None:
        assert want is not None, payload
        _same(fast, want)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'"x"',
        b"{}",
        b'{"transaction_id": "a"}',
        b'{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00Z","amount":-1}',
        b'{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":NaN,"timestamp":"2026-04-01T08:30:00Z"}',
        b'{"transaction_id":"\xff","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00Z"}',
        b'{"transaction_id":"\\ud800","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00Z"}',
    ],
)
def test_what_the_fast_path_leaves_gets_the_references_error(payload: bytes) -> None:
    assert fraudnative.decode_transaction(payload) is None
    decode = decoder("native")
    with pytest.raises(InvalidEvent) as native:
        decode(payload)
    with pytest.raises(InvalidEvent) as reference:
        decode_transaction(payload)
    assert str(native.value) == str(reference.value)


_BASE = (
    '{"transaction_id":"a","card_id":"b","terminal_id":"c","timestamp":'
    '"2026-04-01T08:30:00Z","amount":%s}'
)


@pytest.mark.parametrize(
    "amount",
    [
        "-0",
        "-0.0",
        "0",
        "0.0",
        "1E2",
        "1e-2",
        "12.50",
        "-0e0",
        "1000000",
        "1000000.0",
        "1e6",
        "18446744073709551615",
        "9223372036854775808",
        "-9223372036854775809",
        "5e-324",
    ],
)
def test_numbers_as_any_producer_writes_them_decode_as_the_reference(amount: str) -> None:
    """serde and orjson read numbers differently (``-0`` is the integer 0 to orjson, -0.0
    to serde): the fast path gives the reference's value, bit for bit, or leaves it."""
    payload = (_BASE % amount).encode()
    fast, want = fraudnative.decode_transaction(payload), _reference(payload)
    if fast is not None:
        assert want is not None
        _same(fast, want)
    if want is not None:  # and the worker's decoder, whichever path it takes
        tx = decoder("native")(payload)
        assert struct.pack("<d", tx.amount) == struct.pack("<d", want.amount)


def test_a_card_history_with_a_time_that_is_not_a_number_is_refused() -> None:
    joined = struct.pack("<6d", 2.0, 1.0, 0.0, math.nan, 1.0, 0.0)
    with pytest.raises(ValueError, match="not a number"):
        fraudnative.card_history(joined)


def test_a_payload_that_is_not_bytes_is_left_to_the_reference() -> None:
    payload = bytearray(_BASE % "1", "ascii")
    assert decoder("native")(payload) == decode_transaction(payload)  # type: ignore[arg-type]


def test_the_generated_traffic_takes_the_fast_path() -> None:
    """Not a path that is never taken: the producers' payloads (with and without the
    optional fields) are all decoded by the compiled code, to the reference's values."""
    data = bench_data.build(3_000)
    values = data.take(3_000, start=0).transactions_only().values
    fast = [fraudnative.decode_transaction(v) for v in values]
    assert all(tx is not None for tx in fast)
    for tx, value in zip(fast, values, strict=True):
        _same(tx, decode_transaction(value))  # type: ignore[arg-type]
    optional = {"currency": "eur", "mcc": 5411, "country": "fr", "channel": "online"}
    for value in values[:200]:
        payload = orjson.dumps({**orjson.loads(value), **optional})
        tx = fraudnative.decode_transaction(payload)
        assert tx is not None and (tx.currency, tx.mcc, tx.country) == ("EUR", "5411", "FR")
        _same(tx, decode_transaction(payload))


def test_an_extra_field_is_left_to_the_reference_which_keeps_it() -> None:
    payload = (
        b'{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":1,'
        b'"timestamp":"2026-04-01T08:30:00Z","device_id":"emulator"}'
    )
    assert fraudnative.decode_transaction(payload) is None
    assert decoder("native")(payload).extra == {"device_id": "emulator"}
    assert math.isclose(decoder("native")(payload).amount, 1.0)
