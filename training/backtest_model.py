"""A model for the backtest, named as a user names it, loaded as the worker loads it.

The loading and checking are the worker's own (:func:`fraudmodel.load_model`: the feature
fingerprint, the sha256, the thresholds, a test batch, the reason codes), so each side of
a backtest is scored by exactly what the worker would serve.

A model is named by its version directory (``models/475f35760321``), by a pointer file
(``models/current``, ``models/challenger``: the version it names, beside it) or by a
models directory holding a ``current`` pointer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fraudcore.artifacts import MODEL_FILE, POINTER_FILE, ModelInfo
from fraudcore.errors import ModelIntegrityError
from fraudmodel import Model, current_version, load_model

__all__ = ["CHUNK_ROWS", "ServedModel", "load_served", "resolve"]

log = logging.getLogger(__name__)

#: Rows scored in one onnxruntime call (memory stays bounded on a long window).
CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class ServedModel:
    """A checked model and the directory it came from."""

    directory: Path
    model: Model

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def score(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """Fraud probabilities of a float32 matrix of feature vectors, as the worker's."""
        return np.asarray(self.model.score(features), dtype=np.float64)


def resolve(path: Path) -> Path:
    """The version directory that ``path`` names (see the module docstring)."""
    if path.is_file():
        return path.parent / current_version(path.parent, path.name)
    if path.is_dir() and not (path / MODEL_FILE).exists() and (path / POINTER_FILE).is_file():
        return path / current_version(path)
    if not path.exists():
        raise ModelIntegrityError(
            f"no model at {path}: give a model version directory (models/<version>), a "
            "pointer (models/current) or a models directory; train one with `make train`"
        )
    return path


def load_served(path: Path) -> ServedModel:
    """Load and check the model ``path`` names; :class:`ModelIntegrityError` (or
    :class:`~fraudcore.errors.FingerprintMismatch`) saying what is wrong, never
    onnxruntime's own exception."""
    directory = resolve(path)
    model = ServedModel(directory, load_model(directory))
    thresholds = model.info.thresholds
    log.info(
        "model %s from %s (review ≥ %.4g, decline ≥ %.4g)",
        model.version, directory, thresholds.review, thresholds.decline,
    )
    return model
