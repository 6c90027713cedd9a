"""Split boundaries, test cleaning and prequential folds on hand-made frames."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from training.protocol import Split, clean_test, prequential_splits, split

REFERENCE = Split(date(2018, 7, 25))


def _frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    """rows: (ISO datetime with offset, card, fraud)."""
    return pd.DataFrame(
        {
            "TRANSACTION_ID": pd.Series(range(len(rows)), dtype="int64"),
            "TX_DATETIME": pd.to_datetime([r[0] for r in rows], utc=True),
            "CUSTOMER_ID": pd.Series([r[1] for r in rows], dtype="int64"),
            "TERMINAL_ID": pd.Series([0] * len(rows), dtype="int64"),
            "TX_AMOUNT": [10.0] * len(rows),
            "TX_FRAUD": pd.Series([r[2] for r in rows], dtype="int64"),
        }
    )


def test_split_dates_of_the_reference_split() -> None:
    assert REFERENCE.train_range == (date(2018, 7, 25), date(2018, 8, 1))
    assert REFERENCE.test_start == date(2018, 8, 8)
    assert REFERENCE.test_range == (date(2018, 8, 8), date(2018, 8, 15))
    assert REFERENCE.train_dates[-1] == date(2018, 7, 31)
    assert REFERENCE.test_dates == tuple(date(2018, 8, 8) + timedelta(days=i) for i in range(7))
    assert REFERENCE.known_fraud_cutoff(date(2018, 8, 8)) == date(2018, 7, 31)
    other = Split(date(2018, 7, 25), train_days=3, delay_days=2, test_days=1)
    assert other.test_range == (date(2018, 7, 30), date(2018, 7, 31))


def test_split_rejects_bad_values() -> None:
    with pytest.raises(TypeError):
        Split(datetime(2018, 7, 25))
    with pytest.raises(ValueError):
        Split(date(2018, 7, 25), train_days=0)
    with pytest.raises(ValueError):
        Split(date(2018, 7, 25), delay_days=-1)


def test_split_boundaries_are_utc_days_half_open() -> None:
    frame = _frame(
        [
            ("2018-07-24T23:59:59+00:00", 1, 0),  # 0 before training
            ("2018-07-25T00:00:00+00:00", 1, 0),  # 1 first training second
            ("2018-07-31T23:59:59+00:00", 1, 0),  # 2 last training second
            ("2018-08-01T00:00:00+00:00", 1, 0),  # 3 gap
            ("2018-08-07T23:59:59+00:00", 1, 0),  # 4 gap
            ("2018-08-08T00:00:00+00:00", 1, 0),  # 5 first test second
            ("2018-08-14T23:59:59+00:00", 1, 0),  # 6 last test second
            ("2018-08-15T00:00:00+00:00", 1, 0),  # 7 after test
            ("2018-08-08T01:00:00+02:00", 1, 0),  # 8 = 08-07 23:00 UTC: gap
            ("2018-07-25T01:30:00+02:00", 1, 0),  # 9 = 07-24 23:30 UTC: before
        ]
    )
    train, test = split(frame, REFERENCE)
    assert train["TRANSACTION_ID"].tolist() == [1, 2]
    assert test["TRANSACTION_ID"].tolist() == [5, 6]
    assert list(train.columns) == list(frame.columns)


def _kept_days(cleaned: pd.DataFrame, card: int) -> list[int]:
    rows = cleaned.loc[cleaned["CUSTOMER_ID"] == card, "TX_DATETIME"]
    return sorted((d.date() - date(2018, 8, 8)).days for d in rows)


def test_clean_test_known_compromised_cards() -> None:
    history = [
        ("2018-07-24T12:00:00+00:00", 10, 1),  # card 10: fraud before training only
        ("2018-07-25T00:00:01+00:00", 11, 1),  # card 11: fraud on training day 1
        ("2018-08-01T12:00:00+00:00", 12, 1),  # card 12: fraud on the first gap day
        ("2018-08-06T23:59:59+00:00", 13, 1),  # card 13: fraud on the next-to-last gap day
        ("2018-08-07T00:00:00+00:00", 14, 1),  # card 14: fraud on the last gap day
        ("2018-08-08T09:00:00+00:00", 15, 1),  # card 15: fraud on the first test day
        ("2018-07-24T12:00:00+00:00", 16, 1),  # card 16: before training ...
        ("2018-08-03T12:00:00+00:00", 16, 1),  # ... and on gap day 3
        ("2018-07-28T12:00:00+00:00", 17, 0),  # card 17: legitimate only
    ]
    cards = [10, 11, 12, 13, 14, 15, 16, 17]
    tests = [
        ((date(2018, 8, 8) + timedelta(days=d)).isoformat() + "T10:00:00+00:00", c, 0)
        for d in range(7)
        for c in cards
    ]
    frame = _frame(history + tests)
    _, test = split(frame, REFERENCE)
    assert len(test) == 7 * len(cards) + 1  # plus card 15's fraud on the first test day

    cleaned = clean_test(frame, test, REFERENCE)

    every_day = list(range(7))
    assert _kept_days(cleaned, 10) == every_day  # frauds before training do not count
    assert _kept_days(cleaned, 11) == []  # known from the first test day on
    assert _kept_days(cleaned, 12) == [0]  # 08-01 = T - 8 for T = 08-09 (test day 1)
    assert _kept_days(cleaned, 13) == every_day[:-1]  # known only on the last test day
    assert _kept_days(cleaned, 14) == every_day  # 08-07 is known on 08-15: after the test
    assert _kept_days(cleaned, 15) == [0] + every_day  # test-day frauds never count
    assert _kept_days(cleaned, 16) == [0, 1, 2]  # 08-03 known from 08-11 (test day 3)
    assert _kept_days(cleaned, 17) == every_day
    assert cleaned.index.isin(test.index).all()


def test_clean_test_general_delay() -> None:
    # train d0, d1; gap d2..d4; test d5..d7; known on T: frauds on [d0, T - 4].
    s = Split(date(2018, 1, 1), train_days=2, delay_days=3, test_days=3)
    day = [(date(2018, 1, 1) + timedelta(days=i)).isoformat() + "T12:00:00+00:00" for i in range(8)]
    history = [(day[1], 1, 1), (day[2], 2, 1), (day[3], 3, 1), (day[4], 4, 1)]
    tests = [(day[t], c, 0) for t in (5, 6, 7) for c in (1, 2, 3, 4)]
    frame = _frame(history + tests)
    cleaned = clean_test(frame, split(frame, s)[1], s)
    kept = {
        c: sorted(int(d.day) - 1 for d in cleaned.loc[cleaned["CUSTOMER_ID"] == c, "TX_DATETIME"])
        for c in (1, 2, 3, 4)
    }
    assert kept == {1: [], 2: [5], 3: [5, 6], 4: [5, 6, 7]}


def test_clean_test_rejects_rows_outside_the_test_period() -> None:
    frame = _frame([("2018-08-07T12:00:00+00:00", 1, 0)])
    with pytest.raises(ValueError, match="outside the test period"):
        clean_test(frame, frame, REFERENCE)


def test_prequential_splits_shift_back() -> None:
    folds = prequential_splits(date(2018, 8, 15))
    assert [f.train_start for f in folds] == [
        date(2018, 8, 15),
        date(2018, 8, 8),
        date(2018, 8, 1),
        date(2018, 7, 25),
    ]
    assert folds[-1] == REFERENCE
    custom = prequential_splits(date(2018, 8, 1), folds=2, step_days=3, delay_days=5)
    assert custom == [
        Split(date(2018, 8, 1), delay_days=5),
        Split(date(2018, 7, 29), delay_days=5),
    ]
    with pytest.raises(ValueError):
        prequential_splits(date(2018, 8, 1), folds=0)


def test_clean_test_with_no_fraud_counted_keeps_every_test_row() -> None:
    # Frauds only before training (they do not count): nothing is known compromised. This
    # raised TypeError (mapping the cards onto an empty series of days).
    history = [("2018-07-20T12:00:00+00:00", 1, 1), ("2018-07-28T12:00:00+00:00", 2, 0)]
    tests = [("2018-08-09T10:00:00+00:00", c, 0) for c in (1, 2)]
    frame = _frame(history + tests)
    _, test = split(frame, REFERENCE)
    cleaned = clean_test(frame, test, REFERENCE)
    assert sorted(cleaned["CUSTOMER_ID"]) == [1, 2]
