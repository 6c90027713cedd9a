"""``python -m fraudtools.lists``: add to, remove from and show the allow and block lists.

    python -m fraudtools.lists add blocked_cards 4111111111111111 --expires 7d --reason "ch. 1182"
    python -m fraudtools.lists remove blocked_cards 4111111111111111 --reason "cleared"
    python -m fraudtools.lists show blocked_cards                   # every entry
    python -m fraudtools.lists show blocked_cards 4111111111111111  # is it listed? (exit 0/1)
    python -m fraudtools.lists topic                                # create the changes topic

``add`` and ``remove`` send one change message to ``FRAUD_TOPIC_LISTS`` (keyed by the
list's name, so one list's changes stay in order); a worker applies it to Redis, and every
worker decides on it within ``FRAUD_LISTS_POLL_SECONDS``. ``--wait SECONDS`` waits until
Redis holds what the change asks (exit 3 if it does not by then: no worker running, or the
change was dead-lettered; its reason is on ``FRAUD_TOPIC_DLQ``). ``--expires`` takes a
duration (``90s``, ``30m``, ``12h``, ``7d``, ``2w``) or an ISO 8601 time with its offset.

``show`` reads Redis: a card list holds the keyed hashes of card ids (never the ids), so
``show LIST`` prints those, and ``show LIST CARD_ID`` hashes the id with the worker's key
(``FRAUD_CARD_KEY_SECRET``) to look it up.

Settings: the worker's ``FRAUD_*`` variables (Kafka, Redis, key prefix, card-key secret;
``FRAUD_RULES_FILE``, when set, is read to refuse a list it does not declare before
sending). Exit status: 0 done (``show LIST VALUE``: listed), 1 not listed, 2 refused (a
setting, an argument, Redis or Kafka away), 3 not applied within ``--wait``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from fraudcore.errors import FraudError, InvalidEvent, StateUnavailable
from fraudrules import RulesError, load_rules
from service.kafka import kafka_client_options
from service.list_store import Entry, RedisLists
from service.lists import CARD_FIELD, NAME, ListChange, encode_change, parse_change
from service.settings import Settings, StartupError
from service.stores import build_store

__all__ = ["main", "parse_expiry"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class Refused(Exception):
    """The command cannot do what it was asked; the message says why (exit 2)."""


def parse_expiry(text: str, *, now: float) -> float:
    """``7d`` (from ``now``) or an ISO 8601 time with its offset, as Unix seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found:
        return now + float(found.group(1)) * _UNIT[found.group(2)]
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Refused(f"--expires {text!r}: give a duration (90s, 30m, 12h, 7d, 2w) or an "
                      "ISO 8601 time (2026-12-31T00:00:00+00:00)") from None
    if at.tzinfo is None:
        raise Refused(f"--expires {text!r}: give the time's offset (Z or +01:00)")
    if at.timestamp() <= now:
        raise Refused(f"--expires {text!r} is in the past")
    return at.timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _declared(s: Settings, name: str) -> str | None:
    """The field the rules file declares list ``name`` on (None: no rules file set)."""
    if s.rules_file is None:
        return None
    try:
        rules = load_rules(s.rules_file)
    except RulesError as exc:
        raise Refused(f"FRAUD_RULES_FILE does not load: {exc}") from exc
    if name not in rules.lists:
        declared = ", ".join(sorted(rules.lists)) or "none"
        raise Refused(f"{s.rules_file} declares no list {name!r} (it declares: {declared}); "
                      "a worker would dead-letter the change")
    return rules.lists[name]


async def _send(s: Settings, change: ListChange) -> str:
    options = kafka_client_options(s) | {"client_id": "fraud-lists"}
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=15_000, **options)
    try:
        await producer.start()
        sent = await producer.send_and_wait(
            s.topic_lists, encode_change(change), key=change.list.encode()
        )
    except KafkaError as exc:
        raise Refused(f"cannot send to {s.topic_lists} on {s.kafka_bootstrap}: {exc!r}") from exc
    finally:
        await producer.stop()
    return f"{sent.topic}[{sent.partition}]@{sent.offset}"


async def _wait(lists: RedisLists, change: ListChange, field: str | None, seconds: float) -> bool:
    """Until Redis holds what ``change`` asks, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        held = field or await lists.field_of(change.list)
        if held:
            found = await lists.entries(change.list, lists.key_of(held, change.value))
            expiry = round(change.expires_at, 3)
            if (change.op == "remove" and not found) or (
                change.op == "add" and found and round(found[0].expires_at, 3) == expiry
            ):
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


def _describe(entry: Entry, now: float) -> str:
    expiry = "never" if not entry.expires_at else _iso(entry.expires_at)
    state = " (expired)" if entry.expires_at and entry.expires_at <= now else ""
    why = entry.why
    told = [f"reason: {why['reason']}" if why.get("reason") else "",
            f"by {why['by']}" if why.get("by") else "",
            f"at {why['at']}" if why.get("at") else ""]
    notes = "; ".join(t for t in told if t)
    return f"{entry.key}  expires {expiry}{state}" + (f"  {notes}" if notes else "")


async def _show(lists: RedisLists, name: str, value: str | None, declared: str | None) -> int:
    field = await lists.field_of(name) or declared or ""
    now = time.time()
    if value is None:
        entries = await lists.entries(name)
        if not field:
            print(f"{name}: never changed, no entries")
            return 0
        kind = f"{field} values"
        if field == CARD_FIELD:
            kind += " (keyed hashes of the card ids)"
        live = sum(1 for e in entries if not e.expires_at or e.expires_at > now)
        print(f"{name}: {kind}; {live} listed, {len(entries) - live} expired")
        for entry in entries:
            print(f"  {_describe(entry, now)}")
        return 0
    if not field:
        print(f"not listed in {name} (the list has never been changed)")
        return 1
    key = lists.key_of(field, value)
    shown = f"card {key[:12]}… (keyed hash)" if field == CARD_FIELD else repr(value)
    found = await lists.entries(name, key)
    if not found:
        print(f"{shown} is not listed in {name}")
        return 1
    entry = found[0]
    if entry.expires_at and entry.expires_at <= now:
        print(f"{shown} is not listed in {name}: its entry expired at {_iso(entry.expires_at)}")
        return 1
    until = "for ever" if not entry.expires_at else f"until {_iso(entry.expires_at)}"
    print(f"{shown} is listed in {name} {until}" + (
        f" (reason: {entry.why['reason']})" if entry.why.get("reason") else ""))
    return 0


async def _topic(s: Settings) -> None:
    options = kafka_client_options(s) | {"client_id": "fraud-lists"}
    admin = AIOKafkaAdminClient(request_timeout_ms=30_000, **options)
    try:
        await admin.start()
        if s.topic_lists in await admin.list_topics():
            print(f"{s.topic_lists} is there")
            return
        await admin.create_topics([NewTopic(s.topic_lists, num_partitions=s.partitions,
                                            replication_factor=1)])
        print(f"created {s.topic_lists} ({s.partitions} partitions)")
    except KafkaError as exc:
        raise Refused(f"cannot create {s.topic_lists} on {s.kafka_bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def run(args: argparse.Namespace, s: Settings) -> int:
    if args.command == "topic":
        await _topic(s)
        return 0
    if not NAME.fullmatch(args.list):
        raise Refused(f"{args.list!r} is not a list's name (1-64 lower-case letters, digits "
                      "or _, starting with a letter)")
    declared = _declared(s, args.list)
    if args.command == "show":
        reader = build_store(s)
        try:
            return await _show(RedisLists(reader.redis, keys=reader.keys), args.list,
                               args.value, declared)
        finally:
            await reader.aclose()
    now = time.time()
    expires = parse_expiry(args.expires, now=now) if getattr(args, "expires", None) else 0.0
    change = ListChange(args.list, args.command, args.value, expires, args.reason or "",
                        args.by or "", now)
    try:
        parse_change(encode_change(change))  # what a worker would refuse, refused here
    except InvalidEvent as exc:
        raise Refused(str(exc)) from exc
    store = build_store(s) if args.wait else None  # refuses a missing secret before sending
    try:
        where = await _send(s, change)
        what = "a card id (stored as its keyed hash)" if declared == CARD_FIELD else repr(
            args.value)
        until = f", until {_iso(expires)}" if expires else ""
        print(f"sent: {args.command} {what} {'to' if args.command == 'add' else 'from'} "
              f"{args.list}{until} ({where})")
        if store is None:
            return 0
        lists = RedisLists(store.redis, keys=store.keys)
        if not await _wait(lists, change, declared, args.wait):
            print(f"not applied within {args.wait:g} s: is a worker running with a rules file "
                  f"that declares {args.list}? a refused change is on {s.topic_dlq}, with "
                  "the reason", file=sys.stderr)
            return 3
        print(f"applied: {args.list} holds it as asked")
        return 0
    finally:
        if store is not None:
            await store.aclose()


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER variable and no passwd entry (a container)
        return ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fraudtools.lists", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = p.add_subparsers(dest="command", required=True)
    for name, what in (("add", "list VALUE"), ("remove", "take VALUE off the list")):
        c = commands.add_parser(name, help=what)
        c.add_argument("list")
        c.add_argument("value")
        if name == "add":
            c.add_argument("--expires", help="7d, 12h, ... or an ISO 8601 time; default: never")
        c.add_argument("--reason", help="why (kept beside the entry; shown by show)")
        c.add_argument("--by", default=_user(), help="who (default: your user name)")
        c.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait until Redis holds the change (exit 3 if not by then)")
    show = commands.add_parser("show", help="the list's entries, or whether VALUE is listed")
    show.add_argument("list")
    show.add_argument("value", nargs="?")
    commands.add_parser("topic", help="create FRAUD_TOPIC_LISTS if it is missing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid FRAUD_* settings:\n{exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, settings))
    except (Refused, StartupError, StateUnavailable, FraudError, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
