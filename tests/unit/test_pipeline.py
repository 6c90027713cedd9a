"""The batch path end to end, without Kafka or Redis: the real pipeline on the in-memory
reference store, the real model, and a sink that records what the broker would get."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from fraudcore import Transaction
from service.lineage import Lineage
from service.memory import MemoryStore
from service.model import Model, ModelHolder
from service.pipeline import BatchPipeline, Options, Output, OutputTopics
from service.ports import Answer, OnPart
from service.records import Message, Source

ROOT = Path(__file__).resolve().parents[2]
TOPICS = OutputTopics("decisions", "alerts", "dlq")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = (T0 + timedelta(days=1)).timestamp()  # the worker's clock in these tests


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(ROOT / "models")


def tx(n: int, *, card: str = "card-1", terminal: str = "T-1", amount: float = 20.0,
       at: datetime | None = None, tx_id: str | None = None) -> bytes:
    when = at if at is not None else T0 + timedelta(minutes=n)
    return orjson.dumps({
        "transaction_id": tx_id or f"tx-{n}",
        "card_id": card,
        "terminal_id": terminal,
        "amount": amount,
        "timestamp": when.isoformat(),
    })


def label(n: int, *, known_after: timedelta = timedelta(hours=1), **change: Any) -> bytes:
    """The label of ``tx(n)`` (as built with its defaults), known ``known_after`` it;
    ``change`` overrides fields (to name other content than the transaction's)."""
    fields = orjson.loads(tx(n))
    fields["known_at"] = (T0 + timedelta(minutes=n) + known_after).isoformat()
    fields.update(change)
    return orjson.dumps(fields)


_offsets: Iterator[int] = iter(range(10**9))


def _card_key(value: bytes | None) -> bytes | None:
    """The key a producer gives a record: its card id (when it has one)."""
    try:
        return str(orjson.loads(value or b"")["card_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def messages(*values: bytes | None, topic: str = "transactions") -> list[Message]:
    return [Message(v, Source(topic, 0, next(_offsets)), _card_key(v)) for v in values]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class RecordingSink:
    """Acknowledges every record at once and keeps it; ``refuse`` sends raise, ``nack`` acks
    fail (each counted down per record)."""

    sent: list[Output] = field(default_factory=list)
    refuse: int = 0
    nack: int = 0
    attempts: int = 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[object]:
        self.attempts += 1
        if self.refuse > 0:
            self.refuse -= 1
            raise ConnectionError("producer not ready")
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.nack > 0:
            self.nack -= 1
            ack.set_exception(TimeoutError("no acknowledgement"))
        else:
            self.sent.append(Output(topic, key, value))
            ack.set_result(None)
        return ack

    def records(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(o.value) for o in self.sent if o.topic == topic]


def pipeline(
    models: ModelHolder,
    store: MemoryStore | None = None,
    sink: RecordingSink | None = None,
    **options: Any,
) -> BatchPipeline:
    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    return BatchPipeline(
        store or MemoryStore(clock=lambda: NOW), models, sink or RecordingSink(), topics=TOPICS,
        options=Options(**options), clock=lambda: NOW, sleep=no_wait,
    )


async def decide(p: BatchPipeline, batch: list[Message]) -> None:
    delivery = await p.transactions(batch, [NOW] * len(batch))
    await delivery.confirmed()


def sink_of(p: BatchPipeline) -> RecordingSink:
    assert isinstance(p.sink, RecordingSink)
    return p.sink


# --- the happy path ----------------------------------------------------------------------


def test_decisions_in_batch_order_with_alerts_for_every_non_approval(models: ModelHolder) -> None:
    p = pipeline(models)
    batch = messages(*(tx(n, amount=10.0 + n) for n in range(5)), tx(5, amount=9_000.0))
    asyncio.run(decide(p, batch))
    decisions = sink_of(p).records("decisions")
    assert [d["transaction_id"] for d in decisions] == [f"tx-{n}" for n in range(6)]
    alerts = sink_of(p).records("alerts")
    assert [a["transaction_id"] for a in alerts] == [
        d["transaction_id"] for d in decisions if d["action"] != "approve"
    ]
    assert all(d["model_version"] == models.model.version for d in decisions)
    assert not any(d["degraded"] or d["duplicate"] for d in decisions)
    # each decision's output is keyed by its card
    assert {o.key for o in sink_of(p).sent if o.topic == "decisions"} == {b"card-1"}


def test_features_read_the_card_history_recorded_by_earlier_batches(models: ModelHolder) -> None:
    p = pipeline(models, include_features=True)
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    asyncio.run(decide(p, messages(tx(2))))
    last = sink_of(p).records("decisions")[-1]["features"]
    assert last["tx_count_by_card_1d"] == 3  # tx-0 and tx-1 from the batch before, and itself


def test_the_same_transaction_again_is_a_duplicate_with_the_same_score(models: ModelHolder) -> None:
    p = pipeline(models)
    duplicates = metric("fraud_duplicate_decisions_total")
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    assert metric("fraud_duplicate_decisions_total") == duplicates
    asyncio.run(decide(p, messages(tx(1))))
    first, again = (d for d in sink_of(p).records("decisions") if d["transaction_id"] == "tx-1")
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["score"] == first["score"]
    assert metric("fraud_duplicate_decisions_total") - duplicates == 1
    assert metric("fraud_last_decision_timestamp_seconds") == NOW  # the worker's clock


# --- the message's fault: dead letters ---------------------------------------------------


def test_invalid_messages_are_dead_lettered_with_their_reason_and_source(
    models: ModelHolder,
) -> None:
    p = pipeline(models)
    batch = messages(b"not json", None, tx(0))
    before = metric("fraud_dead_letters_total", topic="transactions", reason="invalid")
    asyncio.run(decide(p, batch))
    dead = sink_of(p).records("dlq")
    assert [(d["offset"], d["reason"].split(" (")[0]) for d in dead] == [
        (batch[0].source.offset, "not valid JSON"),
        (batch[1].source.offset, "empty message: a transaction needs a JSON object value"),
    ]
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-0"]
    assert metric("fraud_dead_letters_total", topic="transactions", reason="invalid") - before == 2


def test_an_event_beyond_the_horizon_is_dead_lettered_and_leaves_state_alone(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store, max_future_seconds=60.0)
    future = datetime.fromtimestamp(NOW + 61, UTC)
    near = datetime.fromtimestamp(NOW + 59, UTC)
    asyncio.run(decide(p, messages(tx(0, at=future), tx(1, at=near))))
    [dead] = sink_of(p).records("dlq")
    assert dead["reason"] == "timestamp: more than 60 s ahead of the worker's clock"
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-1"]
    assert store.state.cards["card-1"].get("tx-0") is None


def test_a_reused_id_with_other_content_is_dead_lettered_and_the_first_stands(
    models: ModelHolder,
) -> None:
    p = pipeline(models, include_features=True)
    asyncio.run(decide(p, messages(tx(0))))
    asyncio.run(decide(p, messages(tx(0, amount=999.0), tx(0, card="card-2"), tx(1))))
    reasons = [d["reason"] for d in sink_of(p).records("dlq")]
    assert len(reasons) == 2
    assert "another time, amount or terminal" in reasons[0]
    assert "another card" in reasons[1]
    ids = [d["transaction_id"] for d in sink_of(p).records("decisions")]
    assert ids == ["tx-0", "tx-1"]
    # neither refused copy counts in card-1's history: tx-0 and tx-1 itself
    assert sink_of(p).records("decisions")[-1]["features"]["tx_count_by_card_1d"] == 2


def test_without_the_id_index_another_card_may_use_the_same_id(models: ModelHolder) -> None:
    p = pipeline(models, MemoryStore(ids=False, clock=lambda: NOW))
    asyncio.run(decide(p, messages(tx(0), tx(0, card="card-2"))))
    assert len(sink_of(p).records("decisions")) == 2
    assert not sink_of(p).records("dlq")


# --- the system's fault: hold, fail open, send again -------------------------------------


def test_hold_waits_for_the_store_and_decides_nothing_degraded(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    store.down = True
    waits: list[float] = []

    async def outage_of_three_waits(seconds: float) -> None:
        waits.append(seconds)
        assert "state" in p.readiness.faults and metric("fraud_faults", part="state") == 1
        store.down = len(waits) < 3

    sink = RecordingSink()
    p = BatchPipeline(store, models, sink, topics=TOPICS, options=Options(retry_max_seconds=0.3),
                      clock=lambda: NOW, sleep=outage_of_three_waits)
    held = metric("fraud_state_unavailable_total")
    assert p.readiness.ready
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    assert waits == [0.1, 0.2, 0.3]  # capped backoff
    assert p.readiness.ready and metric("fraud_faults", part="state") == 0
    assert metric("fraud_state_unavailable_total") - held == 3
    assert [d["degraded"] for d in sink.records("decisions")] == [False, False]
    assert not sink.records("dlq")


def test_fail_open_decides_on_empty_history_then_records_the_backlog_first(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store, fail_policy="open", include_features=True)
    asyncio.run(decide(p, messages(tx(0))))
    store.down = True
    degraded = metric("fraud_degraded_decisions_total")
    asyncio.run(decide(p, messages(tx(1), tx(2))))
    assert metric("fraud_degraded_decisions_total") - degraded == 2
    during = sink_of(p).records("decisions")[1:]
    assert [d["degraded"] for d in during] == [True, True]
    assert all(d["features"]["tx_count_by_card_1d"] == 1 for d in during)  # itself only
    assert p.unrecorded == 2
    store.down = False
    asyncio.run(decide(p, messages(tx(3))))
    after = sink_of(p).records("decisions")[-1]
    assert not after["degraded"]
    assert after["features"]["tx_count_by_card_1d"] == 4  # tx-0, tx-1 and tx-2 (late), itself
    assert p.unrecorded == 0


def test_the_fail_open_backlog_is_capped_and_what_it_drops_is_counted(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    store.down = True
    p = pipeline(models, store, fail_policy="open", max_unrecorded=3)
    dropped = metric("fraud_unrecorded_dropped_total")
    asyncio.run(decide(p, messages(*(tx(n) for n in range(5)))))
    assert p.unrecorded == 3
    assert metric("fraud_unrecorded_dropped_total") - dropped == 2
    recorded = metric("fraud_recorded_late_total")
    store.down = False
    asyncio.run(decide(p, messages(tx(9))))
    assert metric("fraud_recorded_late_total") - recorded == 3
    assert p.unrecorded == 0
    # the newest three were kept and recorded, the two oldest never
    assert store.state.cards["card-1"].get("tx-0") is None
    assert store.state.cards["card-1"].get("tx-2") is not None


def test_outputs_that_cannot_be_queued_are_sent_again(models: ModelHolder) -> None:
    sink = RecordingSink(refuse=3)
    p = pipeline(models, sink=sink)
    asyncio.run(decide(p, messages(tx(0), tx(1), b"{")))
    assert [o.topic for o in sink.sent].count("decisions") == 2
    assert [o.topic for o in sink.sent].count("dlq") == 1


def test_outputs_the_broker_did_not_acknowledge_are_all_sent_again(models: ModelHolder) -> None:
    sink = RecordingSink(nack=1)
    p = pipeline(models, sink=sink)
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    # at least once: the second copy of every record is there, none is missing
    assert [r["transaction_id"] for r in sink.records("decisions")] == ["tx-1", "tx-0", "tx-1"]


def test_outputs_that_cannot_be_sent_make_the_worker_unready_and_count_nothing_until_sent(
    models: ModelHolder,
) -> None:
    """A missing output topic, a broker refusing: the batch is sent again until it is in,
    /health says why meanwhile, and its decisions are counted only once delivered."""
    sink = RecordingSink(nack=1, refuse=2)  # the first ack fails, then two sends raise
    seen: list[tuple[dict[str, str], float]] = []

    async def watching(seconds: float) -> None:
        seen.append((p.readiness.faults, metric("fraud_decisions_total", action="approve")))

    p = BatchPipeline(MemoryStore(clock=lambda: NOW), models, sink, topics=TOPICS,
                      clock=lambda: NOW, sleep=watching)
    before = metric("fraud_decisions_total", action="approve")
    asyncio.run(decide(p, messages(tx(0))))
    assert seen, "the sends were retried"
    assert all("output" in faults and "decisions" in faults["output"] for faults, _ in seen)
    assert all(count == before for _, count in seen)  # nothing counted while undelivered
    assert metric("fraud_decisions_total", action="approve") == before + 1
    assert p.readiness.faults == {}  # delivered: ready again


def test_a_model_that_fails_at_run_time_holds_the_batch_until_a_model_scores_it(
    models: ModelHolder,
) -> None:
    class Broken:
        def run(self, *args: object) -> object:
            raise RuntimeError("onnxruntime fell over")

    @dataclass
    class SwappedModels:
        model: Model
        challenger: Model | None = None

    serving = SwappedModels(Model(models.model.info, Broken()))
    faults_seen: list[dict[str, str]] = []

    async def a_good_model_after_two_waits(seconds: float) -> None:
        faults_seen.append(p.readiness.faults)
        if len(faults_seen) == 2:
            serving.model = models.model  # e.g. a fixed model swapped in

    sink = RecordingSink()
    p = BatchPipeline(MemoryStore(clock=lambda: NOW), serving, sink, topics=TOPICS,
                      clock=lambda: NOW, sleep=a_good_model_after_two_waits)
    failures = metric("fraud_model_failures_total")
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    assert metric("fraud_model_failures_total") - failures == 2
    assert [set(f) for f in faults_seen] == [{"model"}, {"model"}]
    assert "onnxruntime fell over" in faults_seen[0]["model"]
    assert p.readiness.ready  # cleared once it scored
    assert [d["transaction_id"] for d in sink.records("decisions")] == ["tx-0", "tx-1"]
    assert not sink.records("dlq")


# --- order across overlapping batches ----------------------------------------------------


class GatedStore(MemoryStore):
    """Holds the first exchange until ``opened`` is set."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.opened = asyncio.Event()
        self.calls = 0

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        self.calls += 1
        if self.calls == 1:
            await self.opened.wait()
        return await super().exchange(transactions, on_part)


def test_overlapping_batches_record_state_and_queue_outputs_in_the_order_they_came(
    models: ModelHolder,
) -> None:
    async def scenario() -> RecordingSink:
        store = GatedStore()
        p = pipeline(models, store, include_features=True)
        first = asyncio.ensure_future(decide(p, messages(tx(0), tx(1))))
        second = asyncio.ensure_future(decide(p, messages(tx(2))))
        await asyncio.sleep(0.01)
        assert store.calls == 1  # the second batch waits for the first's state turn
        store.opened.set()
        await asyncio.gather(first, second)
        return sink_of(p)

    sink = asyncio.run(scenario())
    decisions = sink.records("decisions")
    assert [d["transaction_id"] for d in decisions] == ["tx-0", "tx-1", "tx-2"]
    assert decisions[-1]["features"]["tx_count_by_card_1d"] == 3  # the first batch's two too


class CardGatedStore(MemoryStore):
    """Holds every exchange of a batch with ``card`` until ``opened`` is set; records the
    order exchanges start and end in, by their first transaction's id."""

    def __init__(self, card: str) -> None:
        super().__init__(clock=lambda: NOW)
        self.card = card
        self.opened = asyncio.Event()
        self.started: list[str] = []
        self.ended: list[str] = []

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        self.started.append(transactions[0].transaction_id)
        if any(t.card_id == self.card for t in transactions):
            await self.opened.wait()
        answers = await super().exchange(transactions, on_part)
        self.ended.append(transactions[0].transaction_id)
        return answers


def test_batches_of_other_cards_exchange_state_at_once_and_outputs_keep_batch_order(
    models: ModelHolder,
) -> None:
    async def scenario() -> tuple[CardGatedStore, RecordingSink]:
        store = CardGatedStore("card-1")
        p = pipeline(models, store, include_features=True)
        batches = [messages(tx(0), tx(1)), messages(tx(2, card="card-2")),
                   messages(tx(3)), messages(tx(4, card="card-3"))]
        running = [asyncio.ensure_future(decide(p, b)) for b in batches]
        for _ in range(20):
            await asyncio.sleep(0)
        # card-1's first batch is held in the store; the batches of other cards exchanged
        # meanwhile, card-1's second batch waits for its first.
        assert store.started == ["tx-0", "tx-2", "tx-4"]
        assert store.ended == ["tx-2", "tx-4"]
        assert sink_of(p).sent == []  # their outputs wait for the first batch's
        store.opened.set()
        await asyncio.gather(*running)
        return store, sink_of(p)

    store, sink = asyncio.run(scenario())
    assert store.started == ["tx-0", "tx-2", "tx-4", "tx-3"]
    decisions = sink.records("decisions")
    assert [d["transaction_id"] for d in decisions] == ["tx-0", "tx-1", "tx-2", "tx-3", "tx-4"]
    assert decisions[3]["features"]["tx_count_by_card_1d"] == 3  # card-1's first two too


def test_a_batch_that_cannot_be_decoded_waits_for_every_earlier_one(
    models: ModelHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> CardGatedStore:
        store = CardGatedStore("card-1")
        p = pipeline(models, store)
        decode_held = p._decode_held
        calls = 0

        async def first_fails(batch: Sequence[Message]) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("a bug in decoding")
            return await decode_held(batch)

        monkeypatch.setattr(p, "_decode_held", first_fails)
        held = asyncio.ensure_future(decide(p, messages(tx(0))))
        other_cards = messages(tx(1, card="card-2"), tx(2, card="card-3"))
        broken = asyncio.ensure_future(decide(p, other_cards))
        for _ in range(20):
            await asyncio.sleep(0)
        assert store.started == ["tx-0"]  # it claims every card: it waits for card-1's
        store.opened.set()
        await asyncio.gather(held, broken)
        return store

    store = asyncio.run(scenario())
    assert store.started == ["tx-0", "tx-1", "tx-2"]  # then a message at a time


# --- labels ------------------------------------------------------------------------------


def test_labels_are_recorded_and_bad_ones_dead_lettered(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store)
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    batch = messages(label(0), b"[]", label(1), topic="fraud-labels")
    recorded = asyncio.run(p.labels(batch))
    assert recorded == 2
    assert [x.transaction_id for x in store.labels] == ["tx-0", "tx-1"]
    [dead] = sink_of(p).records("dlq")
    assert (dead["topic"], dead["offset"]) == ("fraud-labels", batch[1].source.offset)


def test_labels_wait_for_the_store_even_under_fail_open(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    waits: list[float] = []

    async def back_after_two(seconds: float) -> None:
        waits.append(seconds)
        store.down = len(waits) < 2

    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS,
                      options=Options(fail_policy="open"), clock=lambda: NOW, sleep=back_after_two)
    asyncio.run(decide(p, messages(tx(0))))
    store.down = True
    assert asyncio.run(p.labels(messages(label(0), topic="fraud-labels"))) == 1
    assert len(waits) == 2 and [x.transaction_id for x in store.labels] == ["tx-0"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"amount": 21.0}, "another time, amount or terminal"),
        ({"terminal_id": "T-other"}, "another time, amount or terminal"),
        ({"timestamp": (T0 + timedelta(seconds=1)).isoformat()}, "another time, amount"),
    ],
    ids=["amount", "terminal", "time"],
)
def test_a_label_that_names_other_content_than_its_transaction_is_dead_lettered_at_once(
    models: ModelHolder, change: dict[str, Any], why: str
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store, label_wait_seconds=3600.0)
    asyncio.run(decide(p, messages(tx(0))))
    assert asyncio.run(p.labels(messages(label(0, **change), topic="fraud-labels"))) == 0
    [dead] = sink_of(p).records("dlq")
    assert why in dead["reason"] and store.labels == []


def test_a_label_read_before_its_transaction_waits_for_it(models: ModelHolder) -> None:
    """Two topics: the label may be read first. It waits (the rest of its batch recorded
    at once), and is recorded as soon as the transaction is."""
    store = MemoryStore(clock=lambda: NOW)
    sink = RecordingSink()
    pauses: list[float] = []

    async def meanwhile(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:  # the transaction comes while the label waits
            await decide(p, messages(tx(1)))

    p = BatchPipeline(store, models, sink, topics=TOPICS, options=Options(), clock=lambda: NOW,
                      sleep=meanwhile)
    asyncio.run(decide(p, messages(tx(0))))
    assert asyncio.run(p.labels(messages(label(1), label(0), topic="fraud-labels"))) == 2
    assert [x.transaction_id for x in store.labels] == ["tx-0", "tx-1"]
    assert len(pauses) == 3 and sink.records("dlq") == []
    assert metric("fraud_labels_waiting") == 0


def test_a_label_whose_transaction_never_comes_is_dead_lettered_after_the_wait(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store, label_wait_seconds=0.0)
    asyncio.run(decide(p, messages(tx(0))))
    batch = messages(label(7), label(0, card_id="card-2"), label(0), topic="fraud-labels")
    batch[1] = Message(batch[1].value, batch[1].source, b"card-2")  # keyed as it says
    assert asyncio.run(p.labels(batch)) == 1
    other_card, unknown = sink_of(p).records("dlq")  # the mismatch at once, then after the wait
    assert unknown["offset"] == batch[0].source.offset
    assert "no transaction with this id was recorded on this card (waited 0 s" in unknown["reason"]
    assert other_card["offset"] == batch[1].source.offset  # the id index: card-1's id
    assert "recorded with another time, amount or terminal" in other_card["reason"]


def test_a_label_its_card_has_gone_past_is_dead_lettered_without_waiting(
    models: ModelHolder,
) -> None:
    """A card's transactions come in order: once it recorded later ones (beyond the grace),
    a label naming an id it never saw will never match — no wait."""
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store, label_wait_seconds=3600.0)
    asyncio.run(decide(p, messages(tx(0))))
    earlier = (T0 - timedelta(days=4)).isoformat()
    assert asyncio.run(p.labels(messages(label(1, timestamp=earlier), topic="fraud-labels"))) == 0
    [dead] = sink_of(p).records("dlq")
    assert "the card has recorded later ones" in dead["reason"]


@pytest.mark.parametrize(
    ("known_after", "why"),
    [
        (timedelta(days=34), "more than 33 days after the transaction"),
        (timedelta(days=5), "ahead of the worker's clock"),
    ],
    ids=["too-late-for-its-card", "from-the-future"],
)
def test_a_label_too_late_or_from_the_future_is_dead_lettered(
    models: ModelHolder, known_after: timedelta, why: str
) -> None:
    now = NOW + 40 * 86_400 if known_after > timedelta(days=30) else NOW
    store = MemoryStore(clock=lambda: now)
    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS,
                      options=Options(label_wait_seconds=3600.0), clock=lambda: now)
    asyncio.run(decide(p, messages(tx(0))))
    assert asyncio.run(p.labels(messages(label(0, known_after=known_after),
                                         topic="fraud-labels"))) == 0
    [dead] = sink_of(p).records("dlq")
    assert why in dead["reason"]


# --- poison: a message that alone fails with an unexpected error ---------------------------


def _decode_failing_on(bad: set[bytes]) -> Any:
    from service.records import decode_transaction

    def decode(value: bytes | None) -> Transaction:
        if value in bad:
            raise KeyError("a bug in decoding")
        return decode_transaction(value)

    return decode


def test_a_message_that_alone_fails_to_decode_is_the_only_one_dead_lettered(
    models: ModelHolder,
) -> None:
    sink = RecordingSink()
    bad = tx(1)
    p = BatchPipeline(MemoryStore(clock=lambda: NOW), models, sink, topics=TOPICS,
                      clock=lambda: NOW, decode=_decode_failing_on({bad}))
    poison = metric("fraud_poison_total")
    batch = messages(tx(0), bad, tx(2))
    asyncio.run(decide(p, batch))
    assert [d["transaction_id"] for d in sink.records("decisions")] == ["tx-0", "tx-2"]
    [dead] = sink.records("dlq")
    assert dead["offset"] == batch[1].source.offset
    assert dead["reason"] == "internal error (KeyError): 'a bug in decoding'"
    assert metric("fraud_poison_total") - poison == 1


def test_a_batch_whose_every_message_fails_to_decode_is_held_not_dead_lettered(
    models: ModelHolder,
) -> None:
    sink = RecordingSink()
    batch_values = [tx(0), tx(1)]
    waits: list[dict[str, str]] = []

    async def fixed_after_two(seconds: float) -> None:
        waits.append(p.readiness.faults)
        if len(waits) == 2:
            p.decode = _decode_failing_on(set())  # e.g. the data a bug depended on changed

    p = BatchPipeline(MemoryStore(clock=lambda: NOW), models, sink, topics=TOPICS,
                      clock=lambda: NOW, sleep=fixed_after_two,
                      decode=_decode_failing_on(set(batch_values)))
    held = metric("fraud_held_total", part="decoding")
    asyncio.run(decide(p, messages(*batch_values)))
    assert [set(f) for f in waits] == [{"decoding"}, {"decoding"}]
    assert metric("fraud_held_total", part="decoding") - held == 2
    assert [d["transaction_id"] for d in sink.records("decisions")] == ["tx-0", "tx-1"]
    assert not sink.records("dlq") and p.readiness.ready


def _features_failing_on(ids: set[str]) -> Any:
    from fraudcore import compute

    def features(t: Transaction, card: Any, terminal: Any) -> list[float]:
        if t.transaction_id in ids:
            raise ZeroDivisionError("a bug in a feature")
        return compute(t, card, terminal)

    return features


def test_a_transaction_whose_features_fail_is_dead_lettered_and_leaves_no_state(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    sink = RecordingSink()
    p = BatchPipeline(store, models, sink, topics=TOPICS, clock=lambda: NOW,
                      features=_features_failing_on({"tx-1"}))
    asyncio.run(decide(p, messages(tx(0), tx(1), tx(2))))
    assert [d["transaction_id"] for d in sink.records("decisions")] == ["tx-0", "tx-2"]
    [dead] = sink.records("dlq")
    assert dead["reason"] == "internal error (ZeroDivisionError): a bug in a feature"
    assert store.state.cards["card-1"].get("tx-1") is None  # forgotten
    assert store.state.terminals["T-1"].get("tx-1") is None
    p.features = _features_failing_on(set())
    asyncio.run(decide(p, messages(tx(1))))  # its redelivery, once the bug is fixed
    again = sink.records("decisions")[-1]
    assert (again["transaction_id"], again["duplicate"]) == ("tx-1", False)


def test_a_batch_whose_every_feature_fails_is_held_and_recorded_once_when_it_works(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    sink = RecordingSink()
    waits: list[dict[str, str]] = []

    async def fixed_after_one(seconds: float) -> None:
        waits.append(p.readiness.faults)
        p.features = _features_failing_on(set())

    p = BatchPipeline(store, models, sink, topics=TOPICS, clock=lambda: NOW,
                      sleep=fixed_after_one, features=_features_failing_on({"tx-0", "tx-1"}))
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    assert [set(f) for f in waits] == [{"features"}]
    decisions = sink.records("decisions")
    assert [(d["transaction_id"], d["duplicate"]) for d in decisions] == [
        ("tx-0", False), ("tx-1", False)
    ]
    assert not sink.records("dlq")


# --- keys -------------------------------------------------------------------------------


def test_a_record_not_keyed_by_its_card_is_dead_lettered_keyed_as_it_came(
    models: ModelHolder,
) -> None:
    p = pipeline(models)
    wrong = Message(tx(1), Source("transactions", 0, next(_offsets)), b"another-card")
    empty = Message(tx(2), Source("transactions", 0, next(_offsets)), None)
    miskeyed = metric("fraud_miskeyed_total", topic="transactions")
    asyncio.run(decide(p, [*messages(tx(0)), wrong, empty]))
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-0"]
    dead = [o for o in sink_of(p).sent if o.topic == "dlq"]
    assert [o.key for o in dead] == [b"another-card", None]
    assert all(orjson.loads(o.value)["reason"].startswith("key: the record's Kafka key is not")
               for o in dead)
    assert metric("fraud_miskeyed_total", topic="transactions") - miskeyed == 2


def test_miskeyed_records_can_be_accepted_and_counted(models: ModelHolder) -> None:
    p = pipeline(models, miskeyed="accept")
    miskeyed = metric("fraud_miskeyed_total", topic="transactions")
    asyncio.run(decide(p, [Message(tx(0), Source("transactions", 0, next(_offsets)), None)]))
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-0"]
    assert metric("fraud_miskeyed_total", topic="transactions") - miskeyed == 1


def test_a_label_not_keyed_by_its_card_is_dead_lettered(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store)
    asyncio.run(decide(p, messages(tx(0))))
    batch = [Message(label(0), Source("fraud-labels", 0, next(_offsets)), b"x")]
    assert asyncio.run(p.labels(batch)) == 0
    assert store.labels == [] and len(sink_of(p).records("dlq")) == 1


# --- state loss: the marker beside the state ------------------------------------------------


def test_a_first_start_is_a_complete_state_and_decides_normally(models: ModelHolder) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store)
    asyncio.run(decide(p, messages(tx(0))))
    [decision] = sink_of(p).records("decisions")
    assert decision["degraded"] is False
    assert store.marker is not None and store.marker.complete
    assert p.lineage.lost_at is None


def test_a_state_lost_while_running_is_detected_and_its_decisions_marked(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store)
    lost = metric("fraud_state_lost_total")
    partial = metric("fraud_partial_state_decisions_total")
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    first = store.marker
    store.flush()  # FLUSHALL: the histories and the marker gone
    asyncio.run(decide(p, messages(tx(2), tx(3))))
    decisions = sink_of(p).records("decisions")
    assert [d["degraded"] for d in decisions] == [False, False, True, True]
    assert metric("fraud_state_lost_total") - lost == 1
    assert metric("fraud_partial_state_decisions_total") - partial == 2
    assert metric("fraud_state_partial") == 1
    assert store.marker is not None and first is not None
    assert store.marker.generation != first.generation and not store.marker.complete
    assert p.lineage.lost_at == NOW and "partial" in p.lineage.describe()
    # Rebuilt (fraud-backfill marks the state complete): decisions are whole again.
    asyncio.run(store.complete_lineage())
    asyncio.run(decide(p, messages(tx(4))))
    assert sink_of(p).records("decisions")[-1]["degraded"] is False
    assert metric("fraud_state_partial") == 0


def test_a_transaction_id_is_taken_in_batch_order_across_cards(models: ModelHolder) -> None:
    # The second batch waits behind the first (card-1) and uses "dup" on card-2; the third
    # (card-3) uses "dup" too: it must not take the id first because its cards are free.
    async def scenario() -> RecordingSink:
        store = CardGatedStore("card-1")
        p = pipeline(models, store)
        batches = [messages(tx(0)),
                   messages(tx(1), tx(2, card="card-2", tx_id="dup")),
                   messages(tx(3, card="card-3", tx_id="dup"))]
        running = [asyncio.ensure_future(decide(p, b)) for b in batches]
        for _ in range(20):
            await asyncio.sleep(0)
        store.opened.set()
        await asyncio.gather(*running)
        return sink_of(p)

    sink = asyncio.run(scenario())
    assert [d["transaction_id"] for d in sink.records("decisions")] == ["tx-0", "tx-1", "dup"]
    [dead] = sink.records("dlq")
    assert "another card" in dead["reason"] and '"card-3"' in dead["payload"]


class FailsOnce(MemoryStore):
    """Its first exchange fails with a bug (not a store fault)."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.failed = False

    async def exchange(
        self, transactions: Sequence[Transaction], on_part: OnPart | None = None
    ) -> list[Answer]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the replies")
        return await super().exchange(transactions, on_part)


def test_a_batch_tried_a_message_at_a_time_keeps_what_its_decoding_refused(
    models: ModelHolder,
) -> None:
    # Refused at first for being too far ahead of the clock; by the message-at-a-time retry
    # the clock has moved on. Its card was not claimed: it must stay refused, unrecorded.
    clock = iter([NOW] + [NOW + 7_200.0] * 100)
    store = FailsOnce()

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS,
                      options=Options(max_future_seconds=3_600.0),
                      clock=lambda: next(clock), sleep=no_wait)
    ahead = datetime.fromtimestamp(NOW + 5_400, UTC)
    asyncio.run(decide(p, messages(tx(0, card="card-2", at=ahead), tx(1))))
    [dead] = sink_of(p).records("dlq")
    assert dead["reason"].startswith("timestamp: more than 3600 s ahead")
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-1"]
    assert "card-2" not in store.state.cards


def test_a_one_message_batch_whose_decoding_fails_is_dead_lettered_with_the_error(
    models: ModelHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline(models)

    async def broken(batch: Sequence[Message]) -> Any:
        raise ValueError("the decoder's own bug")

    monkeypatch.setattr(p, "_decode_held", broken)
    asyncio.run(decide(p, messages(tx(0))))
    [dead] = sink_of(p).records("dlq")
    assert "the decoder's own bug" in dead["reason"]


class SlowMarkerStore(MemoryStore):
    """Lets other tasks run while it reads or writes the marker, as a real store does."""

    async def lineage(self) -> Lineage | None:
        await asyncio.sleep(0)
        return await super().lineage()

    async def start_lineage(self, lineage: Lineage) -> Lineage:
        await asyncio.sleep(0)
        return await super().start_lineage(lineage)


def test_a_loss_seen_by_batches_of_other_cards_at_once_is_counted_once(
    models: ModelHolder,
) -> None:
    store = SlowMarkerStore(clock=lambda: NOW)
    p = pipeline(models, store)
    lost = metric("fraud_state_lost_total")
    asyncio.run(decide(p, messages(tx(0))))
    store.flush()

    async def at_once() -> None:
        await asyncio.gather(*(decide(p, messages(tx(n, card=f"card-{n}"))) for n in (1, 2, 3)))

    asyncio.run(at_once())
    assert metric("fraud_state_lost_total") - lost == 1
    assert [d["degraded"] for d in sink_of(p).records("decisions")] == [False, True, True, True]


def test_a_missing_marker_at_start_is_a_loss_when_the_group_decided_before(
    models: ModelHolder,
) -> None:
    store = MemoryStore(clock=lambda: NOW)
    p = pipeline(models, store)

    async def yes() -> bool:
        return True

    p.lineage.decided_before = yes
    asyncio.run(decide(p, messages(tx(0))))
    assert sink_of(p).records("decisions")[0]["degraded"] is True
    assert store.marker is not None and not store.marker.complete


def test_a_partial_state_is_whole_again_once_the_retention_has_passed(
    models: ModelHolder,
) -> None:
    now = [NOW]
    store = MemoryStore(clock=lambda: now[0])
    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS, clock=lambda: now[0])
    asyncio.run(decide(p, messages(tx(0))))
    store.flush()
    asyncio.run(decide(p, messages(tx(1))))
    now[0] += 41 * 86_400  # older than any history a feature reads
    asyncio.run(decide(p, messages(tx(2, at=T0 + timedelta(days=41)))))
    assert [d["degraded"] for d in sink_of(p).records("decisions")] == [False, True, False]


# --- a bug outside decoding and features: split to find the poison ------------------------


class BuggyStore(MemoryStore):
    """The reference store with a bug on some batches: its exchange raises for a batch that
    holds a transaction of ``poison`` ids (after recording it, as a reply-parsing bug
    would), or for every batch while ``broken``."""

    def __init__(self, *, poison: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poison = poison
        self.broken = False

    async def exchange(self, transactions: Sequence[Transaction],
                       on_part: OnPart | None = None) -> list[Answer]:
        answers = await super().exchange(transactions, on_part=None)
        if self.broken or any(t.transaction_id in self.poison for t in transactions):
            raise KeyError("a reply the store cannot read")
        if on_part is not None:
            on_part(answers)
        return answers


def test_a_bug_on_one_message_of_a_batch_dead_letters_it_alone(models: ModelHolder) -> None:
    store = BuggyStore(poison={"tx-1"}, clock=lambda: NOW)
    p = pipeline(models, store)
    poison_before = metric("fraud_poison_total")
    asyncio.run(decide(p, messages(tx(0), tx(1), tx(2))))
    decisions = sink_of(p).records("decisions")
    assert [d["transaction_id"] for d in decisions] == ["tx-0", "tx-2"]
    assert [d["duplicate"] for d in decisions] == [True, True]  # the failed try recorded them
    [dead] = sink_of(p).records("dlq")
    assert "internal error (KeyError)" in dead["reason"] and '"tx-1"' in dead["payload"]
    assert metric("fraud_poison_total") - poison_before == 1
    assert store.state.cards["card-1"].get("tx-1") is None  # its recording undone
    assert p.readiness.faults == {}


def test_a_bug_that_fails_every_message_holds_the_batch_until_it_works(
    models: ModelHolder,
) -> None:
    store = BuggyStore(poison=set(), clock=lambda: NOW)
    store.broken = True
    faults: list[dict[str, str]] = []

    async def fixed_after_two(seconds: float) -> None:
        faults.append(p.readiness.faults)
        store.broken = len(faults) < 2

    p = BatchPipeline(store, models, RecordingSink(), topics=TOPICS, clock=lambda: NOW,
                      sleep=fixed_after_two)
    asyncio.run(decide(p, messages(tx(0), tx(1))))
    assert len(faults) == 2 and all("scoring" in f for f in faults)
    assert [d["transaction_id"] for d in sink_of(p).records("decisions")] == ["tx-0", "tx-1"]
    assert sink_of(p).records("dlq") == []
    assert p.readiness.faults == {}
