"""Offline features: the stream replayed through the feature code with an in-memory store.

Transactions and label events are merged in time order (a label known at the same instant
as a transaction is applied first) and fed to the same state machine the service runs
against Redis, so the features a model is trained on are the features it is served.

Two engines give the same features bit for bit (tests/unit/test_native.py):

- ``native`` (the default): the compiled core (:mod:`fraudnative`, Rust) whose feature
  code the worker runs, the whole loop in one call per chunk of transactions;
- ``python``: :mod:`fraudcore` itself, the reference (``InMemoryStore`` and ``compute``,
  one transaction at a time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from fraudcore import FEATURE_NAMES, SPEC, FeatureSpec, InMemoryStore, LabelEvent, Transaction
from fraudcore.features import compute
from training.dataset import label_events

__all__ = ["ENGINES", "ReplayStats", "replay"]

log = logging.getLogger(__name__)

Engine = Literal["native", "python"]
ENGINES: tuple[Engine, ...] = ("native", "python")


@dataclass(frozen=True)
class ReplayStats:
    transactions: int
    labels: int
    seconds: float
    engine: str = "native"

    @property
    def events_per_second(self) -> float:
        return (self.transactions + self.labels) / self.seconds if self.seconds else 0.0


PROGRESS_EVERY = 4096  # transactions between two calls of the progress callback


def replay(
    frame: pd.DataFrame,
    *,
    spec: FeatureSpec = SPEC,
    progress: Callable[[int], None] | None = None,
    dtype: type[np.floating[Any]] = np.float32,
    engine: Engine = "native",
) -> tuple[pd.DataFrame, ReplayStats]:
    """Features for every transaction of ``frame`` (canonical columns, time-sorted).

    Label events are derived from ``TX_FRAUD`` with the spec's label delay. Returns the
    frame with one column per feature (float32, as the model sees them; ``dtype=np.float64``:
    as computed, as the worker logs them) and the timing.
    ``progress``, if given, is called with the number of transactions replayed since its
    last call, every :data:`PROGRESS_EVERY` of them and once at the end.
    """
    started = time.perf_counter()
    labels = label_events(frame, delay_days=spec.label_delay_days)
    # For each transaction, how many labels are known by its time (on the nanoseconds: a
    # search over the timestamps as objects took 12 s on the reference data).
    known_before = np.searchsorted(
        _nanoseconds(labels["KNOWN_AT"]), _nanoseconds(frame["TX_DATETIME"]), side="right"
    )
    run = _native if engine == "native" else _python
    out, applied = run(frame, labels, known_before, spec, progress)
    if progress is not None and len(frame) % PROGRESS_EVERY:
        progress(len(frame) % PROGRESS_EVERY)
    stats = ReplayStats(len(frame), applied, time.perf_counter() - started, engine)
    log.debug(
        "replayed %d transactions and %d labels in %.1f s (%.0f events/s, %s)",
        stats.transactions, stats.labels, stats.seconds, stats.events_per_second, engine,
    )
    features = pd.DataFrame(out.astype(dtype), columns=list(FEATURE_NAMES), index=frame.index)
    return pd.concat([frame, features], axis=1), stats


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch, as integers (the order of the timestamps)."""
    return np.asarray(times.dt.tz_convert("UTC").array.asi8)


def _epochs(times: pd.Series) -> np.ndarray:
    """Seconds since the epoch, as ``datetime.timestamp()`` gives them: whole microseconds
    (what ``to_pydatetime`` keeps) over 1e6, one correctly rounded division."""
    micros = _nanoseconds(times) // 1_000
    seconds: np.ndarray = micros.astype(np.float64) / 1e6
    return seconds


def _native(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    known_before: np.ndarray,
    spec: FeatureSpec,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, int]:
    from fraudnative import Replay  # the compiled core (make install builds it)

    state = Replay(
        list(zip(labels["TRANSACTION_ID"].tolist(), labels["TERMINAL_ID"].tolist(),
                 _epochs(labels["TX_DATETIME"]).tolist(), _epochs(labels["KNOWN_AT"]).tolist(),
                 strict=True)),
        spec=spec,
    )
    times = frame["TX_DATETIME"]
    columns = (
        frame["TRANSACTION_ID"].tolist(), frame["CUSTOMER_ID"].tolist(),
        frame["TERMINAL_ID"].tolist(), frame["TX_AMOUNT"].astype(float).tolist(),
        _epochs(times).tolist(), (times.dt.day_of_week >= 5).tolist(),
        (times.dt.hour <= 6).tolist(), known_before.tolist(),
    )
    out = np.empty((len(frame), len(FEATURE_NAMES)), dtype=np.float64)
    for start in range(0, len(frame), PROGRESS_EVERY):
        stop = min(start + PROGRESS_EVERY, len(frame))
        rows = state.rows(*(column[start:stop] for column in columns))
        out[start:stop] = np.frombuffer(rows, dtype=np.float64).reshape(stop - start, -1)
        if progress is not None and stop - start == PROGRESS_EVERY:
            progress(PROGRESS_EVERY)
    return out, state.labels_applied


def _python(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    known_before: np.ndarray,
    spec: FeatureSpec,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, int]:
    store = InMemoryStore(spec=spec)
    label_rows = list(
        zip(
            labels["TRANSACTION_ID"].tolist(),
            labels["CUSTOMER_ID"].tolist(),
            labels["TERMINAL_ID"].tolist(),
            labels["TX_AMOUNT"].tolist(),
            labels["TX_DATETIME"].dt.to_pydatetime().tolist(),
            labels["KNOWN_AT"].dt.to_pydatetime().tolist(),
            strict=True,
        )
    )
    out = np.empty((len(frame), len(FEATURE_NAMES)), dtype=np.float64)
    applied = 0
    rows = zip(
        frame["TRANSACTION_ID"].tolist(),
        frame["CUSTOMER_ID"].tolist(),
        frame["TERMINAL_ID"].tolist(),
        frame["TX_AMOUNT"].tolist(),
        frame["TX_DATETIME"].dt.to_pydatetime().tolist(),
        known_before.tolist(),
        strict=True,
    )
    for i, (tx_id, card, terminal, amount, when, known) in enumerate(rows):
        while applied < known:
            store.add_label(LabelEvent(*label_rows[applied]))
            applied += 1
        tx = Transaction(tx_id, card, terminal, amount, when)
        card_history, terminal_history = store.exchange(tx)
        out[i] = compute(tx, card_history, terminal_history, spec=spec)
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    return out, applied
