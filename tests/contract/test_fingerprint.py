"""Golden test: the feature values on a fixed event stream belong to the feature fingerprint.

A model is tied to the features it was trained on by ``fingerprint()``, which hashes the
feature *names and parameters*. A change to what a feature *computes* that keeps its name
would slip past it, and the service would feed an old model features it never saw. This
test replays a fixed, hand-built stream (about 200 transactions over 60 days on a few
cards and terminals, with fraud labels) through ``InMemoryStore`` + ``compute``, hashes the
feature matrix rounded to 6 decimals, and checks the pair ``{fingerprint: hash}`` against
the one recorded below.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

from fraudcore import FEATURE_NAMES, InMemoryStore, LabelEvent, Transaction, compute, fingerprint

# fingerprint() -> sha256 of the rounded feature matrix of golden_stream().
RECORDED = {"2a3667c90d4b5064": "d1b8768eb99fa2585aeb3812aab757f93d1d0a85a2200263e17195ef9528ea6c"}

T0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)  # a Friday
N_BASE = 165
SPAN = timedelta(days=60)
CARDS = ("card-a", "card-b", "card-c", "card-d")
TERMINALS = ("term-1", "term-2", "term-3")
PARIS_SUMMER = timezone(timedelta(hours=2))
# Frauds (i % 9 == 4) echoed on the same card and terminal exactly at each window edge.
ECHOED = (4, 40, 76, 112, 121)
EDGES = (
    timedelta(hours=1),  # tx_count_by_card_1h
    timedelta(days=1),  # card 1d window; terminal 1d window is (t - 8d, t - 7d]
    timedelta(days=7),  # terminal windows' right edge t - 7d; the label is known at exactly t
    timedelta(days=8),
    timedelta(days=14),
    timedelta(days=30),  # card 30d windows
    timedelta(days=37),  # terminal 30d window's left edge t - 37d
)


def _amount(i: int, card: str) -> float:
    if card == "card-c":  # small amounts: a median under 1
        return round(((i * 13) % 90) / 100, 2) if i % 5 else 120.0
    if card == "card-d":  # steady amounts: a standard deviation under 1
        return 20.0 + i % 3
    return round(5 + (i * 37) % 113 + ((i * i) % 17) / 4 + (250 if i % 23 == 0 else 0), 2)


def golden_stream() -> tuple[list[Transaction], list[LabelEvent]]:
    """Transactions and their fraud labels; only integer arithmetic, no RNG."""
    step = SPAN / N_BASE
    transactions: list[Transaction] = []
    for i in range(N_BASE):
        at = T0 + i * step + timedelta(seconds=(i * 7_919) % 5_000)
        if i % 10 == 3:  # a burst: right after the previous transaction
            at = transactions[-1].timestamp + timedelta(minutes=5 + i % 7)
        zone = PARIS_SUMMER if i % 3 == 0 else UTC  # weekend and night read in the event's offset
        card = CARDS[(i * 3 + i // 7) % len(CARDS)]
        transactions.append(
            Transaction(
                transaction_id=f"tx-{i:03d}",
                card_id=card,
                terminal_id=TERMINALS[(i * 5 + i // 11) % len(TERMINALS)],
                amount=_amount(i, card),
                timestamp=at.astimezone(zone),
            )
        )
    echoes = [
        Transaction(
            f"tx-{i:03d}-edge{k}",
            transactions[i].card_id,
            transactions[i].terminal_id,
            _amount(i + k, transactions[i].card_id),
            transactions[i].timestamp + edge,
        )
        for i in ECHOED
        for k, edge in enumerate(EDGES)
    ]
    labels = []
    for i, tx in enumerate(transactions):
        day = (tx.timestamp - T0).days
        compromised = tx.terminal_id == "term-2" and 20 <= day < 34
        if i % 9 == 4 or (compromised and i % 2 == 0):
            early = i % 4 == 0 and i not in ECHOED
            delay = timedelta(days=2, hours=i % 24) if early else timedelta(days=7)
            labels.append(
                LabelEvent(
                    tx.transaction_id,
                    tx.card_id,
                    tx.terminal_id,
                    tx.amount,
                    tx.timestamp,
                    tx.timestamp + delay,
                )
            )
    return transactions + echoes, labels


def feature_matrix() -> list[list[float]]:
    """Replay in time order; a label known at the same instant as a transaction comes first."""
    transactions, labels = golden_stream()
    pending = sorted(labels, key=lambda label: (label.known_epoch, label.transaction_id))
    store = InMemoryStore()
    rows, next_label = [], 0
    for tx in sorted(transactions, key=lambda tx: (tx.epoch, tx.transaction_id)):
        while next_label < len(pending) and pending[next_label].known_epoch <= tx.epoch:
            store.add_label(pending[next_label])
            next_label += 1
        card, terminal = store.exchange(tx)
        rows.append(compute(tx, card, terminal))
    return rows


def digest(rows: list[list[float]]) -> str:
    text = "\n".join(
        ",".join(f"{round(x, 6) + 0.0:.6f}" for x in row) for row in rows
    )  # +0.0: no -0
    return hashlib.sha256(text.encode()).hexdigest()


def test_golden_stream_exercises_every_feature() -> None:
    """If a feature were constant on the stream, a change to it would go unnoticed."""
    rows = feature_matrix()
    assert len(rows) == N_BASE + len(ECHOED) * len(EDGES) == 200
    assert all(len(row) == len(FEATURE_NAMES) for row in rows)
    constant = [name for j, name in enumerate(FEATURE_NAMES) if len({row[j] for row in rows}) < 2]
    assert not constant, f"features constant on the golden stream: {constant}"
    by_name = {name: [row[j] for row in rows] for j, name in enumerate(FEATURE_NAMES)}
    assert max(by_name["tx_count_by_card_1h"]) >= 2
    assert max(by_name["fraud_rate_by_terminal_30d_delay7d"]) > 0
    assert min(by_name["fraud_age_days_min_by_terminal_37d"]) < 7  # a label known early
    assert min(by_name["amount_zscore_by_card_30d"]) < 0 < max(by_name["amount_zscore_by_card_30d"])


def test_digest_sees_a_change_in_the_sixth_decimal() -> None:
    rows = feature_matrix()
    changed = [list(row) for row in rows]
    changed[100][17] += 2e-6
    assert digest(changed) != digest(rows)
    assert digest([[-0.0000001]]) == digest([[0.0]])  # no spurious -0.000000


def test_feature_values_match_the_recorded_fingerprint() -> None:
    actual = {fingerprint(): digest(feature_matrix())}
    assert actual == RECORDED, (
        f"The features computed on the golden stream are {actual}, but this file records "
        f"{RECORDED}.\n"
        "- If you changed what a feature means ON PURPOSE: bump FeatureSpec.version in "
        "fraudcore/features.py (the fingerprint, the Redis key prefix and the model check "
        "follow it), retrain with `make train`, and replace RECORDED in "
        "tests/contract/test_fingerprint.py with the new {fingerprint: hash} pair above.\n"
        "- If you only bumped the version, update the recorded pair the same way.\n"
        "- If you did NOT mean to change any feature, this is a regression in fraudcore: "
        "the served features no longer match the ones the current model was trained on."
    )
