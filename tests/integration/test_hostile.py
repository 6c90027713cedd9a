"""Hostile input against the running worker: every bad message lands in the dead-letter
topic with its reason, the worker stays up, and valid traffic between them is decided.

One worker for the module (its own topics, group and key prefix). A client on a loop
thread sends each message and reads the decisions and dead letters as they come, so each
example is checked on its own: a dead letter is matched to its message by partition and
offset, a decision by transaction id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fraudcore import FEATURE_NAMES, InvalidEvent
from service.records import MAX_DLQ_PAYLOAD, decode_transaction

from .conftest import BOOTSTRAP, Run, Worker, _admin, remove

WAIT = 30.0  # seconds for one message's outcome


def pan() -> str:
    """A fresh card number: 16 digits, distinctive enough to search logs and reasons for."""
    return "4" + "".join(secrets.choice("0123456789") for _ in range(15))


class Bridge:
    """A producer and a live reader of the decisions and dead letters (a loop thread)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.cond = threading.Condition()
        self.dead: dict[tuple[int, int], dict[str, Any]] = {}
        self.decisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.error: BaseException | None = None

    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Bridge:
        self.thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            self.run.topic("dlq"), self.run.topic("decisions"), bootstrap_servers=BOOTSTRAP,
            auto_offset_reset="earliest", group_id=None, enable_auto_commit=False,
        )
        await self.consumer.start()
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                batch = await self.consumer.getmany(timeout_ms=200)
                with self.cond:
                    for tp, messages in batch.items():
                        for m in messages:
                            record = orjson.loads(m.value)
                            if tp.topic == self.run.topic("dlq"):
                                self.dead[(record["partition"], record["offset"])] = record
                            else:
                                self.decisions[record["transaction_id"]].append(record)
                    self.cond.notify_all()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - surfaced by the waits
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def send(self, value: bytes | None, key: bytes | None) -> tuple[int, int]:
        meta = self._call(self.producer.send_and_wait(self.run.topic("transactions"), value,
                                                      key=key))
        return meta.partition, meta.offset

    def wait_dead(self, where: tuple[int, int], timeout: float = WAIT) -> dict[str, Any] | None:
        with self.cond:
            self.cond.wait_for(lambda: where in self.dead or self.error is not None, timeout)
            assert self.error is None, self.error
            return self.dead.get(where)

    def wait_decisions(self, tx_id: str, count: int = 1,
                       timeout: float = WAIT) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(
                lambda: len(self.decisions.get(tx_id, [])) >= count or self.error is not None,
                timeout,
            )
            assert self.error is None, self.error
            return list(self.decisions.get(tx_id, []))

    def close(self) -> None:
        async def stop() -> None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
            await self.consumer.stop()
            await self.producer.stop()

        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@dataclass(repr=False)
class Hostile:
    run: Run
    worker: Worker
    bridge: Bridge
    hostile_cards: set[str]

    def __repr__(self) -> str:
        return f"Hostile({self.run.run_id})"

    def valid(self, *, card: str | None = None, terminal: str | None = None,
              when: datetime | None = None, amount: float = 42.5,
              tx_id: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "transaction_id": tx_id or f"ok-{uuid.uuid4().hex}",
            "card_id": card or pan(),
            "terminal_id": terminal or f"T-{uuid.uuid4().hex[:12]}",
            "amount": amount,
            "timestamp": (when or datetime(2018, 6, 1, 12, tzinfo=UTC)).isoformat(),
            **extra,
        }

    def decide(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Send a valid transaction and return its (first) decision."""
        self.bridge.send(orjson.dumps(tx), str(tx["card_id"]).encode())
        decided = self.bridge.wait_decisions(tx["transaction_id"])
        assert decided, f"no decision for {tx['transaction_id']}:\n{self.worker.output()[-2000:]}"
        return decided[0]

    def dead_letter(self, payload: bytes | None, key: bytes | None) -> dict[str, Any]:
        where = self.bridge.send(payload, key)
        dead = self.bridge.wait_dead(where)
        assert dead is not None, f"no dead letter at {where}:\n{self.worker.output()[-2000:]}"
        return dead


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    run = Run()
    asyncio.run(_admin("create", run.topics))
    log = tmp_path_factory.mktemp("hostile") / "worker.log"
    worker = Worker(run.env(), log).start().wait_ready()
    bridge = Bridge(run).start()
    try:
        state = Hostile(run, worker, bridge, set())
        yield state
        # After every test of the module, whatever order they ran in (pytest-randomly):
        # no card number any of them sent is in the log or a dead letter's reason.
        _no_hostile_card_shown(state)
    finally:
        bridge.close()
        worker.stop()
        remove(run)


def _tx_json(**fields: Any) -> dict[str, Any]:
    base = {
        "transaction_id": f"h-{uuid.uuid4().hex}",
        "card_id": pan(),
        "terminal_id": f"T-{uuid.uuid4().hex[:12]}",
        "amount": 12.5,
        "timestamp": "2018-06-01T12:00:00+00:00",
    }
    base.update(fields)
    return base


def _without(field: str) -> bytes:
    tx = _tx_json()
    del tx[field]
    return orjson.dumps(tx)


def _raw_amount(token: str) -> bytes:
    """A transaction whose amount is the raw JSON token (NaN, Infinity, 1e400: not JSON)."""
    return orjson.dumps(_tx_json(amount=0)).replace(b'"amount":0', b'"amount":' + token.encode())


def _near_limit(**fields: Any) -> bytes:
    """A message just under the broker's 1 MiB limit (message.max.bytes 1048588)."""
    tx = _tx_json(**fields)
    size = 1_040_000
    filler = size - len(orjson.dumps({**tx, "memo": ""}))
    payload = orjson.dumps({**tx, "memo": "x" * filler})
    assert len(payload) == size
    return payload


def _corpus() -> list[tuple[str, bytes | None, str]]:
    """(what, payload, a piece of the expected reason)."""
    huge_id = "9" * 1_000_000
    return [
        ("empty value (tombstone)", None, "empty message"),
        ("empty bytes", b"", "not valid JSON (Input is a zero-length"),
        ("not JSON", b"hello, fraud team", "not valid JSON (unexpected character"),
        ("truncated JSON", orjson.dumps(_tx_json())[:-7], "not valid JSON"),
        ("JSON array", b"[1, 2, 3]", "expected a JSON object, got list"),
        ("JSON string", b'"4242424242424242"', "expected a JSON object, got str"),
        ("JSON null", b"null", "expected a JSON object, got NoneType"),
        ("nested 2000 deep", b"[" * 2000 + b"]" * 2000, "not valid JSON (depth limit exceeded"),
        ("amount as text", orjson.dumps(_tx_json(amount="12.50")),
         "amount: expected a number, got str"),
        ("amount as bool", orjson.dumps(_tx_json(amount=True)),
         "amount: expected a number, got bool"),
        ("amount null", orjson.dumps(_tx_json(amount=None)),
         "amount: expected a number, got NoneType"),
        ("card id as list", orjson.dumps(_tx_json(card_id=["4242"])),
         "card_id: expected a string or integer, got list"),
        ("card id as float", orjson.dumps(_tx_json(card_id=4242.0)),
         "card_id: expected a string or integer, got float"),
        ("terminal id as object", orjson.dumps(_tx_json(terminal_id={"id": 1})),
         "terminal_id: expected a string or integer, got dict"),
        ("timestamp as number", orjson.dumps(_tx_json(timestamp=1527854400)),
         "timestamp: expected an ISO 8601 string"),
        ("timestamp not a date", orjson.dumps(_tx_json(timestamp="yesterday noon")),
         "timestamp: not an ISO 8601 timestamp"),
        ("timestamp without offset", orjson.dumps(_tx_json(timestamp="2018-06-01T12:00:00")),
         "timestamp: needs a UTC offset"),
        *[(f"missing {f}", _without(f), f"{f}: missing required field")
          for f in ("transaction_id", "card_id", "terminal_id", "amount", "timestamp")],
        ("33 extra fields", orjson.dumps(_tx_json(**{f"x{i}": i for i in range(33)})),
         "too many extra fields (33 > 32)"),
        ("amount NaN", _raw_amount("NaN"), "not valid JSON (unexpected character"),
        ("amount Infinity", _raw_amount("Infinity"), "not valid JSON (unexpected character"),
        ("amount -Infinity", _raw_amount("-Infinity"), "not valid JSON"),
        ("amount 1e400", _raw_amount("1e400"), "not valid JSON (number is infinity"),
        ("amount negative", orjson.dumps(_tx_json(amount=-0.01)), "amount: must not be negative"),
        ("amount absurd", orjson.dumps(_tx_json(amount=1e15)), "amount: above the limit"),
        ("amount huge integer", _raw_amount("1" + "0" * 30), "amount: above the limit"),
        ("timestamp year 1970", orjson.dumps(_tx_json(timestamp="1970-01-01T00:00:00+00:00")),
         "timestamp: year 1970 outside 2000..2100"),
        ("timestamp year 0001", orjson.dumps(_tx_json(timestamp="0001-01-01T00:00:00+00:00")),
         "timestamp: year 1 outside"),
        ("timestamp year 2101", orjson.dumps(_tx_json(timestamp="2101-01-01T00:00:00+00:00")),
         "timestamp: year 2101 outside"),
        ("timestamp year 9999", orjson.dumps(_tx_json(timestamp="9999-12-31T23:59:59+14:00")),
         "timestamp: year 9999 outside"),
        ("transaction id 10 kB", orjson.dumps(_tx_json(transaction_id="x" * 10_000)),
         "transaction_id: length must be 1 to 128"),
        ("card id 1 MB, near the broker's limit", _near_limit(card_id=huge_id[:900_000]),
         "card_id: length must be 1 to 128"),
        ("blank terminal id", orjson.dumps(_tx_json(terminal_id="   ")),
         "terminal_id: length must be 1 to 128"),
        ("control character in card id", orjson.dumps(_tx_json(card_id="4242\u0000" + pan())),
         "card_id: contains non-printable characters"),
        ("invalid UTF-8", orjson.dumps(_tx_json()).replace(b'"T-', b'"\xff\xfeT-'),
         "not valid JSON (str is not valid UTF-8"),
        ("lone surrogate escape", orjson.dumps(_tx_json()).replace(b'"T-', b'"\\ud800T-'),
         "not valid JSON"),
        ("binary garbage", bytes(range(256)) * 4, "not valid JSON"),
    ]


def _cards_in(payload: bytes | None) -> set[str]:
    try:
        obj = orjson.loads(payload or b"")
    except orjson.JSONDecodeError:
        return set()
    card = obj.get("card_id") if isinstance(obj, dict) else None
    return {card} if isinstance(card, str) and 16 <= len(card) <= 64 else set()


def test_a_corpus_of_hostile_messages_is_dead_lettered_and_valid_traffic_between_is_decided(
    hostile: Hostile,
) -> None:
    corpus = _corpus()
    for what, payload, expected in corpus:
        cards = _cards_in(payload)
        hostile.hostile_cards |= cards
        key = min(cards, key=len).encode() if cards else pan().encode()
        key = key if len(key) <= 64 else pan().encode()  # the payload alone near the limit
        dead = hostile.dead_letter(payload, key)
        assert expected in dead["reason"], (what, dead["reason"])
        assert not any(card in dead["reason"] for card in cards), (what, dead["reason"])
        raw = payload or b""
        assert dead["topic"] == hostile.run.topic("transactions")
        assert dead["payload_bytes"] == len(raw)
        assert dead["payload_truncated"] == (len(raw) > MAX_DLQ_PAYLOAD)
        assert len(dead["payload"]) <= 4 * MAX_DLQ_PAYLOAD // 3 + 4  # base64 at worst
        # Valid traffic between the hostile messages keeps flowing.
        decision = hostile.decide(hostile.valid())
        assert decision["action"] in {"approve", "review", "decline"}
        assert hostile.worker.process is not None and hostile.worker.process.poll() is None
    text = [d for d in hostile.bridge.dead.values() if "internal error" in d["reason"]]
    assert not text, text


def test_odd_but_valid_transactions_are_decided(hostile: Hostile) -> None:
    """Valid at the edges: extra fields (up to 32), zero and maximal amounts, integer ids,
    the first accepted year, just inside the future horizon (FRAUD_MAX_FUTURE_SECONDS, one
    hour by default), and a valid message just under 1 MiB."""
    cases = [
        hostile.valid(**{f"x{i}": {"nested": [i, None, "text"]} for i in range(32)}),
        hostile.valid(amount=0),
        hostile.valid(amount=1_000_000),
        hostile.valid(card=pan(), terminal="T-€-ünïcødé-终端"),
        hostile.valid(when=datetime(2000, 1, 1, tzinfo=UTC)),
        hostile.valid(when=datetime.now(UTC) + timedelta(minutes=50)),
    ]
    integer_ids = hostile.valid()
    integer_ids.update(transaction_id=int(uuid.uuid4().int % 10**18),
                       card_id=int(pan()), terminal_id=int(uuid.uuid4().int % 10**18))
    for tx in cases:
        decision = hostile.decide(tx)
        assert decision["duplicate"] is False and decision["degraded"] is False
    hostile.bridge.send(orjson.dumps(integer_ids), str(integer_ids["card_id"]).encode())
    decided = hostile.bridge.wait_decisions(str(integer_ids["transaction_id"]))
    assert decided and decided[0]["card_id"] == str(integer_ids["card_id"])
    big = f"big-{uuid.uuid4().hex}"
    near_limit = _near_limit(transaction_id=big)
    hostile.bridge.send(near_limit, str(orjson.loads(near_limit)["card_id"]).encode())
    assert hostile.bridge.wait_decisions(big)


def test_duplicate_ids_with_other_content_are_dead_lettered_and_the_first_stands(
    hostile: Hostile,
) -> None:
    first = hostile.valid()
    decided = hostile.decide(first)
    key = first["card_id"].encode()
    for what, change in (("amount", {"amount": 999.99}),
                         ("time", {"timestamp": "2018-06-01T12:00:01+00:00"})):
        dead = hostile.dead_letter(orjson.dumps({**first, **change}), key)
        assert "seen before with another time, amount or terminal" in dead["reason"], what
        assert first["card_id"] not in dead["reason"]
    again = hostile.bridge.send(orjson.dumps(first), key)
    assert again
    copies = hostile.bridge.wait_decisions(first["transaction_id"], count=2)
    assert len(copies) == 2 and copies[1]["duplicate"] is True
    assert (copies[1]["score"], copies[1]["action"]) == (decided["score"], decided["action"])
    # The first one stands: the next transaction of the card sees one earlier transaction.
    later = hostile.valid(card=first["card_id"], when=datetime(2018, 6, 1, 13, tzinfo=UTC))
    features = _features_of(hostile, later)
    assert features["tx_count_by_card_1d"] == 2.0
    assert features["amount_mean_by_card_1d"] == (first["amount"] + later["amount"]) / 2


def _features_of(hostile: Hostile, tx: dict[str, Any]) -> dict[str, float]:
    """Features of ``tx`` as the worker computes them. The module's worker leaves them out
    of its decisions, so an auditing worker on the same state (key prefix) decides it, on
    topics and in a group of its own."""
    audit = Run()
    asyncio.run(_admin("create", audit.topics))
    env = audit.env(FRAUD_INCLUDE_FEATURES="true", FRAUD_REDIS_KEY_PREFIX=hostile.run.prefix)
    log = hostile.worker.log_path.with_name(f"audit-{audit.run_id}.log")
    worker = Worker(env, log).start().wait_ready()
    bridge = Bridge(audit).start()
    try:
        bridge.send(orjson.dumps(tx), str(tx["card_id"]).encode())
        decided = bridge.wait_decisions(tx["transaction_id"])
        assert decided, worker.output()[-2000:]
        features = decided[0]["features"]
        assert list(features) == list(FEATURE_NAMES)
        return features
    finally:
        bridge.close()
        worker.stop()
        asyncio.run(_admin("delete", audit.topics))


def test_a_duplicate_id_at_another_terminal_is_dead_lettered(hostile: Hostile) -> None:
    first = hostile.valid()
    hostile.decide(first)
    other = {**first, "terminal_id": f"T-{uuid.uuid4().hex[:12]}"}
    where = hostile.bridge.send(orjson.dumps(other), first["card_id"].encode())
    dead = hostile.bridge.wait_dead(where, timeout=5)
    assert dead is not None and "seen before" in dead["reason"]
    # refused, not decided: the first one's decision stays the only one
    assert len(hostile.bridge.wait_decisions(first["transaction_id"], count=2, timeout=2)) == 1


def test_a_duplicate_id_with_another_card_is_dead_lettered(hostile: Hostile) -> None:
    # Ids are indexed for a card's retention in event time: a recent transaction.
    now = datetime.now(UTC).replace(microsecond=0)
    first = hostile.valid(when=now - timedelta(minutes=5))
    hostile.decide(first)
    other = {**first, "card_id": pan()}
    hostile.hostile_cards.add(other["card_id"])
    where = hostile.bridge.send(orjson.dumps(other), other["card_id"].encode())
    dead = hostile.bridge.wait_dead(where, timeout=10)
    assert dead is not None and "seen before with another card" in dead["reason"]
    assert len(hostile.bridge.wait_decisions(first["transaction_id"], count=2, timeout=2)) == 1
    # Refused, so never counted: the other card's next transaction sees no history.
    later = hostile.valid(card=other["card_id"], when=now - timedelta(minutes=4))
    assert _features_of(hostile, later)["tx_count_by_card_1d"] == 1.0


def test_a_transaction_dated_far_ahead_does_not_erase_a_cards_history(hostile: Hostile) -> None:
    card = pan()
    hostile.hostile_cards.add(card)
    noon = datetime(2018, 6, 1, 12, tzinfo=UTC)
    for minutes in (0, 10):
        hostile.decide(hostile.valid(card=card, when=noon + timedelta(minutes=minutes)))
    ahead = hostile.valid(card=card, when=datetime(2099, 1, 1, tzinfo=UTC))
    where = hostile.bridge.send(orjson.dumps(ahead), card.encode())
    dead = hostile.bridge.wait_dead(where, timeout=10)
    assert dead is not None and "ahead of the worker's clock" in dead["reason"]
    later = hostile.valid(card=card, when=noon + timedelta(minutes=20))
    assert _features_of(hostile, later)["tx_count_by_card_1d"] == 3.0


# -- property: any hostile mutation of a transaction -------------------------------------

_IDS = ("transaction_id", "card_id", "terminal_id")
_not_id = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
    st.just(""), st.text(alphabet=" \t\n", min_size=1, max_size=4),
    st.text(min_size=129, max_size=3000),
    st.text(alphabet=st.characters(categories=["Cc", "Zl", "Zp"]), min_size=1,
            max_size=4).map(lambda s: "id" + s),
    st.integers(min_value=10**128, max_value=10**200),
)
_not_amount = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.lists(st.floats(), max_size=2),
    st.floats(max_value=-1e-12, allow_infinity=False, allow_nan=False),
    st.floats(min_value=1_000_000.01, allow_infinity=False, allow_nan=False),
    st.integers(max_value=-1), st.integers(min_value=1_000_001, max_value=10**40),
)
_not_timestamp = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=30),
    st.datetimes(max_value=datetime(1999, 12, 31, 9), timezones=st.just(UTC)).map(
        datetime.isoformat),
    st.datetimes(min_value=datetime(2101, 1, 2), timezones=st.just(UTC)).map(
        datetime.isoformat),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31)).map(
        datetime.isoformat),  # naive
)
@dataclass(frozen=True)
class Mutation:
    """What to do to a valid transaction (drawn by hypothesis; applied in the test, which
    supplies fresh ids: a strategy must not draw randomness of its own)."""

    kind: str
    field: str = ""
    value: Any = None
    dropped: tuple[str, ...] = ()
    count: int = 0
    raw: bytes = b""

    def apply(self, tx: dict[str, Any]) -> tuple[bytes, set[str]]:
        """The payload, and the card ids it carries in clear."""
        cards = {tx["card_id"]}
        if self.kind == "replace":
            # json, not orjson: integers beyond 64 bits are hostile input too.
            return json.dumps({**tx, self.field: self.value}).encode(), cards
        if self.kind == "drop":
            return orjson.dumps({k: v for k, v in tx.items() if k not in self.dropped}), cards
        if self.kind == "extra":
            return orjson.dumps({**tx, **{f"extra{i}": i for i in range(self.count)}}), cards
        if self.kind == "raw-number":
            payload = orjson.dumps({**tx, "amount": 0})
            return payload.replace(b'"amount":0', b'"amount":' + self.raw), cards
        if self.kind == "utf8":
            return orjson.dumps(tx).replace(b'"T-', b'"' + self.raw + b"T-"), cards
        if self.kind == "not-object":
            return json.dumps(self.value).encode(), set()
        if self.kind == "bytes":
            return self.raw, set()
        assert self.kind == "nested"
        return b'{"a":' * self.count + b"1" + b"}" * self.count, set()


_FIELDS = ("transaction_id", "card_id", "terminal_id", "amount", "timestamp")
_RAW_NUMBERS = (b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e99999")
_BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80", b"\xc0\xaf")

hostile_mutations = st.one_of(
    st.sampled_from(_FIELDS).flatmap(lambda f: st.builds(
        Mutation, kind=st.just("replace"), field=st.just(f),
        value={"amount": _not_amount, "timestamp": _not_timestamp}.get(f, _not_id),
    )),
    st.builds(Mutation, kind=st.just("drop"),
              dropped=st.sets(st.sampled_from(_FIELDS), min_size=1).map(tuple)),
    st.builds(Mutation, kind=st.just("extra"), count=st.integers(33, 80)),
    st.builds(Mutation, kind=st.just("raw-number"), raw=st.sampled_from(_RAW_NUMBERS)),
    st.builds(Mutation, kind=st.just("utf8"), raw=st.sampled_from(_BAD_UTF8)),
    st.builds(Mutation, kind=st.just("not-object"), value=st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=20),
        st.lists(st.integers(), max_size=4))),
    st.builds(Mutation, kind=st.just("bytes"), raw=st.binary(max_size=600)),
    st.builds(Mutation, kind=st.just("nested"), count=st.integers(1025, 5000)),
)


def _oracle(payload: bytes) -> str | None:
    """The reason this code gives for the payload, or None when it is valid."""
    try:
        decode_transaction(payload)
    except InvalidEvent as exc:
        return str(exc)
    return None


# The Bridge's Kafka clients run in another thread, and aiokafka draws from the global
# `random` (broker choice) while hypothesis generates; hypothesis then blames the strategy.
# The strategies here draw nothing of their own, so that one warning is not ours.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@settings(max_examples=120, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutation=hostile_mutations)
def test_property_any_hostile_message_is_dead_lettered_with_its_reason(
    hostile: Hostile, mutation: Mutation
) -> None:
    payload, cards = mutation.apply(_tx_json())
    reason = _oracle(payload)
    if reason is None:
        # A mutation that happens to be valid (say, an integer card id) is decided as usual,
        # unless it chose an id an earlier example also chose (then it is a redelivery).
        tx_id = str(orjson.loads(payload)["transaction_id"])
        assume(tx_id.startswith("h-"))
        # keyed as the worker requires: by the card id as it reads it
        hostile.bridge.send(payload, decode_transaction(payload).card_id.encode())
        assert hostile.bridge.wait_decisions(tx_id)
    else:
        hostile.hostile_cards |= cards
        dead = hostile.dead_letter(payload, None)
        assert dead["reason"] == reason
        assert not any(card in dead["reason"] for card in cards)
    hostile.decide(hostile.valid())  # valid traffic right behind it is decided
    assert hostile.worker.process is not None and hostile.worker.process.poll() is None


def _no_hostile_card_shown(hostile: Hostile) -> None:
    assert hostile.worker.process is not None and hostile.worker.process.poll() is None
    log = hostile.worker.output()
    leaked = [card for card in hostile.hostile_cards if card in log]
    assert not leaked, leaked
    assert "Traceback" not in log, log[-3000:]
    reasons = " ".join(d["reason"] for d in hostile.bridge.dead.values())
    assert not [card for card in hostile.hostile_cards if card in reasons]


def test_the_worker_survived_and_never_logged_a_hostile_card_number(hostile: Hostile) -> None:
    """Whatever ran before it (the order is random): a hostile message of its own first,
    then every card number sent so far looked for (the module's fixture looks again once
    every test has run)."""
    card = pan()
    hostile.hostile_cards.add(card)
    dead = hostile.dead_letter(orjson.dumps(_tx_json(card_id=card, amount=-1)), card.encode())
    assert dead["reason"] == "amount: must not be negative"
    _no_hostile_card_shown(hostile)
