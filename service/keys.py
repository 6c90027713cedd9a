"""The Redis key layout of the feature state: the one place key names are built.

The Redis store, the benchmark and the tests all name keys through :class:`KeyLayout`, so a
change of layout (or of the feature-spec version in every key) changes one place.

Keys (``P`` = prefix and feature-spec version, e.g. ``fraud:v1``)::

    P:card:{<hmac of card id>}:tx  ZSET  transaction id -> time
    P:card:{<hmac of card id>}:val HASH  transaction id -> (time, amount, crc32(terminal)) as
                                         three little-endian doubles
    P:t:{<terminal tag>}:tx        ZSET  transaction id -> time
    P:t:{<terminal tag>}:fraud     ZSET  fraud transaction id -> its time
    P:t:{<terminal tag>}:known     HASH  fraud transaction id -> when the label was known
    P:id:{<transaction id>}        STRING the first card (keyed hash, 16 digits) with this id
    P:lineage                      STRING the state's marker: generation|since|complete
                                          (service.lineage: is the state whole?)
    P:lineage:{<slot tag>}         STRING the same, on a Redis Cluster: one in every slot,
                                          so each shard holds its own (service.cluster)

The analysts' allow and block lists (:mod:`service.list_store`) are not feature state: their
keys carry the prefix alone (``R`` = prefix, e.g. ``fraud``), so a new feature spec keeps
them::

    R:list:{<name>}                HASH  value (a card list: the card's keyed hash) -> expiry
                                         (Unix seconds; 0: none)
    R:list:{<name>}:why            HASH  the same -> why it was listed (JSON: reason, by, at)
    R:list:{<name>}:meta           HASH  field -> the field it holds; version -> its counter
    R:lists                        SET   the names of the lists ever changed

Each key carries a hash tag (``{...}``): a card's, a terminal's or an id's keys share one
slot, so every script call stays on one shard of a Redis Cluster. Card ids appear only as
keyed hashes (HMAC-SHA256 under the card key secret). The terminal tag is the terminal id
with ``%``, ``{`` and ``}`` percent-encoded (``%25``, ``%7B``, ``%7D``): Redis hashes what
lies between the first ``{`` and the next ``}``, so an id holding a brace would otherwise
spread its keys over several slots (an id starting with ``}`` gives an empty tag, and
Redis then hashes each whole key). Ids without those three characters are their own tag.
A prefix may not hold braces: it would put every key in one slot.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from fraudcore import SPEC, FeatureSpec

__all__ = ["CardKeys", "KeyLayout", "ListKeys", "TerminalKeys", "terminal_tag"]

_ESCAPE = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def terminal_tag(terminal_id: str) -> str:
    """The terminal's hash tag: its id, with ``%``, ``{`` and ``}`` percent-encoded (one
    slot for its keys, whatever the id holds; two ids never share a tag)."""
    return terminal_id.translate(_ESCAPE)


@dataclass(frozen=True, slots=True)
class CardKeys:
    tx: str
    val: str


@dataclass(frozen=True, slots=True)
class TerminalKeys:
    tx: str
    fraud: str
    known: str


@dataclass(frozen=True, slots=True)
class ListKeys:
    entries: str
    why: str
    meta: str


class KeyLayout:
    """Key names under one prefix and feature-spec version."""

    def __init__(self, *, card_key_secret: bytes, prefix: str = "fraud", spec: FeatureSpec = SPEC):
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                f"the Redis key prefix {prefix!r} holds a brace: on a Redis Cluster every key "
                "would hash to one slot (one shard); use a prefix without braces"
            )
        self.prefix = prefix
        self.root = f"{prefix}:v{spec.version}"
        self._secret = card_key_secret
        # The HMAC was ~8 % of a transaction's cost; active cards come back often.
        self.card_tag = functools.lru_cache(maxsize=1 << 16)(self._card_tag)

    def _card_tag(self, card_id: str) -> str:
        """The keyed hash that stands for a card id in Redis (and in logs)."""
        return hmac.new(self._secret, card_id.encode(), hashlib.sha256).hexdigest()[:32]

    def card(self, card_id: str) -> CardKeys:
        base = f"{self.root}:card:{{{self.card_tag(card_id)}}}"
        return CardKeys(f"{base}:tx", f"{base}:val")

    def terminal(self, terminal_id: str) -> TerminalKeys:
        base = f"{self.root}:t:{{{terminal_tag(terminal_id)}}}"
        return TerminalKeys(f"{base}:tx", f"{base}:fraud", f"{base}:known")

    def transaction_id(self, transaction_id: str) -> str:
        return f"{self.root}:id:{{{transaction_id}}}"

    @property
    def lineage(self) -> str:
        return f"{self.root}:lineage"

    def slot_lineage(self, tag: str) -> str:
        """The marker in the slot of ``tag`` (a Redis Cluster keeps one in every slot)."""
        return f"{self.root}:lineage:{{{tag}}}"

    def list_keys(self, name: str) -> ListKeys:
        """An allow or block list's keys (``name``: lower-case letters, digits, ``_``)."""
        base = f"{self.prefix}:list:{{{name}}}"
        return ListKeys(base, f"{base}:why", f"{base}:meta")

    @property
    def lists(self) -> str:
        """The set of the names of the lists ever changed."""
        return f"{self.prefix}:lists"

    def pattern(self, kind: str = "*") -> str:
        """A ``SCAN MATCH`` pattern: ``"card"``, ``"t"`` or ``"id"`` keys, or every key."""
        return f"{self.root}:*" if kind == "*" else f"{self.root}:{kind}:*"
