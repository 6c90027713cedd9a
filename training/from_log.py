"""A training set from what the service did: the decision log joined with the labels.

    python -m fraudtools.tail --topic fraud-decision-log --from-beginning --to-end --raw \\
        > log.jsonl
    python -m fraudtools.tail --topic fraud-labels --from-beginning --to-end --raw \\
        > labels.jsonl
    python -m training from-log --log log.jsonl --labels labels.jsonl --out set.parquet
    python -m training train --features set.parquet --train-start 2018-07-25

The decision log (``FRAUD_DECISION_LOG=true``, docs/decision-log.md) holds each decision's
features as the worker computed them from Redis. :func:`training_set` keeps one record per
transaction (outputs are at least once: a resent copy, or a redelivered transaction marked
``duplicate``, is the same transaction again), drops degraded decisions unless asked (their
features were computed on partial or empty history: not what the model will be served),
refuses a log of other feature definitions, and labels a transaction fraud when a label
event names it. The result has the canonical columns training reads, the 22 features at the
precision the worker logged them, and where each decision came from (model, rules, score,
actions), so ``train --features`` trains on the service's own features, without a replay.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import orjson
import pandas as pd

from fraudcore import FEATURE_NAMES, fingerprint, parse_label
from fraudcore.errors import InvalidEvent
from training.dataset import COLUMNS, DatasetError, normalise

__all__ = [
    "LOG_VERSION",
    "PROVENANCE",
    "LogSummary",
    "read_features",
    "read_frauds",
    "read_log",
    "training_set",
]

log = logging.getLogger(__name__)

#: The decision log format this code reads (``log_version``; service/records.py writes it).
LOG_VERSION = 1
#: Where each row's decision came from, kept beside the features (not model inputs).
PROVENANCE = (
    "MODEL_VERSION", "RULES_VERSION", "SCORE", "MODEL_ACTION", "ACTION", "DECIDED_AT",
    "DEGRADED",
)


@dataclass(frozen=True)
class LogSummary:
    """What :func:`training_set` kept and why it left the rest out."""

    records: int  # lines read
    transactions: int  # rows of the training set
    copies: int  # records of a transaction already kept (resent, or redelivered)
    degraded: int  # degraded decisions left out
    frauds: int  # rows labelled fraud
    labels_unmatched: int  # fraud labels naming no transaction of the log

    def text(self) -> str:
        return (
            f"{self.records:,} log records: {self.transactions:,} transactions "
            f"({self.frauds:,} frauds), {self.copies:,} copies and {self.degraded:,} degraded "
            f"decisions left out; {self.labels_unmatched:,} fraud labels name no logged "
            "transaction"
        )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's lines that are not blank, numbered from 1 (gzip if it ends in .gz)."""
    opener: Callable[[Path], IO[bytes]] = _gunzip if path.suffix == ".gz" else _read
    with opener(path) as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, line


def _gunzip(path: Path) -> IO[bytes]:
    return cast("IO[bytes]", gzip.open(path, "rb"))  # noqa: SIM115 - closed by the caller


def _read(path: Path) -> IO[bytes]:
    return path.open("rb")


def _record(path: Path, number: int, line: bytes, expected: str) -> dict[str, Any]:
    where = f"{path}:{number}"
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not a JSON object ({exc.msg})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: not a JSON object")
    if record.get("log_version") != LOG_VERSION:
        raise DatasetError(
            f"{where}: log_version {record.get('log_version')!r}, this code reads "
            f"{LOG_VERSION} (is this the decision log? the decisions topic has no features)"
        )
    if record.get("feature_fingerprint") != expected:
        raise DatasetError(
            f"{where}: features of fingerprint {record.get('feature_fingerprint')!r}, this "
            f"code computes {expected!r}: the log was written by other feature definitions"
        )
    features = record.get("features")
    if not isinstance(features, dict) or list(features) != list(FEATURE_NAMES):
        raise DatasetError(f"{where}: features must name the {len(FEATURE_NAMES)} features "
                           "in order")
    return record


def read_log(path: Path) -> pd.DataFrame:
    """The decision log's records in the order they were read, one row each (copies kept):
    the canonical columns but ``TX_FRAUD``, the features (float64), :data:`PROVENANCE`
    and ``DUPLICATE``. JSON lines, gzip-compressed if the name ends in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    expected = fingerprint()
    rows: list[tuple[Any, ...]] = []
    features: list[list[float]] = []
    for number, line in _lines(path):
        r = _record(path, number, line, expected)
        try:
            rows.append((
                str(r["transaction_id"]), r["timestamp"], str(r["card_id"]),
                str(r["terminal_id"]), float(r["amount"]), r["model_version"],
                r.get("rules_version"), float(r["score"]), r["model_action"], r["action"],
                r["decided_at"], bool(r["degraded"]), bool(r["duplicate"]),
            ))
            features.append([float(v) for v in r["features"].values()])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}:{number}: not a decision log record ({exc!r})") from None
    columns = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
               "MODEL_VERSION", "RULES_VERSION", "SCORE", "MODEL_ACTION", "ACTION",
               "DECIDED_AT", "DEGRADED", "DUPLICATE"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"], utc=True, format="ISO8601")
    frame["DECIDED_AT"] = pd.to_datetime(frame["DECIDED_AT"], utc=True, format="ISO8601")
    values = np.asarray(features, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return pd.concat([frame, pd.DataFrame(values, columns=list(FEATURE_NAMES))], axis=1)


def read_frauds(path: Path) -> set[str]:
    """The ids of the transactions labelled fraud: label events as JSON lines (what the
    labels topic holds, ``.jsonl``/``.json``, optionally ``.gz``), or a table (``.csv``,
    ``.parquet``) with ``TRANSACTION_ID`` and ``TX_FRAUD`` (0 or 1)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    kind = suffixes[-1] if suffixes else ""
    if kind in {".jsonl", ".json", ".ndjson"}:
        frauds = set()
        for number, line in _lines(path):
            try:
                frauds.add(parse_label(orjson.loads(line)).transaction_id)
            except (orjson.JSONDecodeError, InvalidEvent) as exc:
                raise DatasetError(f"{path}:{number}: not a label event ({exc})") from None
        return frauds
    if kind in {".csv", ".parquet", ".pq"}:
        table = (pd.read_parquet(path) if kind != ".csv"
                 else pd.read_csv(path, dtype={"TRANSACTION_ID": str}))
        missing = [c for c in ("TRANSACTION_ID", "TX_FRAUD") if c not in table]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        fraud = pd.to_numeric(table["TX_FRAUD"], errors="coerce")
        if not fraud.isin([0, 1]).all():
            raise DatasetError(f"{path}: TX_FRAUD must be 0 or 1")
        return set(table.loc[fraud == 1, "TRANSACTION_ID"].astype(str).str.strip())
    raise DatasetError(f"{path}: unknown labels file type; use .jsonl (label events), .csv "
                       "or .parquet (TRANSACTION_ID, TX_FRAUD)")


def training_set(
    decisions: pd.DataFrame, frauds: Iterable[str], *, keep_degraded: bool = False
) -> tuple[pd.DataFrame, LogSummary]:
    """One row per transaction of the log (its first record that is not a ``duplicate``
    redelivery, by decision time; a transaction's copies are left out), labelled, sorted
    by time as training sorts. Degraded decisions are left out unless ``keep_degraded``."""
    ordered = decisions.sort_values(["DUPLICATE", "DECIDED_AT"], kind="stable")
    first = ordered.drop_duplicates("TRANSACTION_ID", keep="first")
    degraded = first["DEGRADED"] & ~keep_degraded
    kept = first.loc[~degraded].drop(columns="DUPLICATE")
    fraud_ids = set(frauds)
    kept = kept.assign(TX_FRAUD=kept["TRANSACTION_ID"].isin(fraud_ids).astype(np.int8))
    kept = kept.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable", ignore_index=True)
    summary = LogSummary(
        records=len(decisions),
        transactions=len(kept),
        copies=len(decisions) - len(first),
        degraded=int(degraded.sum()),
        frauds=int(kept["TX_FRAUD"].sum()),
        labels_unmatched=len(fraud_ids - set(first["TRANSACTION_ID"])),
    )
    return kept[[*COLUMNS, *FEATURE_NAMES, *PROVENANCE]], summary


def read_features(path: Path) -> pd.DataFrame:
    """A training set with its features (``from-log``'s output, or any file with the
    canonical columns and the 22 features): the canonical frame, sorted and checked as
    training's data is, with the features beside it (float32, as the model sees them)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix.lower() in {".parquet", ".pq"}:
        raw = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv":
        raw = pd.read_csv(path, dtype={c: str for c in ("TRANSACTION_ID", "CUSTOMER_ID",
                                                         "TERMINAL_ID")})
    else:
        raise DatasetError(f"{path}: unknown file type; use .csv or .parquet")
    missing = [c for c in (*COLUMNS, *FEATURE_NAMES) if c not in raw]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (a features file "
                           "is what `python -m training from-log` writes)")
    values = raw[list(FEATURE_NAMES)].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DatasetError(f"{path}: row {row}: a feature that is not a finite number")
    frame = normalise(raw[list(COLUMNS)], source=str(path))
    features = values.astype(np.float32).set_index(raw["TRANSACTION_ID"].astype(str).str.strip())
    aligned = features.loc[frame["TRANSACTION_ID"]].reset_index(drop=True)
    return pd.concat([frame, aligned], axis=1)
