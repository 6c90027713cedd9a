"""A transaction's calls in the Redis store's exchange, and the card script's reply read
back: in Python (:class:`PythonCalls`, the reference) or by the compiled core
(:class:`NativeCalls`, ``FRAUD_ENGINE=native``), the same bytes either way.

A transaction costs three calls (:mod:`service.state` draws the round trip): the id
index's ``SET NX GET`` (which card used the id first; without ``ids``, none), the card
script on its card's two keys and the terminal script on its terminal's three, with
the bounds each trims and counts by. Building them in Python cost ~26 µs a transaction,
most of it ``repr`` of eleven floats and hiredis packing (docs/benchmarks.md); the
compiled core writes the same protocol bytes in ~2. ``tests/unit/test_native.py`` holds
the two equal, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fraudcore import SPEC, CardHistory, FeatureSpec, Transaction
from fraudcore.features import DAY, terminal_windows
from service.commands import Call, Script, command
from service.engine import Engine, native
from service.keys import KeyLayout
from service.replies import card_history, stored

__all__ = ["ExchangeCalls", "NativeCalls", "PythonCalls", "exchange_calls"]


class ExchangeCalls(Protocol):
    def calls(self, tx: Transaction, now: float) -> list[Call]:
        """The transaction's calls, in the order the exchange runs them."""
        ...

    def card_history(self, joined: bytes) -> CardHistory:
        """The card script's concatenated contents, in time order."""
        ...


class PythonCalls:
    """The reference: each command packed by hiredis from Python values."""

    def __init__(
        self,
        keys: KeyLayout,
        card: Script,
        terminal: Script,
        *,
        ids: bool,
        spec: FeatureSpec = SPEC,
    ) -> None:
        self.keys, self.card, self.terminal, self.ids, self.spec = keys, card, terminal, ids, spec
        self._card_ttl = str(int(spec.card_retention_seconds * 1000))
        self._terminal_ttl = str(int(spec.terminal_retention_seconds * 1000))
        self._card_max = str(spec.card_max_entries)
        self._terminal_max = str(spec.terminal_max_entries)

    def calls(self, tx: Transaction, now: float) -> list[Call]:
        spec, t = self.spec, tx.epoch
        calls = []
        if self.ids:
            calls.append(
                command(
                    "SET",
                    self.keys.transaction_id(tx.transaction_id),
                    self.keys.card_tag(tx.card_id)[:16],
                    "NX",
                    "GET",
                    # A card's retention after the event, and after now: an old event's id
                    # is still known when it is delivered again.
                    "PXAT",
                    int((max(t, now) + spec.card_retention_seconds) * 1000),
                )
            )
        card = self.keys.card(tx.card_id)
        calls.append(
            self.card.call(
                [card.tx, card.val],
                [
                    tx.transaction_id,
                    repr(t),
                    stored(tx),
                    repr(t - spec.card_retention_seconds),
                    self._card_ttl,
                    self._card_max,
                ],
            )
        )
        terminal = self.keys.terminal(tx.terminal_id)
        bounds = [repr(x) for window in terminal_windows(t, spec) for x in window]
        calls.append(
            self.terminal.call(
                [terminal.tx, terminal.fraud, terminal.known],
                [
                    tx.transaction_id,
                    repr(t),
                    repr(t - spec.terminal_retention_seconds),
                    self._terminal_ttl,
                    self._terminal_max,
                    *bounds,
                ],
            )
        )
        return calls

    def card_history(self, joined: bytes) -> CardHistory:
        return card_history(joined)


class NativeCalls:
    """The same calls written by the compiled core (``fraudnative.Commands``)."""

    def __init__(
        self,
        keys: KeyLayout,
        card: Script,
        terminal: Script,
        *,
        ids: bool,
        spec: FeatureSpec = SPEC,
    ) -> None:
        fraudnative = native()
        self.keys, self.card, self.terminal, self.ids = keys, card, terminal, ids
        delay = spec.label_delay_days * DAY  # as terminal_windows computes it
        self._commands = fraudnative.Commands(
            keys.root,
            card.sha,
            terminal.sha,
            spec.card_retention_seconds,
            spec.terminal_retention_seconds,
            delay,
            [w * DAY for w in spec.terminal_windows_days],
            spec.card_max_entries,
            spec.terminal_max_entries,
        )
        self._history: Callable[[bytes], CardHistory] = fraudnative.card_history

    def calls(self, tx: Transaction, now: float) -> list[Call]:
        first, card, terminal = self._commands.exchange(
            tx.transaction_id,
            self.keys.card_tag(tx.card_id),
            tx.terminal_id,
            tx.epoch,
            tx.amount,
            now,
            self.ids,
        )
        calls = [Call(card[0], card[1], self.card), Call(terminal[0], terminal[1], self.terminal)]
        if first is not None:
            calls.insert(0, Call(first[0], first[1]))
        return calls

    def card_history(self, joined: bytes) -> CardHistory:
        return self._history(joined)


def exchange_calls(
    engine: Engine,
    keys: KeyLayout,
    card: Script,
    terminal: Script,
    *,
    ids: bool,
    spec: FeatureSpec = SPEC,
) -> ExchangeCalls:
    """The calls of ``engine`` (:class:`StartupError` when ``native`` is not installed)."""
    kind = NativeCalls if engine == "native" else PythonCalls
    return kind(keys, card, terminal, ids=ids, spec=spec)
