"""The in-memory store (the reference the Redis store reproduces) against a naive model of
its documented rules, on random streams (hypothesis): repeats, conflicting repeats, times
out of order, labels, and size bounds small enough to be reached.

The model keeps plain lists and applies the steps of the ``fraudcore/state.py`` docstring
literally, by scanning: no bisection, no index by id. It checks ``InMemoryStore``'s data
structure (``Timeline``: sorted inserts, discards, trims, counts) and its order of steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudcore import SPEC, LabelEvent, Transaction
from fraudcore.errors import DuplicateConflict
from fraudcore.features import terminal_windows
from fraudcore.state import InMemoryStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = replace(SPEC, card_max_entries=4, terminal_max_entries=6, terminal_max_labels=3)


@dataclass
class Model:
    """Lists of (time, id, value, tag), by card and terminal; labels by terminal."""

    spec: object
    cards: dict[str, list[tuple[float, str, float, str]]] = field(default_factory=dict)
    terminals: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    labels: dict[str, list[tuple[float, str, float]]] = field(default_factory=dict)

    def exchange(self, tx: Transaction) -> object:
        spec = self.spec
        t = tx.epoch
        card = self.cards.setdefault(tx.card_id, [])
        for time, tid, amount, terminal in card:
            if tid == tx.transaction_id and (time, amount, terminal) != (
                t, tx.amount, tx.terminal_id
            ):
                return "conflict"
        keep_after = t - spec.card_retention_seconds  # type: ignore[attr-defined]
        card[:] = [e for e in card if e[0] > keep_after]  # drop the old
        card[:] = [e for e in card if e[1] != tx.transaction_id]  # drop itself
        card.sort(key=lambda e: (e[0], e[1], e[2]))
        room = spec.card_max_entries - 1  # type: ignore[attr-defined]
        if len(card) > room:
            del card[: len(card) - room]  # the oldest go
        history = sorted((e[0], e[2]) for e in card if e[0] > keep_after)
        card.append((t, tx.transaction_id, tx.amount, tx.terminal_id))

        terminal = self.terminals.setdefault(tx.terminal_id, [])
        if all(tid != tx.transaction_id for _, tid in terminal):
            terminal.append((t, tx.transaction_id))
        cut = t - spec.terminal_retention_seconds  # type: ignore[attr-defined]
        terminal[:] = sorted(e for e in terminal if e[0] > cut)
        bound = spec.terminal_max_entries  # type: ignore[attr-defined]
        if len(terminal) > bound:
            del terminal[: len(terminal) - bound]
        counts = [sum(1 for s, _ in terminal if low < s <= high)
                  for low, high in terminal_windows(t, spec)]  # type: ignore[arg-type]
        frauds = sorted((s, k) for s, _, k in self.labels.get(tx.terminal_id, []) if s > cut)
        return history, counts, frauds

    def add_label(self, label: LabelEvent) -> None:
        labels = self.labels.setdefault(label.terminal_id, [])
        if all(tid != label.transaction_id for _, tid, _ in labels):
            labels.append((label.epoch, label.transaction_id, label.known_epoch))
        labels.sort(key=lambda e: (e[0], e[1], e[2]))
        bound = self.spec.terminal_max_labels  # type: ignore[attr-defined]
        if len(labels) > bound:
            del labels[: len(labels) - bound]


def _answer(store: InMemoryStore, tx: Transaction) -> object:
    try:
        card, terminal = store.exchange(tx)
    except DuplicateConflict:
        return "conflict"
    return (
        sorted(zip(card.timestamps, card.amounts, strict=True)),
        list(terminal.counts),
        sorted(zip(terminal.fraud_timestamps, terminal.fraud_known_at, strict=True)),
    )


event = st.tuples(
    st.sampled_from(["tx", "tx", "tx", "repeat", "conflict", "label"]),
    st.integers(0, 2),  # card
    st.integers(0, 1),  # terminal
    # hours from the previous event: mostly close (bounds and windows are reached, ties
    # on their edges happen), sometimes back (out of order) or weeks ahead (trims)
    st.one_of(st.integers(0, 3), st.integers(-48, 48), st.integers(0, 40 * 24)),
    st.integers(0, 3),  # amount
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stream=st.lists(event, max_size=80), small=st.booleans())
def test_the_in_memory_store_follows_its_rules(
    stream: list[tuple[str, int, int, int, int]], small: bool
) -> None:
    spec = SMALL if small else SPEC
    store, model = InMemoryStore(spec=spec), Model(spec)
    sent: list[Transaction] = []
    when = T0
    for n, (kind, card, terminal, hours, amount) in enumerate(stream):
        when += timedelta(hours=hours)
        if kind == "repeat" and sent:
            tx = sent[n % len(sent)]
        elif kind == "conflict" and sent:
            old = sent[n % len(sent)]
            tx = Transaction(old.transaction_id, old.card_id, old.terminal_id,
                             old.amount + 1.0, old.timestamp)
        elif kind == "label" and sent:
            old = sent[n % len(sent)]
            known = max(old.timestamp, when)
            label = LabelEvent(old.transaction_id, old.card_id, old.terminal_id, old.amount,
                               old.timestamp, known)
            store.add_label(label)
            model.add_label(label)
            continue
        else:
            tx = Transaction(f"tx-{n}", f"c{card}", f"t{terminal}", float(amount), when)
            sent.append(tx)
        assert _answer(store, tx) == model.exchange(tx), (n, tx)
