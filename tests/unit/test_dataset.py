"""read_transactions and label_events on small hand-written CSV and Parquet files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraudcore.errors import FraudError
from training.dataset import COLUMNS, DatasetError, label_events, read_transactions

HEADER = ",".join(COLUMNS)


def write_csv(tmp_path: Path, *lines: str, header: str = HEADER, name: str = "tx.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


# --- reading ---------------------------------------------------------------------------------


def test_csv_is_read_into_the_canonical_frame_sorted_by_time(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "t3,2024-01-02T00:00:00Z,c1,k1,30.5,1",
        "t1,2024-01-01T10:00:00Z,c2,k2,10,0",
        "t2,2024-01-01T09:00:00+00:00,c1,k1,0,0",
    )
    frame = read_transactions(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["TRANSACTION_ID"].tolist() == ["t2", "t1", "t3"]
    assert frame["CUSTOMER_ID"].tolist() == ["c1", "c2", "c1"]
    assert frame["TERMINAL_ID"].tolist() == ["k1", "k2", "k1"]
    assert frame["TX_AMOUNT"].tolist() == [0.0, 10.0, 30.5]
    assert frame["TX_FRAUD"].tolist() == [0, 0, 1]
    assert str(frame["TX_FRAUD"].dtype) == "int8"
    assert frame["TX_AMOUNT"].dtype == "float64"
    assert isinstance(frame["TX_DATETIME"].dtype, pd.DatetimeTZDtype)
    assert str(frame["TX_DATETIME"].dt.tz) == "UTC"
    assert frame["TX_DATETIME"].tolist() == [
        utc("2024-01-01T09:00:00Z"),
        utc("2024-01-01T10:00:00Z"),
        utc("2024-01-02T00:00:00Z"),
    ]
    assert frame.index.tolist() == [0, 1, 2]


def test_ties_in_time_are_ordered_by_transaction_id(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "b,2024-01-01T00:00:00Z,c,k,1,0",
        "a,2024-01-01T01:00:00+01:00,c,k,1,0",  # the same instant
        "c,2024-01-01T00:00:00Z,c,k,1,0",
    )
    assert read_transactions(path)["TRANSACTION_ID"].tolist() == ["a", "b", "c"]


def test_identifiers_are_stripped_and_extra_columns_ignored(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        " t1 ,2024-01-01T00:00:00Z, c1 ,k1,1.5,0,ignored",
        header=HEADER + ",NOTE",
    )
    frame = read_transactions(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame.loc[0, "TRANSACTION_ID"] == "t1"
    assert frame.loc[0, "CUSTOMER_ID"] == "c1"


def test_column_mapping(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "x1,2024-03-01T12:00:00Z,cust,TERM,12.25,1",
        header="id,when,CUSTOMER_ID,TERMINAL_ID,amount,is_fraud",
    )
    frame = read_transactions(
        path,
        columns={
            "TRANSACTION_ID": "id",
            "TX_DATETIME": "when",
            "TX_AMOUNT": "amount",
            "TX_FRAUD": "is_fraud",
        },
    )
    assert frame.to_dict("records") == [
        {
            "TRANSACTION_ID": "x1",
            "TX_DATETIME": utc("2024-03-01T12:00:00Z"),
            "CUSTOMER_ID": "cust",
            "TERMINAL_ID": "TERM",
            "TX_AMOUNT": 12.25,
            "TX_FRAUD": 1,
        }
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:00:00Z", "2024-01-15T10:00:00Z"),
        ("2024-01-15T10:00:00+00:00", "2024-01-15T10:00:00Z"),
        ("2024-01-15T10:00:00+02:00", "2024-01-15T08:00:00Z"),
        ("2024-01-15T10:00:00-05:30", "2024-01-15T15:30:00Z"),
        ("2024-01-15T10:00:00+0100", "2024-01-15T09:00:00Z"),
        ("2024-01-15 10:00:00.500+01:00", "2024-01-15T09:00:00.5Z"),
        ("2024-01-15T10:00:00", "2024-01-15T10:00:00Z"),  # naive: UTC by default
        ("2024-01-15 10:00:00", "2024-01-15T10:00:00Z"),
    ],
)
def test_timestamps_with_and_without_offset(tmp_path: Path, text: str, expected: str) -> None:
    frame = read_transactions(write_csv(tmp_path, f"t1,{text},c,k,1,0"))
    assert frame.loc[0, "TX_DATETIME"] == utc(expected)


def test_naive_timestamps_in_another_timezone(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "winter,2024-01-15 10:00:00,c,k,1,0",  # CET, +01:00
        "summer,2024-07-15 10:00:00,c,k,1,0",  # CEST, +02:00
        "aware,2024-07-15T10:00:00Z,c,k,1,0",  # an offset wins over naive_timezone
    )
    frame = read_transactions(path, naive_timezone="Europe/Paris").set_index("TRANSACTION_ID")
    assert frame.loc["winter", "TX_DATETIME"] == utc("2024-01-15T09:00:00Z")
    assert frame.loc["summer", "TX_DATETIME"] == utc("2024-07-15T08:00:00Z")
    assert frame.loc["aware", "TX_DATETIME"] == utc("2024-07-15T10:00:00Z")


def test_fraud_flag_written_as_float_is_accepted(tmp_path: Path) -> None:
    frame = read_transactions(write_csv(tmp_path, "t1,2024-01-01T00:00:00Z,c,k,1,1.0"))
    assert frame["TX_FRAUD"].tolist() == [1]


def _canonical(**overrides: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": [2, 1],
            "TX_DATETIME": pd.to_datetime(
                ["2024-07-01T12:00:00+02:00", "2024-07-01T09:00:00+00:00"], utc=True
            ),
            "CUSTOMER_ID": [10, 11],
            "TERMINAL_ID": [100, 100],
            "TX_AMOUNT": [5.0, 7.5],
            "TX_FRAUD": [0, 1],
        }
    )
    for name, value in overrides.items():
        frame[name] = value
    return frame


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".PARQUET"])
def test_parquet_with_tz_aware_timestamps_and_integer_ids(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tx{suffix}"
    _canonical().to_parquet(path)
    frame = read_transactions(path)
    assert frame["TRANSACTION_ID"].tolist() == ["1", "2"]  # 09:00Z before 10:00Z
    assert frame["CUSTOMER_ID"].tolist() == ["11", "10"]
    assert frame["TERMINAL_ID"].tolist() == ["100", "100"]
    assert frame["TX_DATETIME"].tolist() == [
        utc("2024-07-01T09:00:00Z"),
        utc("2024-07-01T10:00:00Z"),
    ]
    assert frame["TX_FRAUD"].tolist() == [1, 0]


def test_parquet_with_naive_datetimes_uses_naive_timezone(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    _canonical(
        TX_DATETIME=pd.to_datetime(["2024-07-01 12:00:00", "2024-01-01 12:00:00"])
    ).to_parquet(path)
    frame = read_transactions(path, naive_timezone="Europe/Paris").set_index("TRANSACTION_ID")
    assert frame.loc["2", "TX_DATETIME"] == utc("2024-07-01T10:00:00Z")
    assert frame.loc["1", "TX_DATETIME"] == utc("2024-01-01T11:00:00Z")
    utc_frame = read_transactions(path).set_index("TRANSACTION_ID")
    assert utc_frame.loc["2", "TX_DATETIME"] == utc("2024-07-01T12:00:00Z")


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    _canonical().rename(columns={"TX_AMOUNT": "amt"}).to_parquet(path)
    frame = read_transactions(path, columns={"TX_AMOUNT": "amt"})
    assert frame["TX_AMOUNT"].tolist() == [7.5, 5.0]


# --- errors ----------------------------------------------------------------------------------


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as info:
        read_transactions(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


GOOD = "t1,2024-01-01T00:00:00Z,c1,k1,10,0"


def test_dataset_error_is_in_the_project_tree() -> None:
    assert issubclass(DatasetError, FraudError)
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "", "2024-02-30 10:00:00"])
def test_bad_timestamp_names_row_and_column(tmp_path: Path, bad: str) -> None:
    path = write_csv(tmp_path, GOOD, "t2,2024-01-02T00:00:00Z,c1,k1,10,0", f"t3,{bad},c1,k1,10,0")
    message = error_of(path)
    assert str(path) in message
    assert "row 3, column TX_DATETIME" in message
    assert repr(bad) in message
    assert "ISO 8601" in message


def test_bad_timestamps_are_counted(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "t1,never,c,k,1,0", GOOD.replace("t1", "t2"), "t3,later,c,k,1,0")
    message = error_of(path)
    assert "row 1, column TX_DATETIME" in message
    assert "2 such row(s)" in message


@pytest.mark.parametrize("bad", ["ten", "", "1,5", "12.5 EUR"])
def test_non_numeric_amount(tmp_path: Path, bad: str) -> None:
    path = write_csv(tmp_path, GOOD, f't2,2024-01-02T00:00:00Z,c1,k1,"{bad}",0')
    message = error_of(path)
    assert "row 2, column TX_AMOUNT: not a number" in message
    assert repr(bad) in message


@pytest.mark.parametrize("bad", ["-0.01", "-5", "inf", "-inf"])
def test_negative_or_infinite_amount(tmp_path: Path, bad: str) -> None:
    path = write_csv(tmp_path, GOOD, f"t2,2024-01-02T00:00:00Z,c1,k1,{bad},0")
    message = error_of(path)
    assert "row 2, column TX_AMOUNT: must be finite and >= 0" in message
    assert repr(bad) in message


@pytest.mark.parametrize("bad", ["2", "-1", "0.5", "yes", "true", ""])
def test_fraud_flag_not_0_or_1(tmp_path: Path, bad: str) -> None:
    path = write_csv(
        tmp_path,
        GOOD,
        "t2,2024-01-02T00:00:00Z,c1,k1,1,1",
        f"t3,2024-01-03T00:00:00Z,c1,k1,1,{bad}",
    )
    message = error_of(path)
    assert "row 3, column TX_FRAUD: must be 0 or 1" in message
    assert repr(bad) in message


@pytest.mark.parametrize(
    ("line", "column"),
    [
        (",2024-01-02T00:00:00Z,c1,k1,1,0", "TRANSACTION_ID"),
        ("t2,2024-01-02T00:00:00Z,,k1,1,0", "CUSTOMER_ID"),
        ("t2,2024-01-02T00:00:00Z,c1,   ,1,0", "TERMINAL_ID"),
    ],
)
def test_empty_identifier(tmp_path: Path, line: str, column: str) -> None:
    message = error_of(write_csv(tmp_path, GOOD, line))
    assert f"row 2, column {column}: empty identifier" in message


def test_duplicate_transaction_id_names_the_second_occurrence(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        GOOD,
        "dup,2024-01-02T00:00:00Z,c1,k1,1,0",
        "t3,2024-01-03T00:00:00Z,c1,k1,1,0",
        "dup,2024-01-04T00:00:00Z,c2,k1,2,0",
    )
    message = error_of(path)
    assert "row 4, column TRANSACTION_ID: duplicate transaction id" in message
    assert "'dup'" in message


def test_duplicate_after_stripping_spaces(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, "t1 ,2024-01-02T00:00:00Z,c1,k1,1,0")
    assert "row 2, column TRANSACTION_ID: duplicate transaction id" in error_of(path)


def test_errors_count_rows_before_sorting(tmp_path: Path) -> None:
    # The bad row is the first in the file but the last in time: it is still row 1.
    path = write_csv(tmp_path, "t9,2024-12-31T00:00:00Z,c1,k1,-1,0", GOOD)
    assert "row 1, column TX_AMOUNT" in error_of(path)


def test_missing_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "t1,2024-01-01T00:00:00Z,c1,k1,0",
        header="TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_FRAUD",
    )
    message = error_of(path)
    assert "missing column(s) TX_AMOUNT (as 'TX_AMOUNT')" in message
    assert "--columns" in message


def test_missing_mapped_column_names_the_mapped_name(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD)
    message = error_of(path, columns={"TX_AMOUNT": "amount", "TX_FRAUD": "label"})
    assert "TX_AMOUNT (as 'amount')" in message
    assert "TX_FRAUD (as 'label')" in message
    assert "TX_DATETIME" not in message
    assert "--columns" in message


def test_missing_column_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    _canonical().drop(columns=["TERMINAL_ID"]).to_parquet(path)
    assert "TERMINAL_ID (as 'TERMINAL_ID')" in error_of(path)


@pytest.mark.parametrize("name", ["tx.json", "tx.xlsx", "tx", "tx.txt"])
def test_unknown_file_type(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(HEADER + "\n" + GOOD + "\n")
    message = error_of(path)
    assert "unknown file type" in message
    assert ".csv or .parquet" in message


def test_parquet_amount_null_is_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    _canonical(TX_AMOUNT=[5.0, None]).to_parquet(path)
    assert "row 2, column TX_AMOUNT: not a number" in error_of(path)


@pytest.mark.parametrize("tz_aware", [True, False], ids=["tz-aware", "naive"])
def test_parquet_missing_timestamp_names_the_row(tmp_path: Path, tz_aware: bool) -> None:
    path = tmp_path / "tx.parquet"
    stamps = pd.to_datetime(["2024-01-01T00:00:00", None], utc=tz_aware)
    _canonical(TX_DATETIME=stamps).to_parquet(path)
    assert "row 2, column TX_DATETIME" in error_of(path)


@pytest.mark.parametrize(
    "stamp", ["2024-03-31 02:30:00", "2024-10-27 02:30:00"], ids=["gap", "overlap"]
)
def test_naive_time_that_does_not_exist_in_naive_timezone(tmp_path: Path, stamp: str) -> None:
    path = write_csv(tmp_path, GOOD, f"t2,{stamp},c1,k1,1,0")
    assert "row 2, column TX_DATETIME" in error_of(path, naive_timezone="Europe/Paris")


# --- label events ----------------------------------------------------------------------------


def test_label_events_one_per_fraud_known_after_the_delay(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "a,2024-01-01T00:00:00Z,c1,k1,10,1",
        "b,2024-01-02T00:00:00Z,c1,k2,20,0",
        "c,2024-01-01T12:00:00Z,c2,k1,30,1",
        "d,2024-01-05T06:00:00Z,c3,k3,40,1",
    )
    labels = label_events(read_transactions(path), delay_days=7)
    assert list(labels.columns) == [*COLUMNS[:5], "KNOWN_AT"]
    assert labels["TRANSACTION_ID"].tolist() == ["a", "c", "d"]
    assert labels["KNOWN_AT"].tolist() == [
        utc("2024-01-08T00:00:00Z"),
        utc("2024-01-08T12:00:00Z"),
        utc("2024-01-12T06:00:00Z"),
    ]
    assert (labels["KNOWN_AT"] - labels["TX_DATETIME"] == pd.Timedelta(days=7)).all()
    assert labels["TX_AMOUNT"].tolist() == [10.0, 30.0, 40.0]
    assert labels["TERMINAL_ID"].tolist() == ["k1", "k1", "k3"]
    assert labels.index.tolist() == [0, 1, 2]


def test_label_events_are_sorted_by_known_at_even_if_the_frame_is_not() -> None:
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": ["late", "early", "tie-b", "tie-a", "legit"],
            "TX_DATETIME": pd.to_datetime(
                ["2024-02-01", "2024-01-01", "2024-01-15", "2024-01-15", "2023-12-01"], utc=True
            ),
            "CUSTOMER_ID": ["c"] * 5,
            "TERMINAL_ID": ["k"] * 5,
            "TX_AMOUNT": [1.0] * 5,
            "TX_FRAUD": [1, 1, 1, 1, 0],
        }
    )
    labels = label_events(frame, delay_days=7)
    assert labels["TRANSACTION_ID"].tolist() == ["early", "tie-a", "tie-b", "late"]
    assert labels["KNOWN_AT"].iloc[0] == utc("2024-01-08T00:00:00Z")


def test_label_events_of_a_frame_without_fraud_are_empty(tmp_path: Path) -> None:
    labels = label_events(read_transactions(write_csv(tmp_path, GOOD)), delay_days=7)
    assert labels.empty
    assert "KNOWN_AT" in labels.columns
