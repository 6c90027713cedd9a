"""Which code runs the per-transaction hot path (``FRAUD_ENGINE``): the compiled core
(``native``, the default: ``fraudnative``, built by ``make install``) or the pure-Python
reference (``python``: ``fraudcore`` and :mod:`service.exchange`'s Python calls).

Both give the same decisions, bit for bit (``tests/unit/test_native.py``): decoding a
transaction (the compiled decoder takes the payloads it is sure of and leaves the rest,
with their error messages, to ``fraudcore.parse_transaction``), the Redis commands of
the state exchange and the card's reply, and the features. ``native`` without the
compiled core installed refuses to start, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Literal

from fraudcore import CardHistory, TerminalHistory, Transaction, compute
from service.records import decode_transaction
from service.settings import StartupError

__all__ = ["Engine", "decoder", "features", "native"]

Engine = Literal["native", "python"]


def native() -> ModuleType:
    """The compiled core; :class:`StartupError` when it is not installed."""
    try:
        import fraudnative  # noqa: PLC0415 - only with FRAUD_ENGINE=native
    except ImportError as exc:
        raise StartupError(
            f"FRAUD_ENGINE=native, but the compiled core is not installed ({exc}); "
            "build it with `make install` (it needs cargo), or set FRAUD_ENGINE=python"
        ) from exc
    return fraudnative


def decoder(engine: Engine) -> Callable[[bytes | None], Transaction]:
    """Bytes from the transactions topic to a validated transaction (InvalidEvent if not)."""
    if engine == "python":
        return decode_transaction
    fast = native().decode_transaction

    def decode(payload: bytes | None) -> Transaction:
        tx = fast(payload) if payload is not None else None
        return tx if tx is not None else decode_transaction(payload)  # the reference's word

    return decode


def features(engine: Engine) -> Callable[[Transaction, CardHistory, TerminalHistory], list[float]]:
    """The feature vector of a transaction and its histories."""
    return compute if engine == "python" else native().compute
