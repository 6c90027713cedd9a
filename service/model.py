"""The ONNX model the worker serves, loaded from ``models/current`` and checked first.

:class:`ModelHolder` watches the pointer; a new current model is loaded, checked and
swapped in between two batches, so no event is lost or scored twice by the change. A
model that fails its checks is refused and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, ModelInfo, model_info
from fraudcore.errors import ModelError, ModelIntegrityError

__all__ = ["Model", "ModelHolder", "load_current", "load_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    info: ModelInfo
    session: ort.InferenceSession

    @property
    def version(self) -> str:
        return self.info.version

    def score(self, features: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float32 matrix of feature vectors, in one call."""
        output = self.session.run([self.info.output_name], {self.info.input_name: features})[0]
        return np.asarray(output[:, 1], dtype=np.float64)


def _session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # The worker shares two cores with the broker and Redis: one thread, no spinning.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def load_model(directory: Path) -> Model:
    """Load and check the model in ``directory`` (``model.onnx`` + ``metadata.json``)."""
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        model_bytes = (directory / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read the model in {directory}: {exc}") from exc
    info = model_info(metadata, model_bytes)
    return Model(info, _session(model_bytes))


def current_version(model_dir: Path) -> str:
    """The version named by ``model_dir/current``."""
    pointer = model_dir / POINTER_FILE
    try:
        version = pointer.read_text().strip()
    except OSError as exc:
        raise ModelIntegrityError(
            f"no model pointer at {pointer}; train one with `make train`"
        ) from exc
    if not version or "/" in version or version.startswith("."):
        raise ModelIntegrityError(f"{pointer} does not name a model version: {version!r}")
    return version


def load_current(model_dir: Path) -> Model:
    return load_model(model_dir / current_version(model_dir))


class ModelHolder:
    """The model in service, and the check for a newer one."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.model = load_current(model_dir)
        self._refused: str | None = None
        log.info("serving model %s", self.model.version)

    def refresh(self) -> bool:
        """Swap in the current model if the pointer moved; ``True`` when it did."""
        try:
            version = current_version(self.model_dir)
        except ModelError as exc:
            log.warning("model pointer unreadable, keeping %s: %s", self.model.version, exc)
            return False
        if version in (self.model.version, self._refused):
            return False
        try:
            model = load_model(self.model_dir / version)
        except ModelError as exc:
            self._refused = version
            log.error("refused model %s, keeping %s: %s", version, self.model.version, exc)
            return False
        log.info("model %s replaces %s", model.version, self.model.version)
        self.model = model
        return True
