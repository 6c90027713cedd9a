"""The benchmark's input: generated transactions and their label events as Kafka records.

The same wire format as :mod:`fraudtools.feed` (the bytes are identical), built column by
column instead of row by row: a few hundred thousand records in a couple of seconds
rather than half a minute, so the short benchmark is not spent generating data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import orjson

from training import generator
from training.dataset import label_events, normalise

__all__ = ["Data", "Slice", "TX_PER_CARD_DAY", "build"]

#: The generator's mean transactions per customer and day (uniform(0, 4) a day, less the
#: times of day drawn outside the day): used to size the generated period.
TX_PER_CARD_DAY = 1.9


@dataclass(frozen=True, slots=True)
class Slice:
    """Consecutive records in event-time order: parallel lists, transactions and labels."""

    is_tx: list[bool]
    keys: list[bytes]
    values: list[bytes]
    ids: list[str]  # transaction id of each record (of the labelled one for a label)

    def __len__(self) -> int:
        return len(self.keys)

    def head(self, n: int) -> Slice:
        """The first ``n`` records."""
        return Slice(self.is_tx[:n], self.keys[:n], self.values[:n], self.ids[:n])

    @property
    def transactions(self) -> int:
        return sum(self.is_tx)

    def transactions_only(self) -> Slice:
        keep = [i for i, t in enumerate(self.is_tx) if t]
        return Slice([True] * len(keep), [self.keys[i] for i in keep],
                     [self.values[i] for i in keep], [self.ids[i] for i in keep])


@dataclass(frozen=True, slots=True)
class Data:
    records: Slice
    customers: int
    terminals: int
    days: int
    first_event: str
    last_event: str

    def take(self, transactions: int, *, start: int) -> Slice:
        """The records from ``start`` that hold the next ``transactions`` transactions (the
        label events among them included)."""
        r = self.records
        end, seen = start, 0
        while end < len(r) and seen < transactions:
            seen += r.is_tx[end]
            end += 1
        if seen < transactions:
            raise ValueError(f"not enough generated transactions: {transactions - seen} short")
        return Slice(r.is_tx[start:end], r.keys[start:end], r.values[start:end], r.ids[start:end])


def _iso(times: np.ndarray) -> list[str]:
    """UTC datetime64 values as ``isoformat()`` would write them (whole seconds)."""
    return [s + "+00:00" for s in np.datetime_as_string(times.astype("datetime64[s]"), unit="s")]


def build(transactions: int, *, customers: int = 5_000, seed: int = 11,
          start: date = date(2018, 4, 1), delay_days: float = 7.0) -> Data:
    """At least ``transactions`` generated transactions (the handbook's reference
    population: ``customers`` cards and twice as many terminals) with their labels."""
    days = math.ceil(transactions / (customers * TX_PER_CARD_DAY) * 1.05) + 1
    config = generator.GeneratorConfig(customers=customers, terminals=2 * customers, days=days,
                                       start=start, seed=seed)
    frame = normalise(generator.generate(config), source="bench")
    if len(frame) < transactions:  # the estimate above was short: generate a longer period
        return build(int(transactions * 1.2), customers=customers, seed=seed, start=start,
                     delay_days=delay_days)
    when = frame["TX_DATETIME"].dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    ids = frame["TRANSACTION_ID"].tolist()
    cards = frame["CUSTOMER_ID"].tolist()
    terminals = frame["TERMINAL_ID"].tolist()
    amounts = frame["TX_AMOUNT"].tolist()
    stamps = _iso(when)
    dumps = orjson.dumps
    tx_values = [
        dumps({"transaction_id": i, "card_id": c, "terminal_id": t, "amount": a, "timestamp": s})
        for i, c, t, a, s in zip(ids, cards, terminals, amounts, stamps, strict=True)
    ]

    known = label_events(frame, delay_days=delay_days)
    known = known[known["KNOWN_AT"] <= frame["TX_DATETIME"].max()]
    known_when = known["KNOWN_AT"].dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    label_ids = known["TRANSACTION_ID"].tolist()
    label_values = [
        dumps({"transaction_id": i, "card_id": c, "terminal_id": t, "amount": a,
               "timestamp": s, "known_at": k})
        for i, c, t, a, s, k in zip(label_ids, known["CUSTOMER_ID"].tolist(),
                                    known["TERMINAL_ID"].tolist(), known["TX_AMOUNT"].tolist(),
                                    _iso(known["TX_DATETIME"].dt.tz_convert(None).to_numpy()),
                                    _iso(known_when), strict=True)
    ]

    # Event-time order, a label first on a tie (as fraudtools.feed does).
    times = np.concatenate([when.astype(np.int64), known_when.astype(np.int64)])
    kind = np.concatenate([np.ones(len(ids), np.int8), np.zeros(len(label_ids), np.int8)])
    order = np.lexsort((kind, times)).tolist()
    n = len(ids)
    all_keys = [c.encode() for c in cards] + [c.encode() for c in known["CUSTOMER_ID"].tolist()]
    all_values = tx_values + label_values
    all_ids = ids + label_ids
    records = Slice([i < n for i in order], [all_keys[i] for i in order],
                    [all_values[i] for i in order], [all_ids[i] for i in order])
    return Data(records, customers=customers, terminals=2 * customers, days=days,
                first_event=stamps[0], last_event=stamps[-1])
