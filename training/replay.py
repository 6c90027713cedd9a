"""Offline features: the stream replayed through ``fraudcore`` with the in-memory store.

Transactions and label events are merged in time order (a label known at the same instant
as a transaction is applied first) and fed to the same state machine the service runs
against Redis, so the features a model is trained on are the features it is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraudcore import FEATURE_NAMES, SPEC, FeatureSpec, InMemoryStore, LabelEvent, Transaction
from fraudcore.features import compute
from training.dataset import label_events

__all__ = ["ReplayStats", "replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayStats:
    transactions: int
    labels: int
    seconds: float

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
) -> tuple[pd.DataFrame, ReplayStats]:
    """Features for every transaction of ``frame`` (canonical columns, time-sorted).

    Label events are derived from ``TX_FRAUD`` with the spec's label delay. Returns the
    frame with one column per feature (float32, as the model sees them; ``dtype=np.float64``:
    as computed, as the worker logs them) and the timing.
    ``progress``, if given, is called with the number of transactions replayed since its
    last call, every :data:`PROGRESS_EVERY` of them and once at the end.
    """
    started = time.perf_counter()
    store = InMemoryStore(spec=spec)
    labels = label_events(frame, delay_days=spec.label_delay_days)
    label_times = labels["KNOWN_AT"].to_numpy()
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
    # For each transaction, how many labels are known by its time.
    known_before = np.searchsorted(label_times, frame["TX_DATETIME"].to_numpy(), side="right")

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
    if progress is not None and len(frame) % PROGRESS_EVERY:
        progress(len(frame) % PROGRESS_EVERY)
    stats = ReplayStats(len(frame), applied, time.perf_counter() - started)
    log.debug(
        "replayed %d transactions and %d labels in %.1f s (%.0f events/s)",
        stats.transactions,
        stats.labels,
        stats.seconds,
        stats.events_per_second,
    )
    features = pd.DataFrame(out.astype(dtype), columns=list(FEATURE_NAMES), index=frame.index)
    return pd.concat([frame, features], axis=1), stats
