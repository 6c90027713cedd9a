"""Which code runs the per-transaction hot path (``FRAUD_ENGINE``): the compiled core
(``native``, the default: ``fraudnative``, built by ``make install``) or the pure-Python
reference (``python``: ``fraudcore`` and :mod:`service.exchange`'s Python calls).

Both give the same decisions, bit for bit (``tests/unit/test_native.py``): decoding a
transaction (the compiled decoder takes the payloads it is sure of and leaves the rest,
with their error messages, to ``fraudcore.parse_transaction``), the Redis commands of
the state exchange and the card's reply, the features, and the partition of each record
the worker produces (Kafka's murmur2 of its key, as aiokafka computes it in Python at
~5 µs a record). ``native`` without the compiled core installed refuses to start, with
the reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Literal

from fraudcore import CardHistory, TerminalHistory, Transaction, compute
from service.records import decode_transaction
from service.settings import StartupError

__all__ = ["Engine", "Partitioner", "decoder", "features", "native", "partitioner"]

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
        tx = fast(payload) if type(payload) is bytes else None  # the rest: the reference
        return tx if tx is not None else decode_transaction(payload)  # the reference's word

    return decode


def features(engine: Engine) -> Callable[[Transaction, CardHistory, TerminalHistory], list[float]]:
    """The feature vector of a transaction and its histories."""
    return compute if engine == "python" else native().compute


#: Faust's ``producer_partitioner``: (key, all partitions, available ones) -> the partition.
Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]


def partitioner(engine: Engine) -> Partitioner | None:
    """aiokafka's DefaultPartitioner with the compiled murmur2 (``None``: aiokafka's own):
    a keyed record goes to ``(murmur2(key) & 0x7fffffff) % partitions``, as the Java
    client and every other producer of the topics send it; an unkeyed one to a random
    available partition."""
    if engine == "python":
        return None
    murmur2 = native().murmur2

    def partition(key: bytes | None, every: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or every)  # noqa: S311 - spreading, not secrecy
        hashed: int = murmur2(key)
        return every[(hashed & 0x7FFFFFFF) % len(every)]

    return partition
