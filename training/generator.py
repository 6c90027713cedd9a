"""Simulated card-transaction generator (the project's reference benchmark data).

This module reimplements, in our own vectorised numpy code, the generation rules of the
simulated data set described in *Reproducible Machine Learning for Credit Card Fraud
Detection -- Practical Handbook* (Le Borgne, Siblini, Lebichot, Bontempi; ULB and
Worldline). Only the rules and parameter values are taken from the handbook (as restated in
``docs/benchmark-dataset.md``, section 1); none of its code is used.

Rules
-----
* Customers: home ``x, y ~ U[0, 100]``; mean amount ``~ U[5, 100]`` with standard
  deviation ``mean / 2``; mean number of transactions a day ``~ U[0, 4]``.
* Terminals: ``x, y ~ U[0, 100]``. A customer may use every terminal whose Euclidean
  distance from home is strictly below ``radius``; a customer with none makes no
  transactions.
* Per customer and day: ``Poisson(mean a day)`` transactions; time of day in seconds
  ``int(Normal(43200, 20000))`` (truncated toward zero), dropped unless ``0 < t < 86400``;
  amount ``Normal(mean, std)``, a negative draw replaced by ``U(0, 2 * mean)``, rounded to
  cents; terminal uniform among the customer's terminals.
* Fraud, applied in this order (a later scenario overwrites ``TX_FRAUD_SCENARIO`` of a
  transaction an earlier one already marked; ``TX_FRAUD`` stays 1):

  1. every transaction whose (original) amount is over 220 is fraud;
  2. each day ``d``, ``compromised_terminals_per_day`` distinct terminals are drawn; all
     their transactions in days ``[d, d + terminal_compromise_days)`` are fraud;
  3. each day ``d``, ``compromised_customers_per_day`` distinct customers are drawn; of
     the pooled transactions of those customers in days ``[d, d + customer_compromise_days)``
     a third (rounded down), drawn at random without replacement, are fraud and get their
     amount multiplied by 5 (re-rounded to cents). Draws are applied day by day, so a
     transaction picked by two overlapping draws is multiplied twice (by 25), as the
     literal rule implies. Scenario 1 is judged on the amounts before any multiplication.

  Day indices are relative to ``start``: the day of a transaction is
  ``floor((t - start) / 1 day)``; windows may run past the last generated day.

Everything is drawn from a single ``numpy.random.default_rng(config.seed)`` stream in a
fixed order, so the same configuration always yields the identical frame.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["COLUMNS", "FRAUD_AMOUNT_THRESHOLD", "GeneratorConfig", "generate"]

#: Output columns, in order.
COLUMNS: tuple[str, ...] = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)

#: Scenario 1: a transaction whose original amount exceeds this is fraud.
FRAUD_AMOUNT_THRESHOLD: float = 220.0

_SECONDS_PER_DAY = 86_400
_TIME_MEAN = 43_200.0
_TIME_STD = 20_000.0
_AREA_SIDE = 100.0
_SCENARIO3_FACTOR = 5.0

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GeneratorConfig:
    """Parameters of a simulated run; the defaults are the reference run of the handbook.

    Attributes:
        customers: Number of customers.
        terminals: Number of terminals.
        days: Number of simulated days.
        start: First simulated day (midnight UTC).
        seed: Seed of the ``numpy.random.default_rng`` stream.
        radius: A customer uses the terminals strictly closer than this to home.
        compromised_terminals_per_day: Scenario 2: terminals compromised each day.
        terminal_compromise_days: Scenario 2: length of a terminal's compromise window.
        compromised_customers_per_day: Scenario 3: customers compromised each day.
        customer_compromise_days: Scenario 3: length of a customer's compromise window.
    """

    customers: int = 5000
    terminals: int = 10000
    days: int = 183
    start: datetime.date = datetime.date(2018, 4, 1)
    seed: int = 0
    radius: float = 5.0
    compromised_terminals_per_day: int = 2
    terminal_compromise_days: int = 28
    compromised_customers_per_day: int = 3
    customer_compromise_days: int = 14

    def __post_init__(self) -> None:
        if self.customers < 1 or self.terminals < 1 or self.days < 1:
            raise ValueError("customers, terminals and days must be at least 1")
        if not self.radius > 0:
            raise ValueError("radius must be positive")
        if not 0 <= self.compromised_terminals_per_day <= self.terminals:
            raise ValueError("compromised_terminals_per_day must be in [0, terminals]")
        if not 0 <= self.compromised_customers_per_day <= self.customers:
            raise ValueError("compromised_customers_per_day must be in [0, customers]")
        if self.terminal_compromise_days < 0 or self.customer_compromise_days < 0:
            raise ValueError("compromise windows must not be negative")


def _terminals_within_radius(
    customer_xy: FloatArray, terminal_xy: FloatArray, radius: float
) -> tuple[IntArray, IntArray]:
    """Terminals strictly within ``radius`` of each customer, as a CSR-like structure.

    Customers are processed in chunks sorted by x; each chunk is compared (dense squared
    distances) only with the terminals whose x lies within ``radius`` of the chunk's x
    range, found by binary search on the x-sorted terminals.

    Returns:
        ``(indptr, indices)``: the terminals of customer ``c`` are
        ``indices[indptr[c]:indptr[c + 1]]``, in increasing terminal id.
    """
    n_customers = customer_xy.shape[0]
    t_order = np.argsort(terminal_xy[:, 0], kind="stable")
    t_x_sorted = terminal_xy[t_order, 0]
    c_order = np.argsort(customer_xy[:, 0], kind="stable")
    r2 = radius * radius
    chunk = 256
    cust_parts: list[IntArray] = []
    term_parts: list[IntArray] = []
    for begin in range(0, n_customers, chunk):
        cs = c_order[begin : begin + chunk]
        cx = customer_xy[cs, 0]
        lo = int(np.searchsorted(t_x_sorted, cx[0] - radius, side="left"))
        hi = int(np.searchsorted(t_x_sorted, cx[-1] + radius, side="right"))
        ts = t_order[lo:hi]
        d2 = (cx[:, None] - terminal_xy[ts, 0][None, :]) ** 2
        d2 += (customer_xy[cs, 1][:, None] - terminal_xy[ts, 1][None, :]) ** 2
        rows, cols = np.nonzero(d2 < r2)
        cust_parts.append(cs[rows].astype(np.int64))
        term_parts.append(ts[cols].astype(np.int64))
    cust = np.concatenate(cust_parts) if cust_parts else np.empty(0, np.int64)
    term = np.concatenate(term_parts) if term_parts else np.empty(0, np.int64)
    order = np.lexsort((term, cust))
    indices = term[order]
    indptr = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(cust, minlength=n_customers), out=indptr[1:])
    return indptr, indices


def generate(config: GeneratorConfig) -> pd.DataFrame:
    """Generate the simulated transactions of ``config``.

    Args:
        config: Run parameters (sizes, period, seed, fraud scenarios).

    Returns:
        One row per transaction sorted by time (ties by customer id, then generation
        order), with the columns of :data:`COLUMNS`: ``TRANSACTION_ID`` (int64,
        ``0..n-1`` in time order), ``TX_DATETIME`` (``datetime64[s, UTC]``),
        ``CUSTOMER_ID`` and ``TERMINAL_ID`` (int64), ``TX_AMOUNT`` (float64, cents),
        ``TX_FRAUD`` (int8, 0/1) and ``TX_FRAUD_SCENARIO`` (int8, 0 = genuine, else the
        last scenario, 1-3, that marked the transaction).
    """
    rng = np.random.default_rng(config.seed)
    n_c, n_t, n_d = config.customers, config.terminals, config.days

    # Profiles.
    customer_xy = rng.uniform(0.0, _AREA_SIDE, size=(n_c, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=n_c)
    std_amount = mean_amount / 2.0
    mean_per_day = rng.uniform(0.0, 4.0, size=n_c)
    terminal_xy = rng.uniform(0.0, _AREA_SIDE, size=(n_t, 2))
    indptr, indices = _terminals_within_radius(customer_xy, terminal_xy, config.radius)
    n_available = np.diff(indptr)

    # Candidate transactions: Poisson counts per (customer, day), row-major.
    counts = rng.poisson(mean_per_day[:, None], size=(n_c, n_d))
    counts[n_available == 0] = 0
    cell = np.repeat(np.arange(n_c * n_d, dtype=np.int64), counts.ravel())
    cust = cell // n_d
    day = cell % n_d

    # Time of day, truncated toward zero; draws outside (0, 86400) are dropped.
    tod = rng.normal(_TIME_MEAN, _TIME_STD, size=cell.size).astype(np.int64)
    keep = (tod > 0) & (tod < _SECONDS_PER_DAY)
    cust, day, tod = cust[keep], day[keep], tod[keep]
    n = cust.size

    # Amounts; a negative normal draw is replaced by U(0, 2 * mean).
    amount = rng.normal(mean_amount[cust], std_amount[cust])
    negative = np.flatnonzero(amount < 0)
    amount[negative] = rng.uniform(0.0, 2.0 * mean_amount[cust[negative]])
    amount = np.round(amount, 2)

    # Terminal uniform among the customer's terminals (all have at least one here).
    pick = rng.integers(0, n_available[cust])
    term = indices[indptr[cust] + pick]

    # Time order; ties by customer id, then (stable) generation order.
    secs = day * _SECONDS_PER_DAY + tod
    order = np.lexsort((cust, secs))
    cust, day, secs = cust[order], day[order], secs[order]
    amount, term = amount[order], term[order]

    # Scenario 1, on the original amounts.
    fraud = (amount > FRAUD_AMOUNT_THRESHOLD).astype(np.int8)
    scenario = fraud.copy()

    # Scenario 2: compromised terminals; a (terminal, day) table marks the windows.
    if config.compromised_terminals_per_day > 0 and config.terminal_compromise_days > 0:
        compromised = np.zeros((n_t, n_d), dtype=bool)
        for d in range(n_d):
            drawn = rng.choice(n_t, size=config.compromised_terminals_per_day, replace=False)
            compromised[drawn, d : d + config.terminal_compromise_days] = True
        hit = compromised[term, day]
        fraud[hit] = 1
        scenario[hit] = 2

    # Scenario 3: compromised customers; per-customer positions in time order.
    if config.compromised_customers_per_day > 0 and config.customer_compromise_days > 0:
        by_customer = np.argsort(cust, kind="stable")
        day_by_customer = day[by_customer]
        cptr = np.zeros(n_c + 1, dtype=np.int64)
        np.cumsum(np.bincount(cust, minlength=n_c), out=cptr[1:])
        window = config.customer_compromise_days
        for d in range(n_d):
            drawn = rng.choice(n_c, size=config.compromised_customers_per_day, replace=False)
            parts = []
            for c in drawn:
                lo, hi = int(cptr[c]), int(cptr[c + 1])
                days_c = day_by_customer[lo:hi]
                a = lo + int(np.searchsorted(days_c, d, side="left"))
                b = lo + int(np.searchsorted(days_c, d + window, side="left"))
                parts.append(by_customer[a:b])
            pool = np.sort(np.concatenate(parts))
            chosen = rng.choice(pool, size=pool.size // 3, replace=False)
            amount[chosen] = np.round(amount[chosen] * _SCENARIO3_FACTOR, 2)
            fraud[chosen] = 1
            scenario[chosen] = 3

    start = np.datetime64(config.start, "s")
    tx_datetime = pd.DatetimeIndex(start + secs.astype("timedelta64[s]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n, dtype=np.int64),
            "TX_DATETIME": tx_datetime,
            "CUSTOMER_ID": cust.astype(np.int64),
            "TERMINAL_ID": term.astype(np.int64),
            "TX_AMOUNT": amount.astype(np.float64),
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": scenario,
        },
        columns=list(COLUMNS),
    )
