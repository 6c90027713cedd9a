"""The in-memory state store: the reference semantics that the Redis store reproduces.

For each transaction, :meth:`InMemoryStore.exchange` returns the card's and the terminal's
history *before* it and records it, in one step. It is idempotent on the transaction id:
the same transaction again changes nothing and gets the same history back (the history
never includes the transaction itself); the same id with other content raises
:class:`~fraudcore.errors.DuplicateConflict`. Entries older than the retention of
:class:`~fraudcore.features.FeatureSpec` are dropped, and each card and terminal keeps at
most the spec's ``*_max_*`` newest entries, so memory and the cost of one event stay
bounded. The order of the steps is the Redis scripts' (``service/state.py``), so both
stores keep the same entries::

    card:      drop entries older than the retention; drop the transaction itself if it is
               there (a duplicate); drop the oldest until card_max_entries - 1 are left;
               the history is what is left; record the transaction
    terminal:  record the transaction; drop entries older than the retention; drop the
               oldest until terminal_max_entries are left; count
    label:     record it (the first label of a transaction wins); drop the oldest until
               terminal_max_labels are left
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Literal

from fraudcore.errors import DuplicateConflict
from fraudcore.events import LabelEvent, Transaction
from fraudcore.features import SPEC, CardHistory, FeatureSpec, TerminalHistory, terminal_windows

__all__ = ["InMemoryStore", "LabelCheck", "Timeline"]

#: What :meth:`InMemoryStore.check_label` finds for a label.
LabelCheck = Literal["match", "mismatch", "unknown", "absent"]

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

    def newest(self) -> float | None:
        """The time of the newest entry, if any."""
        return self._entries[-1][0] if self._entries else None

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
        self._drop(self._index(before))

    def keep(self, newest: int) -> int:
        """Drop the oldest entries until at most ``newest`` are left; returns how many went."""
        cut = max(len(self._entries) - newest, 0)
        self._drop(cut)
        return cut

    def _drop(self, cut: int) -> None:
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
        self._grace = spec.grace_days * 86_400.0
        #: Entries dropped by the size bounds (not by age) so far: "card", "terminal", "label".
        self.capped: dict[str, int] = {"card": 0, "terminal": 0, "label": 0}

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
        spec = self.spec
        card.trim(t - spec.card_retention_seconds)
        card.discard(tx.transaction_id)  # a duplicate: recorded again below, as it was
        self.capped["card"] += card.keep(spec.card_max_entries - 1)
        card_entries = card.since(t - spec.card_retention_seconds, excluding=tx.transaction_id)
        card.add(t, tx.transaction_id, tx.amount, tag=tx.terminal_id)
        terminal = self.terminals.setdefault(tx.terminal_id, Timeline())
        terminal.add(t, tx.transaction_id, 0.0)
        terminal.trim(t - spec.terminal_retention_seconds)
        self.capped["terminal"] += terminal.keep(spec.terminal_max_entries)

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

    def check_label(self, label: LabelEvent) -> LabelCheck:
        """Whether a label names a transaction this store recorded: ``"match"``,
        ``"mismatch"`` (recorded with other content), ``"unknown"`` (not recorded yet,
        never, or no longer held) or ``"absent"`` (unknown, and its card recorded
        transactions more than the grace later: a card's transactions come in order, so
        this one never will).

        While the card holds the transaction, its card, terminal, amount and time are
        compared; after the card let it go (older than its retention, or beyond its size
        bound) the terminal's record still gives its time (for the terminal's longer
        retention and larger bound), so a busy card's old frauds can still be labelled."""
        card = self.cards.get(label.card_id)
        seen = card.get(label.transaction_id) if card is not None else None
        if seen is not None:
            same = seen == (label.epoch, label.amount, label.terminal_id)
            return "match" if same else "mismatch"
        terminal = self.terminals.get(label.terminal_id)
        at = terminal.get(label.transaction_id) if terminal is not None else None
        if at is not None:
            return "match" if at[0] == label.epoch else "mismatch"
        newest = card.newest() if card is not None else None
        return "absent" if newest is not None and newest > label.epoch + self._grace else "unknown"

    def add_label(self, label: LabelEvent) -> None:
        """Record that ``label.transaction_id`` was fraud, known at ``label.known_at``.

        Labels are trimmed by the transactions that read them, so a label that arrives
        ahead of time is kept until it is too old for any transaction."""
        labels = self.labels.setdefault(label.terminal_id, Timeline())
        labels.add(label.epoch, label.transaction_id, label.known_epoch)
        self.capped["label"] += labels.keep(self.spec.terminal_max_labels)
