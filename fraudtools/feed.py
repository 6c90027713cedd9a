"""Transactions and label events as Kafka records, in event-time order.

A label event (a transaction found to be fraud) follows its transaction by the label
delay; both are keyed by card id, like every topic of the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pandas as pd

from training.dataset import label_events

__all__ = ["Record", "feed", "label_value", "transaction_value", "with_labels_behind"]


@dataclass(frozen=True, slots=True)
class Record:
    kind: str  # "transaction" or "label"
    key: bytes
    value: bytes
    event_time: datetime
    transaction_id: str
    fraud: bool


def transaction_value(row: dict[str, Any]) -> bytes:
    return orjson.dumps(_transaction(row))


def label_value(row: dict[str, Any]) -> bytes:
    return orjson.dumps({**_transaction(row), "known_at": row["KNOWN_AT"].isoformat()})


def _transaction(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": row["TRANSACTION_ID"],
        "card_id": row["CUSTOMER_ID"],
        "terminal_id": row["TERMINAL_ID"],
        "amount": row["TX_AMOUNT"],
        "timestamp": row["TX_DATETIME"].isoformat(),
    }


def feed(frame: pd.DataFrame, *, delay_days: float, labels: bool = True) -> list[Record]:
    """Records for ``frame`` (canonical columns): each transaction, and each fraud's
    label at its known time, merged by event time (a label first on a tie)."""
    records = [
        Record(
            "transaction",
            r["CUSTOMER_ID"].encode(),
            transaction_value(r),
            r["TX_DATETIME"].to_pydatetime(),
            r["TRANSACTION_ID"],
            bool(r["TX_FRAUD"]),
        )
        for r in frame.to_dict("records")
    ]
    if labels:
        known = label_events(frame, delay_days=delay_days)
        known = known[known["KNOWN_AT"] <= frame["TX_DATETIME"].max()]
        records += [
            Record(
                "label",
                r["CUSTOMER_ID"].encode(),
                label_value(r),
                r["KNOWN_AT"].to_pydatetime(),
                r["TRANSACTION_ID"],
                True,
            )
            for r in known.to_dict("records")
        ]
    records.sort(key=lambda r: (r.event_time, r.kind != "label"))
    return records


def with_labels_behind(records: Sequence[Record]) -> list[Record]:
    """The transactions in order, each fraud's label (when it is known within the stream)
    right behind its transaction: a label must name a recorded transaction, and it counts
    only from its known time on, so sending it early changes no feature."""
    labels = {r.transaction_id: r for r in records if r.kind == "label"}
    out: list[Record] = []
    for r in records:
        if r.kind == "transaction":
            out.append(r)
            if r.transaction_id in labels:
                out.append(labels[r.transaction_id])
    return out
