"""The compiled core (fraudnative, Rust) against fraudcore, the reference: the same values
bit for bit, on random inputs (hypothesis) — every feature, every state transition the
replay uses (exchange, duplicates, conflicts, labels, trims, size bounds), and training's
replay end to end."""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fraudnative
from fraudcore import (
    FEATURE_NAMES,
    SPEC,
    CardHistory,
    LabelEvent,
    TerminalHistory,
    Transaction,
    compute,
)
from fraudcore.errors import DuplicateConflict
from fraudcore.features import terminal_windows
from fraudcore.state import InMemoryStore
from training import generator
from training.dataset import normalise
from training.replay import replay

from .test_features_property import T, amounts, offsets

SMALL = replace(SPEC, card_max_entries=4, terminal_max_entries=6, terminal_max_labels=3)


def bits(values: list[float]) -> list[bytes]:
    """Each value's bytes: equal means the same double (-0.0 is not 0.0 here)."""
    return [struct.pack("<d", v) for v in values]


# --- every feature ------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    amount=amounts,
    hour=st.integers(0, 23),
    day=st.integers(0, 6),
    offset_hours=st.sampled_from([0, 2, -5, 14]),  # the event's own UTC offset
    card=st.lists(st.tuples(offsets, amounts), max_size=40),
    terminal=st.lists(offsets, max_size=12),
    labels=st.lists(st.tuples(offsets, st.one_of(offsets, st.just(0.0), st.just(1.0))),
                    max_size=8),
)
def test_every_feature_is_the_references_to_the_bit(
    amount: float, hour: int, day: int, offset_hours: int, card: list[tuple[float, float]],
    terminal: list[float], labels: list[tuple[float, float]],
) -> None:
    zone = timezone(timedelta(hours=offset_hours))
    when = (T.replace(hour=hour) + timedelta(days=day)).astimezone(zone)
    t = when.timestamp()
    tx = Transaction("tx", "card", "terminal", amount, when)
    history = sorted((t + o, a) for o, a in card)
    frauds = [(t + s, max(t + s, t + k)) for s, k in labels]
    terminal_times = [t + o for o in terminal]
    counts = [sum(1 for s in terminal_times if low < s <= high)
              for low, high in terminal_windows(t, SPEC)]
    card_history = CardHistory([s for s, _ in history], [a for _, a in history])
    terminal_history = TerminalHistory(counts, [s for s, _ in frauds], [k for _, k in frauds])
    want = compute(tx, card_history, terminal_history)
    got = fraudnative.compute(tx, card_history, terminal_history)
    assert len(got) == len(FEATURE_NAMES)
    differ = [n for n, a, b in zip(FEATURE_NAMES, bits(got), bits(want), strict=True) if a != b]
    assert not differ, [(n, got[FEATURE_NAMES.index(n)], want[FEATURE_NAMES.index(n)])
                        for n in differ]


def test_sums_are_exact_as_the_references_are() -> None:
    # 0.1 ten times: a naive sum is 0.9999999999999999; fraudcore's fsum gives 1.0.
    when = datetime(2026, 3, 4, 12, tzinfo=UTC)
    t = when.timestamp()
    card = CardHistory([t - 60.0 * (i + 1) for i in range(10)][::-1], [0.1] * 10)
    terminal = TerminalHistory([0, 0, 0], [], [])
    tx = Transaction("tx", "c", "t", 0.1, when)
    assert fraudnative.compute(tx, card, terminal) == compute(tx, card, terminal)
    assert fraudnative.compute(tx, card, terminal)[4] == 1.1 / 11 * 10 / 10  # fsum + amount


def test_a_history_that_does_not_fit_the_spec_is_refused() -> None:
    tx = Transaction("tx", "c", "t", 1.0, T)
    with pytest.raises(ValueError, match="2 counts, not 3"):
        fraudnative.compute(tx, CardHistory(), TerminalHistory([0, 0], [], []))
    with pytest.raises(ValueError, match="as many timestamps as amounts"):
        fraudnative.compute(tx, CardHistory([1.0], []), TerminalHistory([0, 0, 0], [], []))


# --- every state transition --------------------------------------------------------------


def _answer(store: InMemoryStore | fraudnative.NativeStore, tx: Transaction) -> object:
    try:
        card, terminal = store.exchange(tx)
    except DuplicateConflict as exc:
        return ("conflict", str(exc))
    return (bits(list(card.timestamps)), bits(list(card.amounts)), list(terminal.counts),
            bits(list(terminal.fraud_timestamps)), bits(list(terminal.fraud_known_at)))


event = st.tuples(
    st.sampled_from(["tx", "tx", "tx", "repeat", "repeat-last", "conflict", "label",
                     "label-again"]),
    st.integers(0, 2),  # card
    st.integers(0, 1),  # terminal
    st.one_of(st.integers(0, 3), st.integers(-48, 48), st.integers(0, 40 * 24)),  # hours on
    st.integers(0, 3),  # amount
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stream=st.lists(event, max_size=80), small=st.booleans())
def test_every_exchange_and_label_leaves_the_references_state(
    stream: list[tuple[str, int, int, int, int]], small: bool
) -> None:
    spec = SMALL if small else SPEC
    reference, native = InMemoryStore(spec=spec), fraudnative.NativeStore(spec=spec)
    sent: list[Transaction] = []
    when = T
    for n, (kind, card, terminal, hours, amount) in enumerate(stream):
        when += timedelta(hours=hours)
        if kind == "repeat" and sent:
            tx = sent[n % len(sent)]
        elif kind == "repeat-last" and sent:  # still held, even by a card at its bound
            tx = sent[-1]
        elif kind == "conflict" and sent:
            old = sent[n % len(sent)]
            tx = Transaction(old.transaction_id, old.card_id, old.terminal_id,
                             old.amount + 1.0, old.timestamp)
        elif kind.startswith("label") and sent:
            old = sent[n % len(sent)]
            known = max(old.timestamp, when) + timedelta(hours=amount if kind != "label" else 0)
            label = LabelEvent(old.transaction_id, old.card_id, old.terminal_id, old.amount,
                               old.timestamp, known)
            reference.add_label(label)
            native.add_label(label)
            continue
        else:
            tx = Transaction(f"tx-{n}", f"c{card}", f"t{terminal}", float(amount), when)
            sent.append(tx)
        assert _answer(native, tx) == _answer(reference, tx), (n, tx)
    assert native.capped == reference.capped


# --- training's replay --------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), days=st.integers(9, 45), customers=st.integers(5, 60))
def test_the_compiled_replay_is_the_references_to_the_bit(
    seed: int, days: int, customers: int
) -> None:
    frame = normalise(generator.generate(generator.GeneratorConfig(
        customers=customers, terminals=2 * customers, days=days, seed=seed)), source="t")
    python, python_stats = replay(frame, engine="python", dtype=np.float64)
    native, native_stats = replay(frame, engine="native", dtype=np.float64)
    a = python[list(FEATURE_NAMES)].to_numpy()
    b = native[list(FEATURE_NAMES)].to_numpy()
    assert a.tobytes() == b.tobytes()
    assert python_stats.labels == native_stats.labels
    assert native_stats.engine == "native"


def test_the_compiled_replay_reports_progress_as_the_reference_does() -> None:
    frame = normalise(generator.generate(generator.GeneratorConfig(
        customers=80, terminals=160, days=40, seed=5)), source="t")
    steps: dict[str, list[int]] = {"native": [], "python": []}
    for engine in ("native", "python"):
        replay(frame, engine=engine, progress=steps[engine].append)  # type: ignore[arg-type]
    assert steps["native"] == steps["python"] and sum(steps["native"]) == len(frame)
