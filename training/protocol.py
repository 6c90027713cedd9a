"""The benchmark's evaluation protocol: time splits, test cleaning, prequential folds.

This restates the protocol of the reference benchmark (see
``docs/benchmark-dataset.md``, section 3) in the project's own code:

* a split is ``train_days`` days of training, then a gap of ``delay_days`` days whose
  labels are not yet known, then ``test_days`` days of test;
* a *day* is the UTC calendar date of ``TX_DATETIME``;
* the test set is cleaned of cards already known to be compromised (:func:`clean_test`);
* model selection uses prequential folds, each shifted back in time
  (:func:`prequential_splits`).

Frames are pandas DataFrames with at least the columns ``TX_DATETIME`` (datetime64,
tz-aware UTC; naive values are taken to be UTC), ``CUSTOMER_ID`` (the card) and
``TX_FRAUD`` (0/1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

__all__ = [
    "CARD_COLUMN",
    "DATETIME_COLUMN",
    "LABEL_COLUMN",
    "Split",
    "clean_test",
    "prequential_splits",
    "split",
    "utc_days",
]

logger = logging.getLogger(__name__)

DATETIME_COLUMN = "TX_DATETIME"
CARD_COLUMN = "CUSTOMER_ID"
LABEL_COLUMN = "TX_FRAUD"


@dataclass(frozen=True)
class Split:
    """One train / gap / test split, in whole UTC calendar days.

    All ranges are half-open ``[start, end)``:

    * train: ``[train_start, train_start + train_days)``;
    * gap (labels not yet known): the next ``delay_days`` days;
    * test: ``[test_start, test_start + test_days)`` with
      ``test_start = train_start + train_days + delay_days``.

    The reference split is ``Split(date(2018, 7, 25))``: train 2018-07-25 to 2018-07-31,
    test 2018-08-08 to 2018-08-14.
    """

    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    def __post_init__(self) -> None:
        if isinstance(self.train_start, datetime) or not isinstance(self.train_start, date):
            raise TypeError(
                f"train_start must be a datetime.date (not a datetime), got {self.train_start!r}"
            )
        if self.train_days < 1:
            raise ValueError(f"train_days must be >= 1, got {self.train_days}")
        if self.delay_days < 0:
            raise ValueError(f"delay_days must be >= 0, got {self.delay_days}")
        if self.test_days < 1:
            raise ValueError(f"test_days must be >= 1, got {self.test_days}")

    @property
    def train_end(self) -> date:
        """First day after the training period (exclusive end)."""
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        """First test day: ``train_start + train_days + delay_days``."""
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        """First day after the test period (exclusive end)."""
        return self.test_start + timedelta(days=self.test_days)

    @property
    def train_range(self) -> tuple[date, date]:
        """Training days as a half-open range ``(train_start, train_end)``."""
        return (self.train_start, self.train_end)

    @property
    def test_range(self) -> tuple[date, date]:
        """Test days as a half-open range ``(test_start, test_end)``."""
        return (self.test_start, self.test_end)

    @property
    def train_dates(self) -> tuple[date, ...]:
        """Every training day, in order."""
        return tuple(self.train_start + timedelta(days=i) for i in range(self.train_days))

    @property
    def test_dates(self) -> tuple[date, ...]:
        """Every test day, in order."""
        return tuple(self.test_start + timedelta(days=i) for i in range(self.test_days))

    def known_fraud_cutoff(self, test_day: date) -> date:
        """Last day (inclusive) whose fraud labels are known on ``test_day``.

        That is ``test_day - delay_days - 1``: with the 7-day delay, labels up to and
        including day T − 8 are known on test day T.
        """
        return test_day - timedelta(days=self.delay_days + 1)

    def __str__(self) -> str:
        last_train = self.train_end - timedelta(days=1)
        last_test = self.test_end - timedelta(days=1)
        return (
            f"train {self.train_start}..{last_train}, "
            f"gap {self.delay_days}d, test {self.test_start}..{last_test}"
        )


def _utc(values: pd.Series) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(values):
        raise TypeError(f"{DATETIME_COLUMN} must be a datetime64 column, got {values.dtype}")
    if values.dt.tz is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def _day_start(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.year, day.month, day.day, tz="UTC")


def utc_days(frame: pd.DataFrame) -> pd.Series:
    """The UTC calendar day of each row, as midnight UTC timestamps (same index as frame)."""
    return _utc(frame[DATETIME_COLUMN]).dt.floor("D")


def _between(frame: pd.DataFrame, start: date, end: date) -> pd.Series:
    times = _utc(frame[DATETIME_COLUMN])
    return (times >= _day_start(start)) & (times < _day_start(end))


def split(frame: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut ``frame`` into the training and (uncleaned) test rows of ``split``.

    Train rows are those whose UTC day is in ``[train_start, train_end)``, test rows those
    in ``[test_start, test_end)``; gap rows and everything outside are in neither. The
    original index and column order are kept. Apply :func:`clean_test` to the test part.
    """
    train = frame.loc[_between(frame, split.train_start, split.train_end)]
    test = frame.loc[_between(frame, split.test_start, split.test_end)]
    logger.debug("split %s: %d train rows, %d test rows", split, len(train), len(test))
    return train, test


def clean_test(frame: pd.DataFrame, test: pd.DataFrame, split: Split) -> pd.DataFrame:
    """Drop test transactions of cards already known to be compromised.

    For a test transaction on UTC day T, its card is *known compromised* when ``frame``
    holds a fraud (``TX_FRAUD == 1``) of that card on a day D with

        ``split.train_start <= D <= T - delay_days - 1``  (both ends inclusive),

    i.e. the training period plus the part of the gap whose labels are known by T (with the
    default 7-day delay: from the training start up to and including T − 8). Frauds before
    ``train_start`` do not count. On the first test day (``T = test_start``) this is
    exactly the training period's frauds; each later test day adds one more day of labels.

    ``frame`` must hold the labelled history covering at least
    ``[train_start, test_end - delay_days - 1)`` (normally the full data set); ``test`` is the
    test part from :func:`split`. Every ``test`` row must lie in the test period, otherwise
    ``ValueError``. Returns the kept rows of ``test`` (original index and columns).
    """
    if test.empty:
        return test
    test_days = utc_days(test)
    outside = (test_days < _day_start(split.test_start)) | (test_days >= _day_start(split.test_end))
    if bool(outside.any()):
        raise ValueError(
            f"{int(outside.sum())} test rows lie outside the test period {split.test_range}"
        )

    last_needed = split.known_fraud_cutoff(split.test_end - timedelta(days=1))
    if not frame.empty and last_needed >= split.train_start:
        newest = _utc(frame[DATETIME_COLUMN]).max()
        if newest < _day_start(last_needed):
            logger.warning(
                "history ends at %s, before %s: cleaning of later test days is incomplete",
                newest,
                last_needed,
            )

    frame_days = utc_days(frame)
    counted = (frame[LABEL_COLUMN] == 1) & (frame_days >= _day_start(split.train_start))
    # Earliest counted fraud day per card: a card is known compromised on day T exactly when
    # this day is <= T - delay - 1.
    first_fraud = frame_days[counted].groupby(frame.loc[counted, CARD_COLUMN]).min()
    if first_fraud.empty:  # no fraud counted: no card known compromised (map would fail)
        known = pd.Series(False, index=test.index)
    else:
        card_first = test[CARD_COLUMN].map(first_fraud)
        cutoff = test_days - pd.Timedelta(days=split.delay_days + 1)
        known = card_first.notna() & (card_first <= cutoff)
    kept = test.loc[~known.to_numpy()]
    logger.debug(
        "clean_test %s: dropped %d of %d test rows (%d cards known compromised)",
        split,
        len(test) - len(kept),
        len(test),
        int(test.loc[known.to_numpy(), CARD_COLUMN].nunique()),
    )
    return kept


def prequential_splits(
    train_start: date,
    *,
    folds: int = 4,
    step_days: int = 7,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
) -> list[Split]:
    """Prequential folds: fold ``i`` (``i = 0 .. folds - 1``) is the split whose training
    starts at ``train_start - i * step_days`` days, with the given period lengths.

    Fold 0 is the most recent; each following fold is shifted ``step_days`` further back.
    For model selection, pass the start of a *validation* split that ends before the real
    test period (the caller decides how far back). The benchmark's four test folds of the
    prequential protocol (training from 2018-07-25, -08-01, -08-08, -08-15) are
    ``prequential_splits(date(2018, 8, 15))``, newest first.
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if step_days < 1:
        raise ValueError(f"step_days must be >= 1, got {step_days}")
    return [
        Split(
            train_start - timedelta(days=i * step_days),
            train_days=train_days,
            delay_days=delay_days,
            test_days=test_days,
        )
        for i in range(folds)
    ]
