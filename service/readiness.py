"""What the worker is holding on right now: the system faults ``/health`` reports.

The batch path marks a part faulty when it starts holding on it (the state store cannot be
reached or refuses, the model fails at run time) and clear when it works again. Each change
is one log line (not one per retry) and moves ``fraud_faults{part}``; while any part is
faulty, ``/health`` answers 503 with the reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service import metrics

__all__ = ["Readiness"]

log = logging.getLogger(__name__)


class Readiness:
    """The faults the worker is holding on, by part (``"state"``, ``"model"``), and
    whether its loops still run (``/livez``)."""

    def __init__(self) -> None:
        self._faults: dict[str, str] = {}
        #: Why the worker is no longer alive (its transactions loop ended), or None; set by
        #: the wiring (service.agents) once the consumer exists.
        self.dead: Callable[[], str | None] = lambda: None

    def fault(self, part: str, reason: str) -> None:
        if part not in self._faults:
            log.error("%s: holding (%s)", part, reason)
            metrics.FAULTS.labels(part).set(1)
        self._faults[part] = reason

    def clear(self, part: str) -> None:
        if self._faults.pop(part, None) is not None:
            log.warning("%s: working again", part)
            metrics.FAULTS.labels(part).set(0)

    @property
    def faults(self) -> dict[str, str]:
        """Each faulty part and why, the latest reason."""
        return dict(self._faults)

    @property
    def ready(self) -> bool:
        return not self._faults
