"""Labelled transaction history: read a user's file, check it, derive the label events.

The canonical frame has the benchmark's columns::

    TRANSACTION_ID, TX_DATETIME (UTC, tz-aware), CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD

and is sorted by time (ties by transaction id). A bad row is never dropped: it raises
:class:`DatasetError` naming the row, the column and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from fraudcore.errors import FraudError

__all__ = ["COLUMNS", "DatasetError", "label_events", "normalise", "read_transactions"]

log = logging.getLogger(__name__)

COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD")
_ID_COLUMNS = ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID")


class DatasetError(FraudError, ValueError):
    """A data file cannot be used as it is; the message names the row and column."""


def read_transactions(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    naive_timezone: str = "UTC",
) -> pd.DataFrame:
    """Read a CSV or Parquet file into the canonical frame.

    ``columns`` maps canonical names to the file's names (``{"TX_AMOUNT": "amount"}``);
    unmapped ones keep their canonical names. Timestamps without an offset are read in
    ``naive_timezone``. Row numbers in errors count data rows from 1 (the header is row 0).
    """
    path = Path(path)
    if path.suffix.lower() in {".parquet", ".pq"}:
        raw = pd.read_parquet(path)
    elif path.suffix.lower() in {".csv", ".gz"}:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        raise DatasetError(f"{path}: unknown file type; use .csv or .parquet")
    mapping = {name: (columns or {}).get(name, name) for name in COLUMNS}
    missing = [f"{canon} (as {name!r})" for canon, name in mapping.items() if name not in raw]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; map other names with --columns "
            "CANONICAL=yours,..."
        )
    frame = raw[[mapping[c] for c in COLUMNS]].set_axis(list(COLUMNS), axis=1)
    return normalise(frame, naive_timezone=naive_timezone, source=str(path))


def normalise(
    frame: pd.DataFrame, *, naive_timezone: str = "UTC", source: str = "data"
) -> pd.DataFrame:
    """Check and convert a frame with the canonical columns; sort it by time."""
    out = pd.DataFrame(index=frame.index)
    for name in _ID_COLUMNS:
        values = frame[name].astype(str).str.strip()
        _fail_where(values.eq("") | values.eq("nan"), frame, name, "empty identifier", source)
        out[name] = values
    out["TX_DATETIME"] = _timestamps(frame["TX_DATETIME"], naive_timezone, source)
    amount = pd.to_numeric(frame["TX_AMOUNT"], errors="coerce").astype(float)
    _fail_where(amount.isna(), frame, "TX_AMOUNT", "not a number", source)
    _fail_where(
        ~np.isfinite(amount) | (amount < 0), frame, "TX_AMOUNT", "must be finite and >= 0", source
    )
    out["TX_AMOUNT"] = amount
    fraud = pd.to_numeric(frame["TX_FRAUD"], errors="coerce")
    _fail_where(~fraud.isin([0, 1]), frame, "TX_FRAUD", "must be 0 or 1", source)
    out["TX_FRAUD"] = fraud.astype(np.int8)
    duplicated = out["TRANSACTION_ID"].duplicated(keep="first")
    _fail_where(duplicated, frame, "TRANSACTION_ID", "duplicate transaction id", source)
    out = out[list(COLUMNS)].sort_values(
        ["TX_DATETIME", "TRANSACTION_ID"], kind="stable", ignore_index=True
    )
    frauds = int(out["TX_FRAUD"].sum())
    log.info(
        "%s: %s transactions, %s of them frauds (%.2f %%)",
        source, f"{len(out):,}", f"{frauds:,}", 100 * frauds / len(out) if len(out) else 0.0,
    )
    return out


def label_events(frame: pd.DataFrame, *, delay_days: float) -> pd.DataFrame:
    """One label event per fraud, known ``delay_days`` after the transaction, by known time."""
    frauds = frame.loc[frame["TX_FRAUD"] == 1, list(COLUMNS[:5])].copy()
    frauds["KNOWN_AT"] = frauds["TX_DATETIME"] + pd.Timedelta(days=delay_days)
    return frauds.sort_values(["KNOWN_AT", "TRANSACTION_ID"], kind="stable", ignore_index=True)


def _timestamps(values: pd.Series, naive_timezone: str, source: str) -> pd.Series:
    """Parse each value on its own, so mixed offsets and naive stamps are both handled.

    A naive time that does not exist or is ambiguous in ``naive_timezone`` (a daylight-
    saving change) is an error, like an unreadable one.
    """
    local = {"ambiguous": "NaT", "nonexistent": "NaT"}
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
        text = values.astype(str)
    elif pd.api.types.is_datetime64_dtype(values):
        parsed = values.dt.tz_localize(naive_timezone, **local).dt.tz_convert("UTC")
        text = values.astype(str)
    else:
        text = values.astype(str).str.strip()
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        if has_offset.any():
            parsed[has_offset] = pd.to_datetime(
                text[has_offset], errors="coerce", utc=True, format="ISO8601"
            )
        if (~has_offset).any():
            naive = pd.to_datetime(text[~has_offset], errors="coerce", format="ISO8601")
            parsed[~has_offset] = naive.dt.tz_localize(naive_timezone, **local).dt.tz_convert("UTC")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{source}: row {row + 1}, column TX_DATETIME: cannot read {text.iloc[row]!r} as an "
            f"ISO 8601 timestamp in {naive_timezone} when it has no offset (missing, "
            f"malformed, or inside a daylight-saving change; {int(bad.sum())} such row(s))"
        )
    return parsed.astype("datetime64[ns, UTC]")


def _fail_where(bad: pd.Series, frame: pd.DataFrame, column: str, reason: str, source: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame[column].iloc[row]
        raise DatasetError(
            f"{source}: row {row + 1}, column {column}: {reason} (value {value!r}; "
            f"{int(bad.sum())} such row(s))"
        )
