"""A model directory loaded for the backtest as the worker loads it, and its scores.

``training`` never imports ``service`` (``tests/contract/test_boundaries.py``), so this is
the worker's loader (``service.model.load_model``) restated over the same shared parts:
the files ``model.onnx`` and ``metadata.json`` checked by
:func:`fraudcore.artifacts.model_info` (feature fingerprint, sha256, thresholds), an
onnxruntime session with the worker's options (one thread, sequential) and the
probability of fraud read from the output the metadata names. ``tests/unit/
test_backtest.py`` checks that the scores are the worker's, row for row.

A model is named by its version directory (``models/475f35760321``), by a pointer file
(``models/current``, ``models/challenger``: the version it names, beside it) or by a
models directory holding a ``current`` pointer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, ModelInfo, model_info
from fraudcore.errors import ModelIntegrityError

__all__ = ["ServedModel", "load_served", "resolve"]

log = logging.getLogger(__name__)

#: Rows scored in one onnxruntime call (memory stays bounded on a long window).
CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class ServedModel:
    """A checked model: where it came from, what its metadata says, its session."""

    directory: Path
    info: ModelInfo
    session: ort.InferenceSession

    @property
    def version(self) -> str:
        return self.info.version

    def score(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """Fraud probabilities of a float32 matrix of feature vectors (the worker's
        ``Model.score``: the output the metadata names, its second column)."""
        output = self.session.run([self.info.output_name], {self.info.input_name: features})[0]
        return np.asarray(output[:, 1], dtype=np.float64)


def resolve(path: Path) -> Path:
    """The version directory that ``path`` names (see the module docstring)."""
    if path.is_file():
        return _pointed(path)
    if path.is_dir() and not (path / MODEL_FILE).exists() and (path / POINTER_FILE).is_file():
        return _pointed(path / POINTER_FILE)
    if not path.exists():
        raise ModelIntegrityError(
            f"no model at {path}: give a model version directory (models/<version>), a "
            "pointer (models/current) or a models directory; train one with `make train`"
        )
    return path


def _pointed(pointer: Path) -> Path:
    try:
        version = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{pointer} is not a pointer naming a model version") from exc
    if not version or "/" in version or version.startswith(".") or not version.isprintable():
        raise ModelIntegrityError(f"{pointer} does not name a model version: {version!r}")
    return pointer.parent / version


def _session(model_bytes: bytes) -> ort.InferenceSession:
    # The worker's options (service/model.py), so the scores are computed the same way.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def load_served(path: Path) -> ServedModel:
    """Load and check the model ``path`` names; :class:`ModelIntegrityError` (or
    :class:`~fraudcore.errors.FingerprintMismatch`) saying what is wrong, never
    onnxruntime's own exception."""
    directory = resolve(path)
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        model_bytes = (directory / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read the model in {directory}: {exc}") from exc
    info = model_info(metadata, model_bytes)
    try:
        session = _session(model_bytes)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are not one type
        raise ModelIntegrityError(
            f"{directory / MODEL_FILE} is not a model onnxruntime can load: {exc}"
        ) from exc
    model = ServedModel(directory, info, session)
    _test_score(model)
    log.info(
        "model %s from %s (review ≥ %.4g, decline ≥ %.4g)",
        model.version, directory, info.thresholds.review, info.thresholds.decline,
    )
    return model


def _test_score(model: ServedModel) -> None:
    """Score a few rows, as the worker does before it serves a model."""
    where = f"model {model.version} ({model.directory})"
    inputs = [i.name for i in model.session.get_inputs()]
    outputs = [o.name for o in model.session.get_outputs()]
    if model.info.input_name not in inputs or model.info.output_name not in outputs:
        raise ModelIntegrityError(
            f"{where}: its metadata names input {model.info.input_name!r} and output "
            f"{model.info.output_name!r}; the ONNX has inputs {inputs}, outputs {outputs}"
        )
    rows = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    rows[:, 0] = np.linspace(1.0, 5_000.0, 4)
    try:
        scores = model.score(rows)
    except Exception as exc:  # noqa: BLE001 - any failure here refuses the model
        raise ModelIntegrityError(f"{where} fails to score a test batch: {exc}") from exc
    if scores.shape != (4,) or not bool(np.all((scores >= 0.0) & (scores <= 1.0))):
        raise ModelIntegrityError(
            f"{where}: a test batch scored {scores.tolist()!r}, not 4 probabilities in [0, 1]"
        )
