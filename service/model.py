"""The ONNX model the worker serves, loaded from ``models/current`` and checked first.

:class:`ModelHolder` watches the pointer; a new current model is loaded, checked and
swapped in between two batches, so no event is lost or scored twice by the change. A
model that fails its checks is refused and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, ModelInfo, model_info
from fraudcore.errors import ModelError, ModelIntegrityError

__all__ = ["Model", "ModelHolder", "Refusal", "load_current", "load_model"]

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
    try:
        session = _session(model_bytes)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are not one type
        raise ModelIntegrityError(
            f"{directory / MODEL_FILE} is not a model onnxruntime can load: {exc}"
        ) from exc
    model = Model(info, session)
    _test_score(model, directory)
    return model


def _test_score(model: Model, directory: Path) -> None:
    """Score a test batch as the worker will; refuse the model if that fails or if what it
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


@dataclass(frozen=True)
class Refusal:
    """A model version that was refused, why, and when (epoch seconds)."""

    version: str
    reason: str
    at: float


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What identifies a model directory's files as they are now (name, size, mtime)."""
    found = []
    for name in (MODEL_FILE, METADATA_FILE):
        try:
            stat = (directory / name).stat()
        except OSError:
            continue
        found.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


class ModelHolder:
    """The model in service, and the check for a newer one."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.model = load_current(model_dir)
        self.refused: Refusal | None = None  # the last refusal, for /health and /metrics
        self._refused_files: tuple[str, tuple[tuple[str, int, int], ...]] | None = None
        log.info("serving model %s", self.model.version)

    def refresh(self) -> bool:
        """Swap in the current model if the pointer moved; ``True`` when it did.

        A version refused before is tried again only once its files changed."""
        try:
            version = current_version(self.model_dir)
        except ModelError as exc:
            log.warning("model pointer unreadable, keeping %s: %s", self.model.version, exc)
            return False
        if version == self.model.version:
            return False
        files = (version, _signature(self.model_dir / version))
        if files == self._refused_files:
            return False
        try:
            model = load_model(self.model_dir / version)
        except ModelError as exc:
            self._refused_files = files
            self.refused = Refusal(version, str(exc), time.time())
            log.error("refused model %s, keeping %s: %s", version, self.model.version, exc)
            return False
        log.info("model %s replaces %s", model.version, self.model.version)
        self.model = model
        return True
