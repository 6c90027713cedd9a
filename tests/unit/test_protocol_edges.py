"""training.protocol at the edges its docstrings promise: naive times taken as UTC, the
test period's exclusive end, the warning when the history is too short to clean the later
test days, the smallest folds and steps, and what each refusal and log line says. Values
are worked out by hand from the docstrings (see tests/mutation-survivors.md for the
mutants these were written for).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pandas as pd
import pytest

from training.protocol import Split, clean_test, prequential_splits, split

REFERENCE = Split(date(2018, 7, 25))  # train 07-25..07-31, gap 08-01..08-07, test 08-08..08-14


def _frame(rows: list[tuple[str, int, int]], *, utc: bool = True) -> pd.DataFrame:
    """rows: (datetime, card, fraud); with utc=False the datetimes are naive."""
    return pd.DataFrame(
        {
            "TRANSACTION_ID": pd.Series(range(len(rows)), dtype="int64"),
            "TX_DATETIME": pd.to_datetime([r[0] for r in rows], utc=utc),
            "CUSTOMER_ID": pd.Series([r[1] for r in rows], dtype="int64"),
            "TX_FRAUD": pd.Series([r[2] for r in rows], dtype="int64"),
        }
    )


# --- days are UTC days, naive values are UTC --------------------------------------------


def test_naive_times_are_taken_to_be_utc() -> None:
    rows = [
        ("2018-07-24 23:59:59", 1, 0),  # before training
        ("2018-07-25 00:00:00", 1, 0),  # first training second
        ("2018-08-08 00:00:00", 1, 0),  # first test second
        ("2018-08-14 23:59:59", 1, 0),  # last test second
        ("2018-08-15 00:00:00", 1, 0),  # after the test
    ]
    train, test = split(_frame(rows, utc=False), REFERENCE)
    assert train["TRANSACTION_ID"].tolist() == [1]
    assert test["TRANSACTION_ID"].tolist() == [2, 3]
    # the same instants written as UTC give the same rows
    aware_train, aware_test = split(_frame(rows), REFERENCE)
    assert aware_train["TRANSACTION_ID"].tolist() == [1]
    assert aware_test["TRANSACTION_ID"].tolist() == [2, 3]


def test_naive_history_cleans_as_utc() -> None:
    rows = [("2018-07-31 23:59:59", 7, 1), ("2018-08-08 10:00:00", 7, 0)]
    frame = _frame(rows, utc=False)
    assert clean_test(frame, split(frame, REFERENCE)[1], REFERENCE).empty


def test_times_that_are_not_datetimes_are_refused_by_name() -> None:
    frame = _frame([("2018-08-08T10:00:00+00:00", 1, 0)]).assign(TX_DATETIME="2018-08-08")
    with pytest.raises(TypeError, match="TX_DATETIME must be a datetime64 column, got "):
        split(frame, REFERENCE)


# --- clean_test ---------------------------------------------------------------------------


def test_a_test_row_on_the_first_day_after_the_test_is_outside_it() -> None:
    # the test period is [test_start, test_end): 08-15 is not in it
    row = _frame([("2018-08-15T00:00:00+00:00", 1, 0)])
    with pytest.raises(ValueError, match=r"1 test rows lie outside the test period"):
        clean_test(row, row, REFERENCE)


def _history_until(last: str) -> pd.DataFrame:
    return _frame([("2018-07-26T12:00:00+00:00", 1, 1), (last, 2, 0)])


def _test_rows() -> pd.DataFrame:
    return _frame([("2018-08-14T10:00:00+00:00", 1, 0), ("2018-08-14T11:00:00+00:00", 3, 0)])


def test_a_history_that_ends_before_the_last_day_needed_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The last test day, 08-14, needs labels up to 08-14 - 7 - 1 = 08-06.
    history = _history_until("2018-08-05T23:59:59+00:00")
    with caplog.at_level(logging.WARNING, logger="training.protocol"):
        kept = clean_test(history, _test_rows(), REFERENCE)
    assert kept["CUSTOMER_ID"].tolist() == [3]  # card 1's training fraud is known
    assert [r.getMessage() for r in caplog.records] == [
        "history ends at 2018-08-05 23:59:59+00:00, before 2018-08-06: "
        "cleaning of later test days is incomplete"
    ]


def test_a_history_that_reaches_the_last_day_needed_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = _history_until("2018-08-06T00:00:00+00:00")
    with caplog.at_level(logging.WARNING, logger="training.protocol"):
        clean_test(history, _test_rows(), REFERENCE)
    assert caplog.records == []


def test_clean_test_and_split_log_what_they_did(caplog: pytest.LogCaptureFixture) -> None:
    frame = _frame(
        [
            ("2018-07-26T12:00:00+00:00", 1, 1),  # training: card 1 compromised
            ("2018-07-27T12:00:00+00:00", 2, 0),  # training
            ("2018-08-09T10:00:00+00:00", 1, 0),  # test, card 1: dropped
            ("2018-08-09T11:00:00+00:00", 1, 0),  # test, card 1: dropped
            ("2018-08-10T10:00:00+00:00", 2, 0),  # test, kept
        ]
    )
    with caplog.at_level(logging.DEBUG, logger="training.protocol"):
        _, test = split(frame, REFERENCE)
        kept = clean_test(frame, test, REFERENCE)
    assert kept["TRANSACTION_ID"].tolist() == [4]
    assert [r.getMessage() for r in caplog.records] == [
        f"split {REFERENCE}: 2 train rows, 3 test rows",
        f"clean_test {REFERENCE}: dropped 2 of 3 test rows (1 cards known compromised)",
    ]
    assert str(REFERENCE) == "train 2018-07-25..2018-07-31, gap 7d, test 2018-08-08..2018-08-14"


# --- prequential_splits ---------------------------------------------------------------------


def test_one_fold_and_a_one_day_step_are_allowed() -> None:
    assert prequential_splits(date(2018, 8, 1), folds=1) == [Split(date(2018, 8, 1))]
    assert [s.train_start for s in prequential_splits(date(2018, 8, 3), folds=3, step_days=1)] == [
        date(2018, 8, 3), date(2018, 8, 2), date(2018, 8, 1),
    ]


def test_folds_and_step_below_1_are_refused_with_the_value_given() -> None:
    with pytest.raises(ValueError, match=r"folds must be >= 1, got 0"):
        prequential_splits(date(2018, 8, 1), folds=0)
    with pytest.raises(ValueError, match=r"step_days must be >= 1, got 0"):
        prequential_splits(date(2018, 8, 1), step_days=0)


def test_every_period_length_is_passed_to_each_fold() -> None:
    folds = prequential_splits(
        date(2018, 8, 1), folds=2, step_days=7, train_days=3, delay_days=2, test_days=4
    )
    assert folds == [
        Split(date(2018, 8, 1), train_days=3, delay_days=2, test_days=4),
        Split(date(2018, 7, 25), train_days=3, delay_days=2, test_days=4),
    ]
    assert folds[1].test_range == (date(2018, 7, 30), date(2018, 8, 3))
    assert folds[0].test_end - timedelta(days=1) == date(2018, 8, 9)
