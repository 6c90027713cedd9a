"""The analysts' rules in service: ``FRAUD_RULES_FILE``, read again when it changes, applied
to each batch's decisions right after the model (:mod:`fraudrules`: format, fields,
precedence).

:class:`RulesHolder` works as :class:`~service.model.ModelHolder` does for the model:

- at start, a file that does not load or compile stops the worker with the reason (the
  rule, the position); no file set: no rules, and decisions carry no ``rules`` fields;
- every ``FRAUD_RULES_POLL_SECONDS`` (a timer of :mod:`service.agents`, so between two
  batches) the file is read again; its version is the hash of its bytes, so only a change
  of content counts. New content that compiles replaces the rules in service (logged); one
  that does not, or a file that cannot be read, is refused: logged at ERROR, shown on
  ``/health`` (``rules_refused``) and in ``fraud_rules_refused_info``, and the rules in
  service go on deciding. Refused content is not tried again until it changes; the refusal
  is shown until the file holds rules that are served (new ones, or the served ones again).

:func:`apply_rules` evaluates the rules of one batch (one rule set for the whole batch,
even across a swap, and one state of the lists: :mod:`service.lists`), counts
``fraud_rule_hits_total`` and ``fraud_rule_errors_total`` per rule, and logs a rule's first
failure per rules version (never the card id). Decisions whose rules read lists that may be
out of date (the last read from Redis failed) are marked degraded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fraudrules import Lists, RulesError, RuleSet, combine, parse_rules, version_of
from fraudrules.ruleset import MAX_FILE_BYTES
from service import metrics
from service.lists import ListsHolder
from service.ports import Rules
from service.records import Decision

__all__ = ["Refusal", "RulesHolder", "apply_rules", "list_lookups"]

log = logging.getLogger(__name__)

#: The refused "version" of a rules file that could not be read at all.
UNREADABLE = "unreadable"
#: Rule failures remembered as logged (cleared past it: logged again, never unbounded).
_LOGGED_LIMIT = 10_000


@dataclass(frozen=True)
class Refusal:
    """A rules file's content that was refused, why, and when (epoch seconds)."""

    version: str
    reason: str
    at: float


def _describe(rules: RuleSet | None) -> str:
    return "no rules" if rules is None else f"rules {rules.version} ({len(rules.rules)} rules)"


class RulesHolder:
    """The rules in service, and the check for a changed file."""

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        lists: ListsHolder | None = None,
    ) -> None:
        """Load ``path`` (``None``: no rules); :class:`~fraudrules.RulesError` if it
        cannot be used. ``lists``: the allow and block lists the rules read (without them,
        every list is empty and the decisions of rules that read one are degraded)."""
        self.path = path
        self.clock = clock
        self.lists = lists
        self.rules: RuleSet | None = None
        self.refused: Refusal | None = None
        self._refused_version: str | None = None
        self._logged: set[tuple[str, str]] = set()  # (version, rule id) whose failure was logged
        if path is not None:
            self.rules = parse_rules(self._read(path), source=str(path))
            log.info("serving %s from %s", _describe(self.rules), path)

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            with path.open("rb") as file:
                return file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise RulesError(f"cannot read the rules file {path}: {exc.strerror or exc}") from exc

    def refresh(self) -> bool:
        """Swap in the file's rules if its content changed and compiles; ``True`` if so."""
        if self.path is None:
            return False
        try:
            content = self._read(self.path)
        except RulesError as exc:
            self._refuse(UNREADABLE, str(exc))
            return False
        version = version_of(content)
        if self.rules is not None and version == self.rules.version:
            if self.refused is not None:
                log.info("the rules file holds the rules in service again (%s)", version)
            self.refused, self._refused_version = None, None
            return False
        if version == self._refused_version:
            return False
        try:
            rules = parse_rules(content, source=str(self.path))
        except RulesError as exc:
            self._refuse(version, str(exc))
            return False
        log.info("%s replace %s", _describe(rules), _describe(self.rules))
        self.rules, self.refused, self._refused_version = rules, None, None
        return True

    def failed(self, version: str, first: Mapping[str, tuple[str, str]]) -> None:
        """Log a rule's first failure in a rules version (``first``: rule id -> transaction
        id, reason), once per rule and version."""
        for rule, (transaction_id, reason) in first.items():
            if (version, rule) in self._logged:
                continue
            if len(self._logged) >= _LOGGED_LIMIT:
                self._logged.clear()
            self._logged.add((version, rule))
            log.warning(
                "rule %r (rules %s) failed on transaction %s and did not fire: %s (logged once "
                "per rule and version; counted in fraud_rule_errors_total)",
                rule, version, transaction_id, reason,
            )

    def _refuse(self, version: str, reason: str) -> None:
        if version == self._refused_version:
            return  # said already
        self._refused_version = version
        self.refused = Refusal(version, reason, self.clock())
        log.error("refused rules %s, keeping %s: %s", version, _describe(self.rules), reason)



def list_lookups(holder: Rules, rules: RuleSet) -> tuple[Lists | None, bool]:
    """The contents of the lists ``rules`` read, for one batch (None: they read none), and
    whether they may be stale (a failed read, or no lists at all: empty, and stale)."""
    if not rules.uses:
        return None, False
    lists = holder.lists if isinstance(holder, RulesHolder) else None
    if lists is None:
        return {use.name: frozenset[str]() for use in rules.uses}, True
    return lists.lookups(rules), lists.stale


def apply_rules(
    holder: Rules | None, decisions: list[Decision], rows: Sequence[Sequence[float]]
) -> list[Decision]:
    """The batch's decisions with the rules applied (unchanged without a rules file);
    ``rows``: the feature vectors the decisions were scored on, in the same order."""
    rules = holder.rules if holder is not None else None
    if holder is None or rules is None:
        return decisions
    started = time.perf_counter()
    lookups, stale = list_lookups(holder, rules)
    hits: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    first: dict[str, tuple[str, str]] = {}  # rule id -> its first failure in the batch
    decided = []
    for decision, row in zip(decisions, rows, strict=True):
        evaluation = rules.evaluate(decision.transaction, row, decision.score, lookups)
        fired = evaluation.fired
        for rule in fired:
            hits[rule.id] += 1
        for rule, reason in evaluation.failed:
            errors[rule.id] += 1
            first.setdefault(rule.id, (decision.transaction.transaction_id, reason))
        decided.append(
            replace(  # every other field of the decision kept as it is
                decision,
                action=combine(decision.action, [rule.action for rule in fired]),
                degraded=decision.degraded or stale,
                rules=tuple(rule.id for rule in fired),
                rules_version=rules.version,
                listed=evaluation.listed,
            )
        )
    for rule_id, count in hits.items():
        metrics.RULE_HITS.labels(rule_id).inc(count)
    for rule_id, count in errors.items():
        metrics.RULE_ERRORS.labels(rule_id).inc(count)
    if first:
        holder.failed(rules.version, first)
    metrics.STAGE_SECONDS.labels("rules").observe(time.perf_counter() - started)
    return decided
