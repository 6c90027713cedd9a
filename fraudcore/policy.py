"""The decision policy: a model score becomes ``approve``, ``review`` or ``decline``.

The thresholds travel in the model's metadata, chosen on validation data at training
time, so a new model brings thresholds calibrated to its own scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "Thresholds", "decide"]

Action = Literal["approve", "review", "decline"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at or above ``review`` go to an investigator; at or above ``decline`` they
    are declined outright."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.review <= self.decline <= 1.0) or math.isnan(self.review):
            raise ValueError(
                f"thresholds must satisfy 0 <= review <= decline <= 1, got "
                f"review={self.review}, decline={self.decline}"
            )


def decide(score: float, thresholds: Thresholds) -> Action:
    """The action for ``score`` (a fraud probability in [0, 1]); a NaN score, which a
    sound model never gives, goes to review rather than through."""
    if math.isnan(score):
        return "review"
    if score >= thresholds.decline:
        return "decline"
    if score >= thresholds.review:
        return "review"
    return "approve"
