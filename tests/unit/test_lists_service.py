"""Allow and block lists in the worker, without Redis or Kafka: the lists held in memory
(read again when a version moves, kept and marked when a read fails, held before the first
read), applied by the rules in the batch path, and the change path (applied in order,
bad changes dead-lettered with the reason, Redis' faults held, never dead-lettered).

The lists' Redis store itself (its scripts) is tested on a real Redis, single, cluster and
Sentinel, in tests/integration/test_lists_store.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudcore.errors import StateUnavailable
from fraudtools.lists import Refused, parse_expiry
from service.app import build_worker
from service.delivery import Output
from service.list_changes import ListChanges
from service.list_store import Applied
from service.lists import CARD_FIELD, ListChange, ListsHolder, ListTable, encode_change
from service.model import ModelHolder
from service.readiness import Readiness
from service.records import Message, Source
from service.rules import RulesHolder
from service.settings import Settings

from .test_pipeline import ROOT, decide, messages, metric, pipeline, sink_of, tx

RULES = b"""lists:
  blocked_cards: card_id
  trusted_terminals: terminal_id
rules:
  - id: blocked-card
    when: card_id in blocked_cards
    action: decline
  - id: trusted-terminal
    when: terminal_id in trusted_terminals
    action: allow
"""


def tag(card: str) -> str:
    return f"h({card})"


@dataclass
class Lists:
    """The lists as Redis keeps them (service.list_store's semantics, in memory): a
    ListSource for the holder and the writer of the change path. ``down``: the next calls
    that raise StateUnavailable."""

    tables: dict[str, ListTable] = field(default_factory=dict)
    down: int = 0
    max_entries: int = 100
    calls: list[str] = field(default_factory=list)
    forgotten: list[tuple[str, dict[str, float]]] = field(default_factory=list)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down > 0:
            self.down -= 1
            raise StateUnavailable("Redis: ConnectionError: refused")

    def key_of(self, field_: str, value: str) -> str:
        return tag(value) if field_ == CARD_FIELD else value

    def put(self, name: str, field_: str, entries: Mapping[str, float]) -> None:
        old = self.tables.get(name)
        version = old.version + 1 if old else 1
        self.tables[name] = ListTable(name, field_, version, dict(entries))

    async def names(self) -> list[str]:
        self._check("names")
        return sorted(self.tables)

    async def versions(self, names: Sequence[str]) -> dict[str, int]:
        self._check("versions")
        return {n: self.tables[n].version for n in names}

    async def load(self, name: str) -> ListTable:
        self._check(f"load {name}")
        return self.tables[name]

    async def forget_expired(self, name: str, expired: Mapping[str, float]) -> int:
        self._check(f"forget {name}")
        self.forgotten.append((name, dict(expired)))
        return len(expired)

    async def apply(self, change: ListChange, field_: str) -> Applied:
        self._check(f"apply {change.op} {change.value}")
        table = self.tables.get(change.list)
        if table is not None and table.field != field_:
            return Applied("other-field", table.field)
        entries = dict(table.entries) if table else {}
        key = self.key_of(field_, change.value)
        if change.op == "add":
            if key not in entries and len(entries) >= self.max_entries:
                return Applied("full", str(len(entries)))
            entries[key] = change.expires_at
        elif entries.pop(key, None) is None:
            return Applied("unchanged", str(table.version if table else 0))
        self.put(change.list, field_, entries)
        return Applied("changed", str(self.tables[change.list].version))


@pytest.fixture(scope="module")
def models() -> ModelHolder:
    return ModelHolder(ROOT / "models")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULES)
    return path


def holder(source: Lists, now: list[float] | None = None) -> ListsHolder:
    clock = now if now is not None else [1000.0]
    return ListsHolder(source, card_tag=tag, clock=lambda: clock[0])  # type: ignore[arg-type]


# --- the lists in memory -----------------------------------------------------------------


def test_a_list_is_read_again_only_when_its_version_moves() -> None:
    source = Lists()
    source.put("blocked_cards", "card_id", {tag("c1"): 0.0})
    lists = holder(source)
    assert lists.stale and not lists.loaded
    assert asyncio.run(lists.refresh()) and lists.loaded and not lists.stale
    first = lists.tables["blocked_cards"]
    source.calls.clear()
    assert not asyncio.run(lists.refresh())  # nothing moved: two small reads, no load
    assert source.calls == ["names", "versions"] and lists.tables["blocked_cards"] is first
    source.put("blocked_cards", "card_id", {tag("c1"): 0.0, tag("c2"): 0.0})
    assert asyncio.run(lists.refresh())
    assert set(lists.tables["blocked_cards"].entries) == {tag("c1"), tag("c2")}
    assert metric("fraud_list_entries", list="blocked_cards") == 2


def test_expired_entries_are_not_members_and_are_forgotten_in_redis_when_seen() -> None:
    source = Lists()
    source.put("trusted_terminals", "terminal_id", {"T-old": 900.0, "T-soon": 1010.0,
                                                    "T-ever": 0.0})
    now = [1000.0]
    lists = holder(source, now)
    asyncio.run(lists.refresh())
    assert source.forgotten == [("trusted_terminals", {"T-old": 900.0})]
    assert set(lists.tables["trusted_terminals"].entries) == {"T-soon", "T-ever"}
    assert metric("fraud_list_entries", list="trusted_terminals") == 2
    rules = RulesHolder(None).rules  # no rules file: describe says nothing
    assert lists.describe(rules) == {}
    source.calls.clear()
    now[0] = 1009.0
    asyncio.run(lists.refresh())  # nothing moved, nothing expired: nothing to do
    assert source.calls == ["names", "versions"]
    now[0] = 1010.0
    source.calls.clear()
    asyncio.run(lists.refresh())  # not read again (same version): the expired entry dropped
    assert source.calls == ["names", "versions", "forget trusted_terminals"]
    assert source.forgotten[-1] == ("trusted_terminals", {"T-soon": 1010.0})
    assert set(lists.tables["trusted_terminals"].entries) == {"T-ever"}
    assert metric("fraud_list_entries", list="trusted_terminals") == 1


def test_a_failed_read_keeps_the_lists_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    source = Lists()
    source.put("blocked_cards", "card_id", {tag("c1"): 0.0})
    lists = holder(source)
    asyncio.run(lists.refresh())
    source.down = 1
    assert not asyncio.run(lists.refresh())
    assert lists.stale and lists.tables["blocked_cards"].entries == {tag("c1"): 0.0}
    assert "cannot read the lists: Redis: ConnectionError" in lists.readiness.faults["lists"]
    assert "deciding on the lists read before" in lists.readiness.faults["lists"]
    assert metric("fraud_faults", part="lists") == 1
    asyncio.run(lists.refresh())
    assert not lists.stale and "lists" not in lists.readiness.faults
    assert metric("fraud_faults", part="lists") == 0


def test_ready_holds_until_the_lists_are_read_once() -> None:
    source = Lists(down=3)
    lists = holder(source)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    asyncio.run(lists.ready(max_delay=0.3, sleep=sleep))
    assert lists.loaded and waits == [0.1, 0.2, 0.3]
    asyncio.run(lists.ready(max_delay=0.3, sleep=sleep))  # read once: no wait, no call
    assert waits == [0.1, 0.2, 0.3]


def test_a_list_holding_another_field_than_declared_matches_nothing(rules_file: Path) -> None:
    source = Lists()
    source.put("trusted_terminals", "card_id", {tag("T-1"): 0.0})  # once declared on cards
    lists = holder(source)
    asyncio.run(lists.refresh())
    rules = RulesHolder(rules_file, lists=lists).rules
    assert rules is not None
    found = lists.lookups(rules)
    assert "T-1" not in found["trusted_terminals"]
    described = lists.describe(rules)
    assert described["blocked_cards"] == {"field": "card_id", "entries": 0, "version": 0,
                                          "conflict": None}
    assert "Redis holds card_id values in list 'trusted_terminals'" in str(
        described["trusted_terminals"]["conflict"])


# --- in the batch path --------------------------------------------------------------------


def blocked_and_trusted() -> tuple[Lists, ListsHolder]:
    """card-7 blocked, terminal T-OK trusted, read once by a holder."""
    source = Lists()
    source.put("blocked_cards", "card_id", {tag("card-7"): 0.0})
    source.put("trusted_terminals", "terminal_id", {"T-OK": 0.0})
    lists = holder(source)
    asyncio.run(lists.refresh())
    return source, lists


def test_the_pipeline_declines_a_blocked_card_and_allows_a_trusted_terminal(
    models: ModelHolder, rules_file: Path
) -> None:
    source, lists = blocked_and_trusted()
    p = pipeline(models)
    p.rules = RulesHolder(rules_file, lists=lists)
    asyncio.run(decide(p, messages(tx(1, card="card-7"), tx(2, card="card-8"),
                                   tx(3, card="card-7", terminal="T-OK"))))
    got = {d["transaction_id"]: d for d in sink_of(p).records("decisions")}
    assert (got["tx-1"]["action"], got["tx-1"]["rules"]) == ("decline", ["blocked-card"])
    assert (got["tx-2"]["action"], got["tx-2"]["rules"]) == ("approve", [])
    assert (got["tx-3"]["action"], got["tx-3"]["rules"]) == (
        "approve", ["blocked-card", "trusted-terminal"])  # allow wins; both named
    assert not any(d["degraded"] for d in got.values())
    assert "tx-1" in [a["transaction_id"] for a in sink_of(p).records("alerts")]

    source.put("blocked_cards", "card_id", {})  # removed
    asyncio.run(lists.refresh())
    asyncio.run(decide(p, messages(tx(4, card="card-7"))))
    assert sink_of(p).records("decisions")[-1]["action"] == "approve"


def test_decisions_on_lists_that_could_not_be_read_again_are_degraded(
    models: ModelHolder, rules_file: Path
) -> None:
    source = Lists()
    source.put("blocked_cards", "card_id", {tag("card-7"): 0.0})
    lists = holder(source)
    asyncio.run(lists.refresh())
    source.down = 2
    asyncio.run(lists.refresh())
    p = pipeline(models)
    p.rules = RulesHolder(rules_file, lists=lists)
    asyncio.run(decide(p, messages(tx(1, card="card-7"))))
    [decision] = sink_of(p).records("decisions")
    assert (decision["action"], decision["degraded"]) == ("decline", True)  # the lists held

    plain = pipeline(models)  # rules that read no list: never degraded by the lists
    (rules_file.parent / "plain.yaml").write_bytes(
        b"rules:\n  - id: big\n    when: amount > 5000\n    action: decline\n")
    plain.rules = RulesHolder(rules_file.parent / "plain.yaml", lists=lists)
    asyncio.run(decide(plain, messages(tx(1, card="card-7"))))
    assert sink_of(plain).records("decisions")[0]["degraded"] is False


def test_without_lists_the_rules_that_read_them_see_none_and_are_degraded(
    models: ModelHolder, rules_file: Path
) -> None:
    p = pipeline(models)
    p.rules = RulesHolder(rules_file)
    asyncio.run(decide(p, messages(tx(1, card="card-7"))))
    [decision] = sink_of(p).records("decisions")
    assert (decision["action"], decision["rules"], decision["degraded"]) == ("approve", [], True)


# --- the change path ----------------------------------------------------------------------


@dataclass
class Dead:
    sent: list[Output] = field(default_factory=list)

    async def deliver(self, outputs: list[Output]) -> None:
        self.sent += outputs

    def reasons(self) -> list[str]:
        return [orjson.loads(o.value)["reason"] for o in self.sent]


def change(name: str, op: str, value: str, *, key: str | None = None, **more: Any) -> Message:
    body = {"list": name, "op": op, "value": value, **more}
    return Message(orjson.dumps(body), Source("fraud-lists", 0, 0),
                   (key if key is not None else name).encode())


def changes(source: Lists, rules_file: Path, dead: Dead, **options: Any) -> ListChanges:
    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    return ListChanges(source, RulesHolder(rules_file), deliver=dead.deliver,  # type: ignore[arg-type]
                       dlq="dlq", readiness=Readiness(), sleep=no_wait, **options)


def test_changes_are_applied_in_order_and_counted(rules_file: Path) -> None:
    source, dead = Lists(), Dead()
    path = changes(source, rules_file, dead)
    before = metric("fraud_list_changes_total", list="blocked_cards", op="add")
    applied = asyncio.run(path.apply([
        change("blocked_cards", "add", "card-1"), change("blocked_cards", "add", "card-2"),
        change("blocked_cards", "remove", "card-1"),
        change("trusted_terminals", "add", "T-1", expires_at="2030-01-01T00:00:00Z"),
    ]))
    assert applied == 4 and not dead.sent
    assert source.tables["blocked_cards"].entries == {tag("card-2"): 0.0}  # hashed, in order
    assert source.tables["trusted_terminals"].entries == {"T-1": 1893456000.0}
    assert metric("fraud_list_changes_total", list="blocked_cards", op="add") - before == 2


def test_bad_changes_are_dead_lettered_with_the_reason_and_the_rest_applied(
    rules_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, dead = Lists(max_entries=1), Dead()
    source.put("trusted_terminals", "card_id", {})  # Redis holds another field
    path = changes(source, rules_file, dead)
    caplog.set_level(logging.INFO, logger="service.list_changes")
    applied = asyncio.run(path.apply([
        Message(b"not json", Source("fraud-lists", 0, 1), b"x"),
        change("blocked_cards", "ad", "card-1"),
        change("unknown", "add", "x"),
        change("blocked_cards", "add", "card-1", key="card-1"),  # keyed by the card
        change("trusted_terminals", "add", "T-1"),
        change("blocked_cards", "add", "4000123412341234"),
        change("blocked_cards", "add", "card-3"),  # the list holds one at most
    ]))
    assert applied == 1
    reasons = dead.reasons()
    assert [r.split(" (")[0].split(":")[0] for r in reasons] == [
        "not valid JSON", "op", "list", "key", "list", "list"]
    assert "'unknown' is not declared in the rules in service (rules " in reasons[2]
    assert "Kafka key is not its list's name" in reasons[3]
    assert "holds card_id values in Redis, and the rules declare it on terminal_id" in reasons[4]
    assert "'blocked_cards' is full (1 entries, FRAUD_LISTS_MAX_ENTRIES=1)" in reasons[5]
    assert all(o.topic == "dlq" for o in dead.sent)
    assert "4000123412341234" not in caplog.text  # a card list's value is logged as its hash


def test_a_change_accepted_under_the_accept_policy_is_applied_and_counted(
    rules_file: Path,
) -> None:
    source, dead = Lists(), Dead()
    path = changes(source, rules_file, dead, miskeyed="accept")
    before = metric("fraud_miskeyed_total", topic="fraud-lists")
    assert asyncio.run(path.apply([change("blocked_cards", "add", "c", key="")])) == 1
    assert metric("fraud_miskeyed_total", topic="fraud-lists") - before == 1 and not dead.sent


def test_a_redis_fault_holds_the_changes_and_applies_each_once_when_it_is_back(
    rules_file: Path,
) -> None:
    source, dead = Lists(), Dead()
    path = changes(source, rules_file, dead)
    faults: list[dict[str, str]] = []

    async def watch(seconds: float) -> None:
        faults.append(path.readiness.faults)

    path.sleep = watch
    batch = [change("blocked_cards", "add", "c1"), change("blocked_cards", "add", "c2"),
             change("blocked_cards", "add", "c3")]
    original = source.apply

    async def away_after_the_first(change_: ListChange, field_: str) -> Applied:
        if change_.value == "c2" and not faults:
            source.down = 3  # Redis goes away for three calls
        return await original(change_, field_)

    source.apply = away_after_the_first  # type: ignore[method-assign]
    assert asyncio.run(path.apply(batch)) == 3
    assert not dead.sent  # never dead-lettered: the system's fault
    assert [set(f) for f in faults] == [{"list-changes"}] * 3
    assert "Redis: ConnectionError" in faults[0]["list-changes"]
    assert "list-changes" not in path.readiness.faults
    assert [c for c in source.calls if c.startswith("apply")].count("apply add c1") == 1
    assert set(source.tables["blocked_cards"].entries) == {tag("c1"), tag("c2"), tag("c3")}


def test_a_bug_on_one_change_dead_letters_it_alone(rules_file: Path) -> None:
    source, dead = Lists(), Dead()
    path = changes(source, rules_file, dead)
    original = source.apply

    async def bug_on_c2(change_: ListChange, field_: str) -> Applied:
        if change_.value == "c2":
            raise KeyError("a bug")
        return await original(change_, field_)

    source.apply = bug_on_c2  # type: ignore[method-assign]
    assert asyncio.run(path.apply([change("blocked_cards", "add", "c1"),
                                   change("blocked_cards", "add", "c2")])) == 1
    assert dead.reasons() == ["internal error (KeyError): 'a bug'"]


def test_the_cli_sends_what_a_worker_accepts() -> None:
    now = 1_700_000_000.0
    assert parse_expiry("7d", now=now) == now + 7 * 86_400
    assert parse_expiry("90s", now=now) == now + 90
    assert parse_expiry("1.5h", now=now) == now + 5400
    assert parse_expiry("2030-01-01T00:00:00Z", now=now) == 1893456000.0
    for wrong in ("7 days", "2030-01-01T00:00:00", "2001-01-01T00:00:00Z"):
        with pytest.raises(Refused, match="--expires"):
            parse_expiry(wrong, now=now)
    sent = ListChange("blocked_cards", "add", "4111", parse_expiry("7d", now=now), "r", "me", now)
    assert orjson.loads(encode_change(sent))["expires_at"] == "2023-11-21T22:13:20+00:00"


def test_a_worker_with_a_rules_file_has_its_lists_and_their_changes(
    tmp_path: Path, rules_file: Path
) -> None:
    def settings(**values: object) -> Settings:
        return Settings(env="development", model_dir=ROOT / "models",  # type: ignore[arg-type]
                        data_dir=tmp_path / "w", **values)

    worker = build_worker(settings(rules_file=rules_file, fail_policy="open"))
    assert worker.lists is not None and worker.rules.lists is worker.lists
    assert worker.changes is not None and not worker.lists.hold
    assert worker.lists.readiness is worker.pipeline.readiness
    assert "apply_list_changes" in {a.name.rsplit(".", 1)[-1] for a in worker.app.agents.values()}
    plain = build_worker(settings())
    assert plain.lists is None and plain.changes is None and plain.rules.lists is None
    assert "apply_list_changes" not in {a.name.rsplit(".", 1)[-1]
                                        for a in plain.app.agents.values()}
