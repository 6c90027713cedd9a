"""Allow and block lists in the worker: the change message, the lists held in memory, and
their membership as the rules read it (docs/lists.md for analysts).

A rules file declares its lists (``blocked_cards: card_id``; :mod:`fraudrules.ruleset`).
Their entries live in Redis (:mod:`service.list_store`; a card list holds keyed hashes of
card ids, never the ids), are changed through the ``FRAUD_TOPIC_LISTS`` topic
(:mod:`service.list_changes`) and are held in memory by every worker
(:class:`ListsHolder`), which reads a list again whenever its version counter in Redis
moved, every ``FRAUD_LISTS_POLL_SECONDS``, between two batches. A rule never gets a list's
contents: per batch, :meth:`ListsHolder.lookups` gives one set lookup per list the rules
name (hashing the card id for a card list), and an expired entry is never a member.

The change message (``docs/schemas/list-change.schema.json``), keyed by the list's name::

    {"list": "blocked_cards", "op": "add", "value": "4111111111111111",
     "expires_at": "2026-12-31T00:00:00+00:00", "reason": "chargeback 1182",
     "by": "alice", "sent_at": "2026-06-01T09:00:00+00:00"}

``list``, ``op`` (``add`` or ``remove``) and ``value`` (a text, or a whole number as a
card id may be sent) are required; ``expires_at`` (an add only; absent or null: never),
``reason``, ``by`` and ``sent_at`` are optional; any other field is refused (a misspelt
``expires`` must not list a card for ever).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

from fraudcore.errors import InvalidEvent, StateUnavailable
from fraudrules import Lists, RuleSet
from service import metrics
from service.readiness import Readiness
from service.retry import FIRST_DELAY, Sleep

__all__ = [
    "CARD_FIELD",
    "FIELDS",
    "MAX_REASON",
    "MAX_VALUE",
    "NAME",
    "ListChange",
    "ListSource",
    "ListTable",
    "ListsHolder",
    "Membership",
    "encode_change",
    "parse_change",
]

log = logging.getLogger(__name__)

#: The field whose lists hold keyed hashes (the card id never reaches Redis in clear).
CARD_FIELD = "card_id"
#: A list's name, as a rules file declares it (fraudrules.ruleset).
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VALUE = 256
MAX_REASON = 500
MAX_BY = 100
#: The fields of a change message, in the order they are described.
FIELDS = ("list", "op", "value", "expires_at", "reason", "by", "sent_at")

ListOp = Literal["add", "remove"]


@dataclass(frozen=True, slots=True)
class ListChange:
    """One change of one list: add ``value`` (until ``expires_at``, Unix seconds; 0: for
    ever) or remove it."""

    list: str
    op: ListOp
    value: str
    expires_at: float = 0.0
    reason: str = ""
    by: str = ""
    sent_at: float | None = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(obj: Mapping[str, Any], name: str, *, limit: int, required: bool = False) -> str:
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidEvent(f"{name}: must be a non-empty text", field=name)
    if len(value) > limit:
        raise InvalidEvent(f"{name}: longer than {limit} characters", field=name)
    return value


def _value(obj: Mapping[str, Any]) -> str:
    """The listed value: a text (as a transaction's field holds it: printable, not only
    spaces) or a whole number, as its digits (a card id sent as a JSON number)."""
    value = obj.get("value")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
        if len(value) > MAX_VALUE:
            raise InvalidEvent(f"value: longer than {MAX_VALUE} digits", field="value")
        return value
    text = _text({"value": value}, "value", limit=MAX_VALUE, required=True)
    if _CONTROL.search(text):
        raise InvalidEvent("value: holds a control character (no transaction's field does)",
                           field="value")
    return text


def _instant(obj: Mapping[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name}: must be an ISO 8601 time with its offset", field=name)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"{name}: {value[:40]!r} is not an ISO 8601 time "
                           "(2026-12-31T00:00:00+00:00)", field=name) from None
    if parsed.tzinfo is None:
        raise InvalidEvent(f"{name}: give the offset (Z or +01:00): a time without one is "
                           "ambiguous", field=name)
    return parsed.timestamp()


def parse_change(payload: bytes | None) -> ListChange:
    """A change message's bytes to a :class:`ListChange`; :class:`InvalidEvent` (the reason
    leads with the field) if it is not one."""
    if payload is None:
        raise InvalidEvent("empty message: a list change needs a JSON object value")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidEvent("a list change must be a JSON object")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise InvalidEvent(f"{unknown[0][:40]}: unknown field (a list change has "
                           f"{', '.join(FIELDS)})", field=unknown[0])
    name = _text(obj, "list", limit=64, required=True)
    if not NAME.fullmatch(name):
        raise InvalidEvent("list: a list's name is 1-64 lower-case letters, digits or _, "
                           "starting with a letter", field="list")
    op = obj.get("op")
    if op not in ("add", "remove"):
        raise InvalidEvent("op: must be add or remove", field="op")
    value = _value(obj)
    expires = _instant(obj, "expires_at")
    if expires is not None and op == "remove":
        raise InvalidEvent("expires_at: only an add has an expiry", field="expires_at")
    if expires is not None and expires <= 0:
        raise InvalidEvent("expires_at: must be after 1970", field="expires_at")
    return ListChange(
        name, op, value, expires or 0.0, _text(obj, "reason", limit=MAX_REASON),
        _text(obj, "by", limit=MAX_BY), _instant(obj, "sent_at"),
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def encode_change(change: ListChange) -> bytes:
    """The message of a change (what ``python -m fraudtools.lists`` sends)."""
    record: dict[str, Any] = {"list": change.list, "op": change.op, "value": change.value}
    if change.expires_at:
        record["expires_at"] = _iso(change.expires_at)
    if change.reason:
        record["reason"] = change.reason
    if change.by:
        record["by"] = change.by
    if change.sent_at is not None:
        record["sent_at"] = _iso(change.sent_at)
    return orjson.dumps(record)


# -- the lists in memory -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListTable:
    """One list as Redis held it at ``version``: the field it holds (``""``: never
    changed) and its entries, value (a card list: the card's keyed hash) -> expiry (Unix
    seconds; 0: none)."""

    name: str
    field: str
    version: int
    entries: Mapping[str, float]

    def live(self, now: float) -> int:
        """Entries not expired at ``now``."""
        return sum(1 for e in self.entries.values() if not e or e > now)

    def next_expiry(self, now: float) -> float:
        """The first expiry after ``now`` (infinity: none)."""
        return min((e for e in self.entries.values() if e > now), default=float("inf"))


class Membership(Container[str]):
    """``value in membership``: whether a list holds ``value`` at ``now`` (its key: the
    value, or for a card list the card id's keyed hash)."""

    __slots__ = ("_entries", "_key", "_now")

    def __init__(
        self, entries: Mapping[str, float], now: float, key: Callable[[str], str] | None = None
    ) -> None:
        self._entries = entries
        self._now = now
        self._key = key

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        expiry = self._entries.get(self._key(value) if self._key else value)
        return expiry is not None and (not expiry or expiry > self._now)


_EMPTY: Mapping[str, float] = {}


class ListSource(Protocol):
    """Where the lists are kept (:class:`service.list_store.RedisLists`). Every method
    raises :class:`~fraudcore.errors.StateUnavailable` when it cannot be reached."""

    async def names(self) -> list[str]:
        """The lists ever changed."""
        ...

    async def versions(self, names: Sequence[str]) -> dict[str, int]:
        """Each list's version counter (0: never changed)."""
        ...

    async def load(self, name: str) -> ListTable:
        """A list's field, version and entries, read together."""
        ...

    async def forget_expired(self, name: str, expired: Mapping[str, float]) -> int:
        """Remove entries seen expired (each only if it still has the expiry seen)."""
        ...


class ListsHolder:
    """Every list in memory, as of its version in Redis; read again when a version moves.
    An entry that expires is dropped from memory and removed from Redis at the next read
    after its expiry (by whichever worker sees it first; the others find it gone).

    Until a first read succeeds the lists are not known: :meth:`ready` holds the batches
    (``FRAUD_FAIL_POLICY=hold``). A read that fails keeps the lists held (``/health``
    fault ``lists``, ``fraud_faults{part="lists"}``); decisions made on them meanwhile, or
    on no lists at all under ``open``, are marked degraded (:attr:`stale`)."""

    def __init__(
        self,
        source: ListSource,
        *,
        card_tag: Callable[[str], str],
        readiness: Readiness | None = None,
        clock: Callable[[], float] = time.time,
        hold: bool = True,
    ) -> None:
        self.source = source
        self.hold = hold  # FRAUD_FAIL_POLICY=hold: nothing is decided before a first read
        self.card_tag = card_tag
        self.readiness = readiness if readiness is not None else Readiness()
        self.clock = clock
        self.tables: dict[str, ListTable] = {}
        self.loaded = False
        self.refreshed_at: float | None = None
        self.error: str | None = "the lists have not been read from Redis yet"
        self._lock = asyncio.Lock()
        # When an entry next expires: it is removed then, and the gauges are set again.
        self._recount_at = float("inf")

    @property
    def stale(self) -> bool:
        """The lists may not be the ones in Redis (the last read failed, or none yet)."""
        return self.error is not None

    async def refresh(self) -> bool:
        """Read again every list whose version moved; ``True`` if one did. A failure is
        held (kept lists, a fault), never raised."""
        async with self._lock:
            try:
                changed = await self._refresh()
            except StateUnavailable as exc:
                self.error = f"cannot read the lists: {exc}"
                if self.loaded:
                    meanwhile = "deciding on the lists read before, marked degraded"
                elif self.hold:
                    meanwhile = "no transaction is decided until they are read once"
                else:
                    meanwhile = "deciding on empty lists, marked degraded"
                self.readiness.fault("lists", f"{self.error}; {meanwhile}")
                return False
            self.error = None
            self.loaded = True
            self.refreshed_at = self.clock()
            self.readiness.clear("lists")
            return changed

    async def _refresh(self) -> bool:
        names = await self.source.names()
        versions = await self.source.versions(names)
        tables = dict(self.tables)
        now = self.clock()
        changed = False
        for name in names:
            held = tables.get(name)
            if held is None or held.version != versions.get(name, 0):
                held = await self.source.load(name)
                changed = True
                log.info("list %s: version %d, %d entries", name, held.version,
                         len(held.entries))
            elif now < self._recount_at:
                continue
            tables[name] = await self._without_expired(held, now)
        self.tables = tables  # swapped whole: a batch reads one state or the other
        if changed or now >= self._recount_at:
            for table in tables.values():
                metrics.LIST_ENTRIES.labels(table.name).set(table.live(now))
            self._recount_at = min((t.next_expiry(now) for t in tables.values()),
                                   default=float("inf"))
        return changed

    async def _without_expired(self, table: ListTable, now: float) -> ListTable:
        """The table without the entries expired at ``now``, which are removed from Redis
        too (each only while it still has the expiry seen: a new add keeps its entry)."""
        expired = {k: e for k, e in table.entries.items() if e and e <= now}
        if not expired:
            return table
        await self.source.forget_expired(table.name, expired)
        live = {k: e for k, e in table.entries.items() if k not in expired}
        return ListTable(table.name, table.field, table.version, live)

    async def ready(self, *, max_delay: float, sleep: Sleep = asyncio.sleep) -> None:
        """Return once the lists have been read once (holding, with backoff, until then)."""
        delay = FIRST_DELAY
        while not self.loaded:
            await self.refresh()
            if self.loaded:
                return
            await sleep(delay)
            delay = min(delay * 2, max_delay)

    def lookups(self, rules: RuleSet, now: float | None = None) -> Lists:
        """The membership of each list ``rules`` name, at ``now`` (the worker's clock): one
        set lookup per transaction and list, never the contents. A list whose entries hold
        another field than the rules declare (renamed in the file) has none."""
        at = self.clock() if now is None else now
        found: dict[str, Container[str]] = {}
        for use in rules.uses:
            table = self.tables.get(use.name)
            if table is None or table.field not in ("", use.path):
                found[use.name] = Membership(_EMPTY, at)
                continue
            key = self.card_tag if use.path == CARD_FIELD else None
            found[use.name] = Membership(table.entries, at, key)
        return found

    def conflict(self, name: str, declared: str) -> str | None:
        """Why list ``name`` cannot be used as declared (on ``declared``), or None."""
        table = self.tables.get(name)
        if table is None or table.field in ("", declared):
            return None
        return (f"Redis holds {table.field} values in list {name!r} and the rules declare "
                f"it on {declared}: it matches nothing; declare it on {table.field} again, "
                "or give the list another name")

    def describe(self, rules: RuleSet | None) -> dict[str, dict[str, Any]]:
        """For ``/health``: each list the rules declare, its field, live entries, version,
        and a conflict (None when there is none)."""
        now = self.clock()
        return {
            name: {
                "field": declared,
                "entries": table.live(now) if table is not None else 0,
                "version": table.version if table is not None else 0,
                "conflict": self.conflict(name, declared),
            }
            for name, declared in (rules.lists.items() if rules is not None else ())
            for table in [self.tables.get(name)]
        }

    def __iter__(self) -> Iterator[ListTable]:
        return iter(self.tables.values())
