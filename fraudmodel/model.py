"""The model artifact as it is served: ``models/<version>/`` loaded, checked and scored.

What the worker serves and what training's backtest scores with are one and the same code
(``service`` and ``training`` both import this package; neither imports the other):

- :func:`load_model` reads ``model.onnx`` and ``metadata.json``, checks them with
  :func:`fraudcore.artifacts.model_info` (feature fingerprint, sha256, thresholds), opens an
  onnxruntime :func:`session` with the worker's options, scores a test batch, and loads
  what explains the scores (:mod:`fraudmodel.reasons`), refusing the model with
  :class:`~fraudcore.errors.ModelIntegrityError` saying what is wrong, whatever it is;
- :func:`current_version` reads a pointer (``models/current``, ``models/challenger``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, ModelInfo, model_info
from fraudcore.errors import ModelIntegrityError
from fraudmodel.reasons import Explainer, load_explainer
from fraudmodel.runtime import loaded_session

__all__ = ["Model", "current_version", "load_current", "load_model"]


@dataclass(frozen=True)
class Model:
    info: ModelInfo
    session: ort.InferenceSession
    explainer: Explainer | None = None  # None: the artifact carries no reasons

    @property
    def version(self) -> str:
        return self.info.version

    def score(self, features: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float32 matrix of feature vectors, in one call."""
        output = self.session.run([self.info.output_name], {self.info.input_name: features})[0]
        return np.asarray(output[:, 1], dtype=np.float64)


#: Rows of the test batch every model scores before it serves.
_TEST_ROWS = 4


def load_model(directory: Path) -> Model:
    """Load and check the model in ``directory`` (``model.onnx`` + ``metadata.json``).

    Raises :class:`~fraudcore.errors.ModelIntegrityError` saying what is wrong, whatever
    is wrong with the files (never onnxruntime's own exception)."""
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        model_bytes = (directory / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read the model in {directory}: {exc}") from exc
    info = model_info(metadata, model_bytes)
    loaded = loaded_session(model_bytes, directory / MODEL_FILE)
    model = Model(info, loaded)
    _test_score(model, directory)
    # What explains its scores travels with it: checked now, or the model is refused.
    return Model(info, loaded, load_explainer(directory, info, score=model.score))


def _test_score(model: Model, directory: Path) -> None:
    """Score a test batch as it will be scored; refuse the model if that fails or if what it
    answers is not one probability per row."""
    inputs = [i.name for i in model.session.get_inputs()]
    outputs = [o.name for o in model.session.get_outputs()]
    where = f"model {model.version} ({directory})"
    if model.info.input_name not in inputs:
        raise ModelIntegrityError(
            f"{where}: its metadata names input {model.info.input_name!r}, the ONNX has {inputs}"
        )
    if model.info.output_name not in outputs:
        raise ModelIntegrityError(
            f"{where}: its metadata names output {model.info.output_name!r}, the ONNX has "
            f"{outputs}"
        )
    rows = np.zeros((_TEST_ROWS, len(FEATURE_NAMES)), dtype=np.float32)
    rows[:, 0] = np.linspace(1.0, 5_000.0, _TEST_ROWS)  # a few amounts, the rest at zero
    try:
        scores = model.score(rows)
    except Exception as exc:  # noqa: BLE001 - any failure here refuses the model
        raise ModelIntegrityError(f"{where} fails to score a test batch: {exc}") from exc
    if scores.shape != (_TEST_ROWS,) or not bool(np.all((scores >= 0.0) & (scores <= 1.0))):
        raise ModelIntegrityError(
            f"{where}: a test batch of {_TEST_ROWS} rows scored {scores.tolist()!r}, not "
            f"{_TEST_ROWS} probabilities in [0, 1]"
        )


def current_version(model_dir: Path, pointer_file: str = POINTER_FILE) -> str:
    """The version named by ``model_dir/current`` (or another pointer there)."""
    pointer = model_dir / pointer_file
    try:
        version = pointer.read_text().strip()
    except UnicodeDecodeError as exc:
        raise ModelIntegrityError(f"{pointer} is not text naming a model version") from exc
    except OSError as exc:
        raise ModelIntegrityError(
            f"no model pointer at {pointer}; train one with `make train`"
        ) from exc
    if not version or "/" in version or version.startswith(".") or not version.isprintable():
        raise ModelIntegrityError(f"{pointer} does not name a model version: {version!r}")
    return version


def load_current(model_dir: Path) -> Model:
    return load_model(model_dir / current_version(model_dir))


