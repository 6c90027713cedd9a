"""The in-memory state store: the reference semantics that the Redis store reproduces.

For each transaction, :meth:`InMemoryStore.exchange` returns the card's and the terminal's
history *before* it and records it, in one step. It is idempotent on the transaction id:
the same transaction again changes nothing and gets the same history back (the history
never includes the transaction itself); the same id with other content raises
:class:`~fraudcore.errors.DuplicateConflict`. Entries older than the retention of
:class:`~fraudcore.features.FeatureSpec` are dropped, so memory stays bounded.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from fraudcore.errors import DuplicateConflict
from fraudcore.events import LabelEvent, Transaction
from fraudcore.features import SPEC, CardHistory, FeatureSpec, TerminalHistory, terminal_windows

__all__ = ["InMemoryStore", "Timeline"]

_LAST_ID = "\U0010ffff"  # sorts after every id, so (time, _LAST_ID, _INF) ends a time
_INF = float("inf")


class Timeline:
    """Entries ``(time, id, value)`` kept in time order, unique by id, trimmed by age."""

    __slots__ = ("_entries", "_ids")

    def __init__(self) -> None:
        self._entries: list[tuple[float, str, float]] = []
        self._ids: dict[str, tuple[float, float, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entry_id: str) -> tuple[float, float, str] | None:
        """``(time, value, tag)`` of an entry, if it is there."""
        return self._ids.get(entry_id)

    def add(self, time: float, entry_id: str, value: float, *, tag: str = "") -> bool:
        """Record an entry (``tag``: more content that only identity checks look at);
        ``False`` when the id is already there (nothing changes)."""
        if entry_id in self._ids:
            return False
        self._ids[entry_id] = (time, value, tag)
        entry = (time, entry_id, value)
        if not self._entries or self._entries[-1] <= entry:
            self._entries.append(entry)
        else:
            insort(self._entries, entry)
        return True

    def discard(self, entry_id: str) -> bool:
        """Remove an entry; ``False`` when it is not there."""
        seen = self._ids.pop(entry_id, None)
        if seen is None:
            return False
        time, value, _ = seen
        at = bisect_left(self._entries, (time, entry_id, value))
        del self._entries[at]
        return True

    def trim(self, before: float) -> None:
        """Drop entries at or before ``before``."""
        cut = self._index(before)
        if cut:
            for _, entry_id, _ in self._entries[:cut]:
                del self._ids[entry_id]
            del self._entries[:cut]

    def since(self, low: float, *, excluding: str) -> list[tuple[float, str, float]]:
        """Entries after ``low``, in time order, without the one whose id is ``excluding``."""
        return [e for e in self._entries[self._index(low) :] if e[1] != excluding]

    def count(self, low: float, high: float) -> int:
        """How many entries have a time in ``(low, high]``."""
        return self._index(high) - self._index(low)

    def _index(self, time: float) -> int:
        return bisect_right(self._entries, (time, _LAST_ID, _INF))


class InMemoryStore:
    """Card and terminal state in dictionaries, for replay and tests."""

    def __init__(self, *, spec: FeatureSpec = SPEC) -> None:
        self.spec = spec
        self.cards: dict[str, Timeline] = {}
        self.terminals: dict[str, Timeline] = {}
        self.labels: dict[str, Timeline] = {}

    def exchange(self, tx: Transaction) -> tuple[CardHistory, TerminalHistory]:
        """The histories before ``tx``; then ``tx`` is recorded (once)."""
        t = tx.epoch
        card = self.cards.setdefault(tx.card_id, Timeline())
        seen = card.get(tx.transaction_id)
        if seen is not None and seen != (t, tx.amount, tx.terminal_id):
            raise DuplicateConflict(
                f"transaction {tx.transaction_id!r} was seen before with another time, amount "
                "or terminal; the first one stands. Give a corrected transaction a new id."
            )
        card.trim(t - self.spec.card_retention_seconds)
        card.add(t, tx.transaction_id, tx.amount, tag=tx.terminal_id)
        terminal = self.terminals.setdefault(tx.terminal_id, Timeline())
        terminal.trim(t - self.spec.terminal_retention_seconds)
        terminal.add(t, tx.transaction_id, 0.0)

        card_entries = card.since(t - self.spec.card_retention_seconds, excluding=tx.transaction_id)
        labels = self.labels.get(tx.terminal_id)
        label_entries = (
            labels.since(t - self.spec.terminal_retention_seconds, excluding="") if labels else []
        )
        return (
            CardHistory(
                timestamps=[e[0] for e in card_entries], amounts=[e[2] for e in card_entries]
            ),
            TerminalHistory(
                counts=[terminal.count(low, high) for low, high in terminal_windows(t, self.spec)],
                fraud_timestamps=[e[0] for e in label_entries],
                fraud_known_at=[e[2] for e in label_entries],
            ),
        )

    def forget(self, tx: Transaction) -> None:
        """Undo the recording of ``tx`` (on its card and its terminal), as if it never came."""
        card = self.cards.get(tx.card_id)
        if card is not None:
            card.discard(tx.transaction_id)
        terminal = self.terminals.get(tx.terminal_id)
        if terminal is not None:
            terminal.discard(tx.transaction_id)

    def add_label(self, label: LabelEvent) -> None:
        """Record that ``label.transaction_id`` was fraud, known at ``label.known_at``.

        Labels are trimmed by the transactions that read them, so a label that arrives
        ahead of time is kept until it is too old for any transaction."""
        labels = self.labels.setdefault(label.terminal_id, Timeline())
        labels.add(label.epoch, label.transaction_id, label.known_epoch)
