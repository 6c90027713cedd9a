"""The compiled hot path, with fraudcore's types: decoding, features and replay state in Rust.

``fraudcore_native`` (``native/``, Rust with PyO3, built by ``make install`` with maturin)
computes what fraudcore computes, bit for bit: :func:`compute` is
:func:`fraudcore.features.compute` (the worker calls it on the histories Redis gave),
:class:`NativeStore` is :class:`fraudcore.state.InMemoryStore`'s exchange and labels, and
:class:`Replay` is training's replay loop over both. :func:`decode_transaction` is
:func:`fraudcore.parse_transaction` of the JSON bytes, for the payloads it is sure of
(None: ask the reference). :class:`Commands` and :func:`card_history` are the Redis
store's commands and the card script's reply (``service.exchange``). fraudcore stays the
reference: ``tests/unit/test_native.py`` holds the two equal on every feature, state
transition, decoded payload and packed command (hypothesis). This package imports only the
standard library, fraudcore and the extension.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import fraudcore_native as _native

from fraudcore import (
    SPEC,
    CardHistory,
    FeatureSpec,
    LabelEvent,
    TerminalHistory,
    Transaction,
)
from fraudcore.errors import DuplicateConflict

__all__ = [
    "VERSION",
    "Commands",
    "NativeStore",
    "Replay",
    "card_history",
    "compute",
    "decode_transaction",
    "engine",
    "murmur2",
]

#: The extension's version (native/Cargo.toml).
VERSION: str = _native.__version__


@functools.cache
def engine(spec: FeatureSpec = SPEC) -> _native.Engine:
    """The compiled features for ``spec`` (one per spec)."""
    return _native.Engine(
        list(spec.card_windows_days),
        list(spec.terminal_windows_days),
        spec.label_delay_days,
        spec.short_window_seconds,
        spec.no_fraud_age_days,
        spec.grace_days,
        spec.card_max_entries,
        spec.terminal_max_entries,
        spec.terminal_max_labels,
    )


def compute(
    tx: Transaction, card: CardHistory, terminal: TerminalHistory, *, spec: FeatureSpec = SPEC
) -> list[float]:
    """:func:`fraudcore.features.compute`, compiled: the same vector, bit for bit."""
    local = tx.timestamp
    # The default spec's engine without the cache's lookup (hashing the spec: ~0.6 µs,
    # on every transaction).
    features = _DEFAULT if spec is SPEC else engine(spec)
    return features.compute(
        tx.epoch,
        tx.amount,
        local.weekday() >= 5,
        local.hour <= 6,
        card.timestamps,
        card.amounts,
        terminal.counts,
        terminal.fraud_timestamps,
        terminal.fraud_known_at,
    )


_DEFAULT = engine(SPEC)

#: The Redis store's commands for one key layout (``service.exchange.NativeCalls``).
Commands = _native.Commands
#: Kafka's murmur2 of a record key, which picks its partition (``service.engine.partitioner``).
murmur2 = _native.murmur2


def card_history(joined: bytes) -> CardHistory:
    """:func:`service.replies.card_history`, compiled: the card script's reply, in time
    order, as ``array('d')`` (:func:`compute` reads them at once, not float by float)."""
    raw_times, raw_amounts = _native.card_history(joined)
    times, amounts = array("d"), array("d")
    times.frombytes(raw_times)
    amounts.frombytes(raw_amounts)
    return CardHistory(times, amounts)


@functools.lru_cache(maxsize=64)
def _zone(east: int) -> timezone:
    """The zone ``datetime.fromisoformat`` gives an offset (UTC itself for 0)."""
    return UTC if east == 0 else timezone(timedelta(seconds=east))


#: The slots the compiled decoder sets, in order: Transaction's (checked at import).
_SLOTS = ("transaction_id", "card_id", "terminal_id", "amount", "timestamp", "extra",
          "currency", "mcc", "country", "channel", "epoch")
if Transaction.__slots__ != _SLOTS:  # pragma: no cover - a change to fraudcore.Transaction
    raise ImportError(f"fraudcore.Transaction's slots are {Transaction.__slots__}, the "
                      f"compiled decoder sets {_SLOTS}: update native/src/lib.rs (Decoder)")
_DECODER = _native.Decoder(Transaction, object.__new__, datetime, _zone)


def decode_transaction(payload: bytes) -> Transaction | None:
    """:func:`fraudcore.parse_transaction` of the JSON ``payload``, when the compiled
    decoder is sure of it: the five fields and the optional four, printable ASCII ids,
    timestamps as ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with ``Z`` or ``+HH:MM``. None for any
    other payload (an extra field, another form, anything invalid): the reference decides,
    with its own message. The transaction is made by the extension, its slots set as
    ``Transaction(...)`` would set them (its ``__init__`` took ~4 µs)."""
    tx: Transaction | None = _DECODER.decode(payload)
    return tx


class NativeStore:
    """:class:`fraudcore.state.InMemoryStore`'s exchange and labels, compiled."""

    def __init__(self, *, spec: FeatureSpec = SPEC) -> None:
        self.spec = spec
        self._state = _native.State(engine(spec))

    def exchange(self, tx: Transaction) -> tuple[CardHistory, TerminalHistory]:
        """The histories before ``tx``; then ``tx`` is recorded (once); a conflicting
        duplicate raises :class:`~fraudcore.errors.DuplicateConflict`."""
        try:
            times, amounts, counts, frauds, known = self._state.exchange(
                tx.transaction_id, tx.card_id, tx.terminal_id, tx.amount, tx.epoch
            )
        except _native.Conflict as exc:
            raise DuplicateConflict(str(exc)) from None
        return CardHistory(times, amounts), TerminalHistory(counts, frauds, known)

    def add_label(self, label: LabelEvent) -> None:
        self._state.add_label(
            label.transaction_id, label.terminal_id, label.epoch, label.known_epoch
        )

    @property
    def capped(self) -> dict[str, int]:
        """Entries dropped by the size bounds so far, as InMemoryStore counts them."""
        card, terminal, label = self._state.capped
        return {"card": card, "terminal": terminal, "label": label}


class Replay:
    """Training's replay loop, compiled: labels are set once, then transactions go through
    in chunks (:meth:`rows`)."""

    def __init__(
        self, labels: Sequence[tuple[str, str, float, float]], *, spec: FeatureSpec = SPEC
    ) -> None:
        """``labels``: (transaction id, terminal id, its time, known at), by known time."""
        self.spec = spec
        self._state = _native.State(engine(spec))
        ids, terminals, times, known = (
            (list(c) for c in zip(*labels, strict=True)) if labels else ([], [], [], [])
        )
        self._state.set_labels(ids, terminals, times, known)

    @property
    def labels_applied(self) -> int:
        return self._state.applied

    def rows(
        self,
        ids: list[str],
        cards: list[str],
        terminals: list[str],
        amounts: list[float],
        epochs: list[float],
        weekend: list[bool],
        night: list[bool],
        known_before: list[int],
    ) -> array[float]:
        """The feature rows of a chunk of transactions in time order, flat (row after row):
        before each, the first ``known_before`` labels are applied."""
        raw = self._state.replay(
            engine(self.spec), ids, cards, terminals, amounts, epochs, weekend, night, known_before
        )
        rows = array("d")
        rows.frombytes(raw)
        if sys.byteorder == "big":  # the extension writes little-endian doubles
            rows.byteswap()
        return rows
