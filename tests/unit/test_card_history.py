"""The card history's binary layout in Redis: what the worker stores is what it reads back
(the store itself is tested against the real Redis in tests/integration)."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta

from fraudcore import CardHistory, Transaction
from service.replies import card_history as _card_history
from service.replies import stored as _content

T0 = datetime(2018, 5, 1, 12, tzinfo=UTC)


def _tx(n: int, hours: float, amount: float) -> Transaction:
    return Transaction(f"tx-{n}", "card", f"T-{n}", amount, T0 + timedelta(hours=hours))


def test_contents_come_back_as_times_and_amounts_in_time_order() -> None:
    # Redis hands the contents back in insertion order, which a late event breaks.
    txs = [_tx(1, 0, 10.5), _tx(2, 5, 0.01), _tx(3, 1.25, 123456.78), _tx(4, 5, 7.0)]
    history = _card_history(b"".join(_content(tx) for tx in txs))
    assert history.timestamps == sorted(tx.epoch for tx in txs)
    by_time = sorted(txs, key=lambda tx: tx.epoch)  # stable: equal times keep their order
    assert history.amounts == [tx.amount for tx in by_time]


def test_in_order_contents_are_taken_as_they_are() -> None:
    txs = [_tx(n, n * 0.5, 1.0 + n) for n in range(70)]
    history = _card_history(b"".join(_content(tx) for tx in txs))
    assert history == CardHistory([tx.epoch for tx in txs], [tx.amount for tx in txs])


def test_no_history() -> None:
    assert _card_history(b"") == CardHistory([], [])


def test_the_content_tells_terminals_apart() -> None:
    # A redelivery must match exactly; the same time and amount at another terminal must not.
    # Its layout, worked by hand: three little-endian doubles (time, amount, crc32).
    tx = _tx(1, 0, 10.0)
    expected = struct.pack("<3d", tx.epoch, 10.0, float(zlib.crc32(tx.terminal_id.encode())))
    assert _content(tx) == expected
    assert _content(_tx(1, 0, 10.0)) != _content(_tx(2, 0, 10.0))
