"""What the service and training must agree on: events, features, state, policy.

No I/O, no wall clock, no heavy imports: only the standard library.
"""

from __future__ import annotations

from fraudcore.errors import (
    DuplicateConflict,
    FingerprintMismatch,
    FraudError,
    InvalidEvent,
    InvalidLabel,
    InvalidTransaction,
    ModelError,
    ModelIntegrityError,
)
from fraudcore.events import (
    CHANNELS,
    LabelEvent,
    Limits,
    Transaction,
    parse_label,
    parse_transaction,
)
from fraudcore.features import (
    FEATURE_NAMES,
    SPEC,
    CardHistory,
    FeatureSpec,
    TerminalHistory,
    compute,
    fingerprint,
)
from fraudcore.policy import Action, Thresholds, decide
from fraudcore.state import InMemoryStore

__all__ = [
    "FEATURE_NAMES",
    "SPEC",
    "Action",
    "CHANNELS",
    "CardHistory",
    "DuplicateConflict",
    "FeatureSpec",
    "FingerprintMismatch",
    "FraudError",
    "InMemoryStore",
    "InvalidEvent",
    "InvalidLabel",
    "InvalidTransaction",
    "LabelEvent",
    "Limits",
    "ModelError",
    "ModelIntegrityError",
    "TerminalHistory",
    "Thresholds",
    "Transaction",
    "compute",
    "decide",
    "fingerprint",
    "parse_label",
    "parse_transaction",
]
