"""The error of a rules file that cannot be used (part of the tree in :mod:`fraudcore.errors`)."""

from __future__ import annotations

from fraudcore.errors import FraudError

__all__ = ["RulesError"]


class RulesError(FraudError, ValueError):
    """A rules file that cannot be used: not readable, not YAML, not in the format, or a
    rule that does not compile. The message starts with ``file:line[:column]:`` and names
    the rule; ``rule_id``, ``line`` and ``column`` (1-based, in the file) are ``None`` where
    unknown. The file is refused whole: the worker keeps the rules it has."""

    def __init__(
        self,
        message: str,
        *,
        rule_id: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.line = line
        self.column = column
