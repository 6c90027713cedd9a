"""How the model's action and the actions of the rules that fired make one action.

Applied in this order, each step on the result of the one before::

    model's action (score against the thresholds)
      -> approve rules: approve          (a rule overrides the model)
      -> review rules:  at least review  (a model's decline stays a decline)
      -> decline rules: decline
      -> allow rules:   approve          (over the model and every other rule)

So ``allow > decline > review > approve > model``, except that a review rule never lowers
the model's decline (only an approve rule clears the model). Every rule that fired is
named in the decision whichever action won.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from fraudcore import Action

__all__ = ["ACTIONS", "RuleAction", "combine"]

RuleAction = Literal["allow", "approve", "review", "decline"]

#: The actions a rule can take, weakest first (the order of the steps above).
ACTIONS: tuple[RuleAction, ...] = ("approve", "review", "decline", "allow")


def combine(model: Action, fired: Collection[RuleAction]) -> Action:
    """The decision's action from the model's and those of the rules that fired."""
    if not fired:
        return model
    if "allow" in fired:
        return "approve"
    if "decline" in fired:
        return "decline"
    action = "approve" if "approve" in fired else model
    if "review" in fired and action == "approve":
        return "review"
    return action
