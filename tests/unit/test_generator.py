"""Tests of the simulated card-transaction generator (``training.generator``).

Statistical checks compare a run with expectations *derived from the generator's
parameters* (see the ``_expected_*`` helpers), not with numbers copied from a past run;
the reference-size test then checks the published figures of the handbook's reference
run (docs/benchmark-dataset.md, section 1).
"""

from __future__ import annotations

import datetime
import functools
import math

import numpy as np
import pandas as pd
import pytest

from training.generator import (
    COLUMNS,
    FRAUD_AMOUNT_THRESHOLD,
    GeneratorConfig,
    _terminals_within_radius,
    generate,
)

SMALL = GeneratorConfig(customers=1000, terminals=2000, days=60, seed=0)
TINY = GeneratorConfig(customers=300, terminals=600, days=20, seed=7)
REFERENCE = GeneratorConfig()  # 5,000 customers, 10,000 terminals, 183 days from 2018-04-01

# Published figures of the reference run.
REF_TRANSACTIONS = 1_754_155
REF_FRAUD_RATE = 14_681 / 1_754_155  # 0.837 %
REF_FRAUDS_PER_DAY = 85.0  # after the first month ("fewer in the first month")
REF_CARDS_PER_DAY = 80.0


# --------------------------------------------------------------------------- expectations


def _norm_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _p_time_kept() -> float:
    """P(0 < int(X) < 86400) for X ~ N(43200, 20000), i.e. P(1 <= X < 86400)."""
    return _norm_cdf((86_400 - 43_200) / 20_000) - _norm_cdf((1 - 43_200) / 20_000)


@functools.cache
def _p_has_terminal(terminals: int, radius: float, side: float = 100.0) -> float:
    """P(a customer has >= 1 terminal within ``radius``), averaged over home locations.

    For a home at (x, y), the terminal count is Binomial(terminals, A(x, y) / side**2)
    where A is the area of the disc clipped to the square; A is integrated column by
    column (midpoint rule) on a grid of home locations.
    """
    grid, sub = 200, 200
    g = (np.arange(grid) + 0.5) * side / grid
    x, y = g[:, None], g[None, :]
    area = np.zeros((grid, grid))
    for u in (np.arange(sub) + 0.5) / sub * 2.0 - 1.0:
        half_chord = radius * math.sqrt(1.0 - u * u)
        column_inside = ((x + u * radius >= 0) & (x + u * radius <= side)).astype(float)
        chord = np.clip(np.minimum(y + half_chord, side) - np.maximum(y - half_chord, 0), 0, None)
        area += column_inside * chord * (2.0 * radius / sub)
    return float(1.0 - np.mean((1.0 - area / side**2) ** terminals))


@functools.cache
def _p_amount_over_threshold() -> float:
    """P(amount > 220): amount ~ N(m, m/2) with m ~ U[5, 100] (a negative draw's U(0, 2m)
    replacement never exceeds 200)."""
    m = 5.0 + (np.arange(4000) + 0.5) * 95.0 / 4000
    return float(np.mean([1.0 - _norm_cdf((FRAUD_AMOUNT_THRESHOLD - mi) / (mi / 2)) for mi in m]))


@functools.cache
def _expected_scenario3_picks(window_days: int, customers_drawn: int, q: float, h: float) -> float:
    """E[floor(N / 3)], N the pooled count of the drawn customers over ``window_days``.

    A customer's count is 0 without terminals (prob. 1 - h), else Poisson(lambda q L) with
    lambda ~ U[0, 4]; the drawn customers are treated as independent.
    """
    lam = (np.arange(400) + 0.5) * 4.0 / 400
    mu = lam * q * window_days
    k = np.arange(int(4 * q * window_days) * 3 + 80)
    log_fact = np.array([math.lgamma(i + 1.0) for i in k])
    pmf = np.exp(k[None, :] * np.log(mu[:, None]) - mu[:, None] - log_fact[None, :]).mean(axis=0)
    pmf = h * pmf
    pmf[0] += 1.0 - h
    pooled = pmf
    for _ in range(customers_drawn - 1):
        pooled = np.convolve(pooled, pmf)
    return float(np.sum(pooled * (np.arange(pooled.size) // 3)))


def _expected(config: GeneratorConfig) -> dict[str, float]:
    """Expected transaction count and final scenario shares of a run of ``config``.

    * transactions a day = customers x E[U(0, 4)] = 2 x P(time kept) x P(>= 1 terminal);
    * scenario 1 (before overwrites) = P(amount > 220) per transaction;
    * scenario 2: on day t, min(t + 1, 28) x 2 drawn terminals are active; terminals are
      exchangeable and drawn independently of the data, so the expected share of day t's
      transactions on them is 1 - (1 - 1/T)**(2 min(t + 1, 28));
    * scenario 3: sum over draw days d of E[floor(N_d / 3)], N_d the pooled count over the
      window min(14, days - d) (picks of a transaction twice, when a customer is drawn
      twice within 14 days, are ignored: < 1 % of picks);
    * overwrites: 3 overwrites 1 and 2, 2 overwrites 1 (independence assumed).
    """
    q = _p_time_kept()
    h = _p_has_terminal(config.terminals, config.radius)
    per_day = config.customers * 2.0 * q * h
    n = per_day * config.days
    days = np.arange(config.days)
    active = config.compromised_terminals_per_day * np.minimum(
        days + 1, config.terminal_compromise_days
    )
    s2 = float(np.sum(1.0 - (1.0 - 1.0 / config.terminals) ** active)) * per_day / n
    picks = sum(
        _expected_scenario3_picks(
            min(config.customer_compromise_days, config.days - d),
            config.compromised_customers_per_day,
            q,
            h,
        )
        for d in range(config.days)
    )
    s3 = picks / n
    p1 = _p_amount_over_threshold()
    shares = {1: p1 * (1 - s2) * (1 - s3), 2: s2 * (1 - s3), 3: s3}
    lam_var = 16.0 / 3.0  # E[lambda^2] for lambda ~ U[0, 4]
    qd = q * config.days
    # Per customer over the run: 0 w.p. 1 - h, else Poisson(lambda q days), lambda ~ U[0, 4].
    var_customer = h * (2.0 * qd + lam_var * qd**2) - (h * 2.0 * qd) ** 2
    return {
        "n": n,
        "n_sd": math.sqrt(config.customers * var_customer),
        "h": h,
        "s1": shares[1],
        "s2": shares[2],
        "s3": shares[3],
        "rate": shares[1] + shares[2] + shares[3],
    }


def _day_index(df: pd.DataFrame, start: datetime.date) -> np.ndarray:
    origin = pd.Timestamp(start, tz="UTC")
    return np.asarray((df["TX_DATETIME"] - origin) // pd.Timedelta(days=1), dtype=np.int64)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate(SMALL)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate(REFERENCE)


# --------------------------------------------------------------------------- determinism, schema


def test_same_seed_gives_identical_frame() -> None:
    pd.testing.assert_frame_equal(generate(TINY), generate(TINY))


def test_different_seed_gives_different_frame() -> None:
    a = generate(TINY)
    b = generate(GeneratorConfig(customers=300, terminals=600, days=20, seed=8))
    assert not a.equals(b)


def test_columns_and_dtypes(small: pd.DataFrame) -> None:
    assert list(small.columns) == list(COLUMNS)
    assert isinstance(small.index, pd.RangeIndex)
    assert small["TRANSACTION_ID"].dtype == np.int64
    assert small["TX_DATETIME"].dtype == pd.DatetimeTZDtype(unit="s", tz="UTC")
    assert small["CUSTOMER_ID"].dtype == np.int64
    assert small["TERMINAL_ID"].dtype == np.int64
    assert small["TX_AMOUNT"].dtype == np.float64
    assert small["TX_FRAUD"].dtype == np.int8
    assert small["TX_FRAUD_SCENARIO"].dtype == np.int8
    assert small["CUSTOMER_ID"].between(0, SMALL.customers - 1).all()
    assert small["TERMINAL_ID"].between(0, SMALL.terminals - 1).all()


def test_config_validation() -> None:
    for bad in (
        {"customers": 0},
        {"terminals": 0},
        {"days": 0},
        {"radius": 0.0},
        {"compromised_terminals_per_day": 3, "terminals": 2},
        {"compromised_customers_per_day": -1},
        {"customer_compromise_days": -1},
    ):
        with pytest.raises(ValueError):
            GeneratorConfig(**bad)


# --------------------------------------------------------------------------- row-level rules


def test_amounts_non_negative_and_in_cents(small: pd.DataFrame) -> None:
    amount = small["TX_AMOUNT"].to_numpy()
    assert (amount >= 0).all()
    cents = amount * 100
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)


def test_times_within_the_simulated_days() -> None:
    config = GeneratorConfig(
        customers=200, terminals=400, days=10, seed=3, start=datetime.date(2021, 2, 27)
    )
    df = generate(config)
    origin = pd.Timestamp(config.start, tz="UTC")
    # Times of day are in (0, 86400): never exactly midnight.
    assert df["TX_DATETIME"].min() > origin
    assert df["TX_DATETIME"].max() < origin + pd.Timedelta(days=config.days)
    seconds = (df["TX_DATETIME"] - origin).dt.total_seconds().to_numpy()
    assert (seconds % 86_400 != 0).all()
    assert set(np.unique(_day_index(df, config.start))) == set(range(config.days))


def test_ids_follow_time_order_with_customer_tie_break(small: pd.DataFrame) -> None:
    np.testing.assert_array_equal(small["TRANSACTION_ID"].to_numpy(), np.arange(len(small)))
    secs = small["TX_DATETIME"].astype("int64").to_numpy()
    cust = small["CUSTOMER_ID"].to_numpy()
    assert (np.diff(secs) >= 0).all()
    same_second = np.diff(secs) == 0
    assert same_second.any()  # the tie rule is actually exercised
    assert (np.diff(cust)[same_second] >= 0).all()


def test_fraud_flag_and_scenario_are_consistent(small: pd.DataFrame) -> None:
    fraud = small["TX_FRAUD"].to_numpy()
    scenario = small["TX_FRAUD_SCENARIO"].to_numpy()
    assert set(np.unique(fraud)) == {0, 1}
    assert set(np.unique(scenario)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(fraud == 1, scenario > 0)


def test_scenario1_iff_original_amount_over_220(small: pd.DataFrame) -> None:
    amount = small["TX_AMOUNT"].to_numpy()
    fraud = small["TX_FRAUD"].to_numpy()
    scenario = small["TX_FRAUD_SCENARIO"].to_numpy()
    # Every scenario-1 fraud has an amount over 220 ...
    assert (amount[scenario == 1] > FRAUD_AMOUNT_THRESHOLD).all()
    # ... and every amount over 220 is fraud, where the amount is the original one (only
    # scenario 3 changes amounts). Genuine transactions are therefore all <= 220.
    over = (amount > FRAUD_AMOUNT_THRESHOLD) & (scenario != 3)
    assert over.any()
    assert (fraud[over] == 1).all()
    assert (amount[scenario == 0] <= FRAUD_AMOUNT_THRESHOLD).all()


def test_scenario2_marks_every_transaction_of_the_terminal_that_day(small: pd.DataFrame) -> None:
    day = _day_index(small, SMALL.start)
    key = small["TERMINAL_ID"].to_numpy() * SMALL.days + day
    scenario = small["TX_FRAUD_SCENARIO"].to_numpy()
    compromised_keys = np.unique(key[scenario == 2])
    on_compromised = np.isin(key, compromised_keys)
    # Only scenario 3 may overwrite a compromised terminal's transaction.
    assert set(np.unique(scenario[on_compromised])) <= {2, 3}
    assert (small["TX_FRAUD"].to_numpy()[on_compromised] == 1).all()


def test_scenario3_multiplies_amounts_by_five(small: pd.DataFrame) -> None:
    s3 = small[small["TX_FRAUD_SCENARIO"] == 3]
    # 5 x an amount in cents is a multiple of 5 cents.
    cents = np.round(s3["TX_AMOUNT"].to_numpy() * 100).astype(np.int64)
    assert (cents % 5 == 0).all()
    # Relative to the customer's genuine amounts, the typical factor is 5.
    genuine_median = small[small["TX_FRAUD_SCENARIO"] == 0].groupby("CUSTOMER_ID")["TX_AMOUNT"]
    ratio = (
        s3["TX_AMOUNT"].to_numpy() / genuine_median.median().reindex(s3["CUSTOMER_ID"]).to_numpy()
    )
    assert 4.0 < np.nanmedian(ratio) < 6.0


def test_terminals_within_radius_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    customers = rng.uniform(0, 100, size=(700, 2))
    terminals = rng.uniform(0, 100, size=(1500, 2))
    indptr, indices = _terminals_within_radius(customers, terminals, 5.0)
    d2 = ((customers[:, None, :] - terminals[None, :, :]) ** 2).sum(axis=2)
    for c in range(len(customers)):
        expected = np.flatnonzero(d2[c] < 25.0)
        np.testing.assert_array_equal(indices[indptr[c] : indptr[c + 1]], expected)


def test_customers_without_terminals_make_no_transactions() -> None:
    # With 100 terminals about half the customers have none within radius 5, so the
    # count follows the derived P(>= 1 terminal) rather than 1.
    config = GeneratorConfig(customers=1000, terminals=100, days=30, seed=2)
    exp = _expected(config)
    assert 0.45 < exp["h"] < 0.6
    df = generate(config)
    # Across 40 seeds the observed/expected ratio had sd 4.3 % (the terminal layout adds
    # variance beyond the analytic n_sd); the band is about 4 sd.
    assert abs(len(df) / exp["n"] - 1) < 0.17
    rng = np.random.default_rng(0)
    customer_xy = rng.uniform(0, 100, size=(4000, 2))
    terminal_xy = rng.uniform(0, 100, size=(100, 2))
    indptr, _ = _terminals_within_radius(customer_xy, terminal_xy, 5.0)
    assert abs(np.mean(np.diff(indptr) > 0) - exp["h"]) < 0.08


# --------------------------------------------------------------------------- statistics


def test_small_run_transaction_count(small: pd.DataFrame) -> None:
    exp = _expected(SMALL)
    # 1,000 x 2 x 0.969 x 60 ~ 116,300; the sd (~1.85 %) comes mostly from the customers'
    # U[0, 4] means. Allow 4 sd.
    assert abs(len(small) - exp["n"]) < 4 * exp["n_sd"]


def test_small_run_fraud_rate_and_scenario_shares(small: pd.DataFrame) -> None:
    exp = _expected(SMALL)
    scenario = small["TX_FRAUD_SCENARIO"].to_numpy()
    # The reference rate (0.837 %) is ~0.06 % scenario 1 + ~0.52 % scenario 2 + ~0.27 %
    # scenario 3. Scenario 1 does not depend on the sizes. Scenario 2's share is the share
    # of terminals compromised, 2 a day x 28 days / T: 0.56 % of 10,000 terminals but
    # 2.8 % of 2,000 (5 x), less during the 27-day ramp-up, which weighs more in 60 days
    # than in 183. Scenario 3's is ~ 3 a day x 14 days / C x 1/3: 0.28 % of 5,000
    # customers, 1.4 % of 1,000, less for the 13-day ramp-up and the rounding down. So
    # this run expects ~3.4 %, four times the reference rate; _expected derives it exactly
    # from the parameters (and reproduces 0.84 % at the reference size, see below).
    assert 0.030 < exp["rate"] < 0.038
    # Bands: relative sd of observed/expected measured over 60 seeds was 3.8 % (rate),
    # 17 % (scenario 1: ~65 frauds, driven by the few customers with a mean near 100),
    # 5.3 % (scenario 2: ~120 terminal draws of uneven traffic), 5.2 % (scenario 3: ~180
    # customer draws); the bands are about 4 sd.
    assert abs((scenario > 0).mean() / exp["rate"] - 1) < 0.15
    assert abs((scenario == 1).mean() / exp["s1"] - 1) < 0.65
    assert abs((scenario == 2).mean() / exp["s2"] - 1) < 0.21
    assert abs((scenario == 3).mean() / exp["s3"] - 1) < 0.21


def test_derived_expectation_matches_reference_figures() -> None:
    exp = _expected(REFERENCE)
    # The derivation alone reproduces the published run: 1.774 M expected against
    # 1,754,155 (the published run is one draw, 1.4 of our sd below), 0.840 % vs 0.837 %.
    assert abs(exp["n"] / REF_TRANSACTIONS - 1) < 0.02
    assert abs(exp["n"] - REF_TRANSACTIONS) < 3 * exp["n_sd"]
    assert abs(exp["rate"] - REF_FRAUD_RATE) < 0.0005


def test_reference_run_matches_published_figures(reference: pd.DataFrame) -> None:
    n = len(reference)
    assert abs(n / REF_TRANSACTIONS - 1) < 0.03
    fraud = reference["TX_FRAUD"].to_numpy() == 1
    assert abs(fraud.mean() - REF_FRAUD_RATE) < 0.0015

    day = _day_index(reference, REFERENCE.start)
    frauds_per_day = np.bincount(day[fraud], minlength=REFERENCE.days)
    cards = reference.loc[fraud].groupby(day[fraud])["CUSTOMER_ID"].nunique()
    cards_per_day = cards.reindex(range(REFERENCE.days), fill_value=0).to_numpy()
    # "About 85 frauds and 80 compromised cards a day, fewer in the first month."
    assert abs(frauds_per_day[30:].mean() - REF_FRAUDS_PER_DAY) < 0.1 * REF_FRAUDS_PER_DAY
    assert abs(cards_per_day[30:].mean() - REF_CARDS_PER_DAY) < 0.1 * REF_CARDS_PER_DAY
    assert frauds_per_day[:30].mean() < 0.8 * frauds_per_day[30:].mean()
    assert cards_per_day[:30].mean() < 0.8 * cards_per_day[30:].mean()

    exp = _expected(REFERENCE)
    scenario = reference["TX_FRAUD_SCENARIO"].to_numpy()
    assert abs((scenario == 1).mean() / exp["s1"] - 1) < 0.35
    assert abs((scenario == 2).mean() / exp["s2"] - 1) < 0.15
    assert abs((scenario == 3).mean() / exp["s3"] - 1) < 0.15
