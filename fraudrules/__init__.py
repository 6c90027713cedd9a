"""Analysts' rules beside the model: a YAML file of CEL expressions, each with an action.

Shared by the service (which applies them after scoring, in the same batch) and training
(the backtest replays them), so it imports only :mod:`fraudcore`, the expression library
(``common-expression-language``: CEL, no ``eval``, no access to Python objects) and PyYAML.

::

    rules:
      - id: big-amount
        when: amount > 5000
        action: decline

Precedence (:mod:`fraudrules.precedence`): ``allow > decline > review > approve > model``,
applied as steps on the model's action —

- ``approve``: approve, whatever the model said (unless a stricter rule fired too);
- ``review``: at least review (the model's decline stays a decline);
- ``decline``: decline;
- ``allow``: approve, over the model and every other rule (a known-good card or
  terminal).

Every rule that fired is named in the decision (file order), whichever action won; a
decision also names the rules version, the start of the SHA-256 of the file's bytes.

A rule reads the fields of :data:`~fraudrules.fields.FIELDS`: the transaction's
(``amount``, ``terminal_id``, ``hour``, ``channel``, ``extra.device``, ...), every feature
by its name, and the model's ``score``; and the lists the file declares, as ``card_id in
blocked_cards`` (:mod:`fraudrules.ruleset`: the caller hands over, per batch, each list's
membership; the service keeps them in Redis, docs/lists.md). A file that does not load or
compile raises :class:`RulesError` naming the rule and the position; a rule that fails on
one transaction at run time does not fire (:attr:`Evaluation.failed`).
"""

from __future__ import annotations

from fraudrules.errors import RulesError
from fraudrules.fields import FIELDS, Field
from fraudrules.precedence import ACTIONS, RuleAction, combine
from fraudrules.ruleset import (
    Evaluation,
    Lists,
    ListUse,
    Rule,
    RuleSet,
    list_text,
    load_rules,
    parse_rules,
    version_of,
)

__all__ = [
    "ACTIONS",
    "FIELDS",
    "Evaluation",
    "Field",
    "ListUse",
    "Lists",
    "Rule",
    "RuleAction",
    "RuleSet",
    "RulesError",
    "combine",
    "list_text",
    "load_rules",
    "parse_rules",
    "version_of",
]
