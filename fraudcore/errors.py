"""The project's exception tree.

::

    FraudError
     ├── InvalidEvent (also ValueError)      an event that cannot be scored; it goes to the DLQ
     │    ├── InvalidTransaction
     │    └── InvalidLabel
     ├── DuplicateConflict (also ValueError)  a transaction id seen before with other content
     ├── StateUnavailable                     the state store cannot be reached: hold or fail open
     ├── ModelError                           a model the service must not load
     │    ├── FingerprintMismatch             trained on other feature definitions
     │    └── ModelIntegrityError             file hash or metadata does not match
     └── fraudrules.RulesError (also ValueError)  a rules file that does not load or compile

Each error's message says what is wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "DuplicateConflict",
    "FingerprintMismatch",
    "FraudError",
    "InvalidEvent",
    "InvalidLabel",
    "InvalidTransaction",
    "ModelError",
    "ModelIntegrityError",
    "StateUnavailable",
]


class FraudError(Exception):
    """Root of every error this project raises on purpose."""


class InvalidEvent(FraudError, ValueError):
    """An event failed validation; ``field`` names the offending field (or ``None``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransaction(InvalidEvent):
    """A transaction event failed validation."""


class InvalidLabel(InvalidEvent):
    """A label event failed validation."""


class DuplicateConflict(FraudError, ValueError):
    """A transaction id arrived again with different content; the first one stands."""


class StateUnavailable(FraudError):
    """The state store cannot be reached (connection refused or lost, no answer in time).

    The system's fault, not the event's: the batch is held and tried again, or decided on
    empty history (fail-open); never dead-lettered."""


class ModelError(FraudError):
    """A model artifact cannot be used."""


class FingerprintMismatch(ModelError):
    """The model was trained on feature definitions other than this code's."""


class ModelIntegrityError(ModelError):
    """A model file does not match its metadata (hash, missing fields, bad pointer)."""
