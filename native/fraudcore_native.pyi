"""Types of the compiled core (src/lib.rs); fraudnative wraps it with fraudcore's types."""

from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import Any

__version__: str

class Conflict(Exception): ...

class Engine:
    def __init__(
        self,
        card_windows_days: list[int],
        terminal_windows_days: list[int],
        label_delay_days: int,
        short_window_seconds: int,
        no_fraud_age_days: float,
        grace_days: int,
        card_max_entries: int,
        terminal_max_entries: int,
        terminal_max_labels: int,
    ) -> None: ...
    def compute(
        self,
        epoch: float,
        amount: float,
        weekend: bool,
        night: bool,
        card_times: Sequence[float],  # an array('d') is read at once
        card_amounts: Sequence[float],
        counts: Sequence[int],
        fraud_times: Sequence[float],
        fraud_known_at: Sequence[float],
    ) -> list[float]: ...

class State:
    def __init__(self, engine: Engine) -> None: ...
    def exchange(
        self, id: str, card_id: str, terminal_id: str, amount: float, epoch: float
    ) -> tuple[list[float], list[float], list[int], list[float], list[float]]: ...
    def add_label(self, id: str, terminal_id: str, epoch: float, known_at: float) -> None: ...
    def set_labels(
        self, ids: list[str], terminals: list[str], epochs: list[float], known_at: list[float]
    ) -> None: ...
    @property
    def applied(self) -> int: ...
    @property
    def capped(self) -> tuple[int, int, int]: ...
    def replay(
        self,
        engine: Engine,
        ids: list[str],
        cards: list[str],
        terminals: list[str],
        amounts: list[float],
        epochs: list[float],
        weekend: list[bool],
        night: list[bool],
        known_before: list[int],
    ) -> bytes: ...
    def sizes(self) -> tuple[int, int, int]: ...

class Commands:
    def __init__(
        self,
        root: str,
        card_sha: str,
        terminal_sha: str,
        card_retention_seconds: float,
        terminal_retention_seconds: float,
        label_delay_seconds: float,
        terminal_windows_seconds: list[float],
        card_max_entries: int,
        terminal_max_entries: int,
    ) -> None: ...
    def exchange(
        self,
        transaction_id: str,
        card_tag: str,
        terminal_id: str,
        epoch: float,
        amount: float,
        now: float,
        ids: bool,
    ) -> tuple[tuple[bytes, str] | None, tuple[bytes, str], tuple[bytes, str]]: ...

class Decoder:
    def __init__(
        self, cls: type, new: Callable[[type], object], datetime: type,
        zone: Callable[[int], tzinfo],
    ) -> None: ...
    def decode(self, payload: bytes) -> Any | None: ...

def card_history(joined: bytes) -> tuple[bytes, bytes]: ...
def float_repr(x: float) -> str: ...
def murmur2(data: bytes) -> int: ...
def terminal_tag(terminal_id: str) -> str: ...
