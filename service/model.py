"""The ONNX model the worker serves, loaded from ``models/current`` and checked first, and
the challenger scored in its shadow, named by ``models/challenger``.

:class:`ModelHolder` watches both pointers; a new model is loaded, checked and swapped in
between two batches, so no event is lost or scored twice by the change. A model that fails
its checks is refused and the old one keeps serving (for the challenger: the old
challenger, or none). The challenger never decides: a worker starts without one when it is
refused, and removing the pointer stops the shadow. Promoting it is moving ``current``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, ModelInfo, model_info
from fraudcore.errors import ModelError, ModelIntegrityError
from service.reasons import load_explainer

__all__ = ["CHALLENGER_FILE", "Model", "ModelHolder", "Refusal", "load_current", "load_model"]

#: The pointer naming the challenger, beside ``current``; no file: no challenger.
CHALLENGER_FILE = "challenger"

log = logging.getLogger(__name__)


class Explainer(Protocol):
    """What explains a model's scores (:mod:`service.reasons`)."""

    def explain(self, rows: np.ndarray) -> np.ndarray:
        """Each feature's contribution to each row's output, shape ``(rows, features)``."""
        ...


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
    # What explains its scores travels with it: checked now, or the model is refused.
    return Model(info, session, load_explainer(directory, info, score=model.score))


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


class _Slot:
    """One pointer and the model it names, with the memory of what was refused."""

    def __init__(self, model_dir: Path, pointer_file: str, role: str) -> None:
        self.model_dir = model_dir
        self.pointer_file = pointer_file
        self.role = role  # "model" or "challenger", for the log
        self.refused: Refusal | None = None  # the last refusal, for /health and /metrics
        self._refused_files: tuple[str, tuple[tuple[str, int, int], ...]] | None = None

    def load(self, version: str, keeping: str) -> Model | None:
        """The model ``version`` checked, or ``None`` if refused (``keeping``: what serves
        instead, for the log). A version refused before is tried again only once its files
        changed."""
        files = (version, _signature(self.model_dir / version))
        if files == self._refused_files:
            return None
        try:
            model = load_model(self.model_dir / version)
        except ModelError as exc:
            self._refused_files = files
            self.refused = Refusal(version, str(exc), time.time())
            log.error("refused %s %s, keeping %s: %s", self.role, version, keeping, exc)
            return None
        return model


class ModelHolder:
    """The model in service and the challenger, and the check for newer ones."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.model = load_current(model_dir)
        self._current = _Slot(model_dir, POINTER_FILE, "model")
        self._challenger = _Slot(model_dir, CHALLENGER_FILE, "challenger")
        self.challenger: Model | None = None  # scored in the shadow of the model
        log.info("serving model %s", self.model.version)
        self._refresh_challenger()

    @property
    def refused(self) -> Refusal | None:
        """The last model refused as current."""
        return self._current.refused

    @property
    def challenger_refused(self) -> Refusal | None:
        """The last model refused as challenger."""
        return self._challenger.refused

    def refresh(self) -> bool:
        """Swap in the current model if the pointer moved; ``True`` when it did. The
        challenger's pointer is read too (:attr:`challenger`)."""
        self._refresh_challenger()
        try:
            version = current_version(self.model_dir)
        except ModelError as exc:
            log.warning("model pointer unreadable, keeping %s: %s", self.model.version, exc)
            return False
        if version == self.model.version:
            return False
        model = self._current.load(version, keeping=self.model.version)
        if model is None:
            return False
        log.info("model %s replaces %s", model.version, self.model.version)
        self.model = model
        return True

    def _refresh_challenger(self) -> None:
        serving = self.challenger.version if self.challenger is not None else "no challenger"
        if not (self.model_dir / CHALLENGER_FILE).exists():
            if self.challenger is not None:
                log.info("challenger %s removed: no shadow scores", serving)
            self.challenger = None
            self._challenger.refused = None  # nothing asked for: nothing refused
            return
        try:
            version = current_version(self.model_dir, CHALLENGER_FILE)
        except ModelError as exc:
            log.warning("challenger pointer unreadable, keeping %s: %s", serving, exc)
            return
        if self.challenger is not None and version == self.challenger.version:
            return
        model = self._challenger.load(version, keeping=serving)
        if model is not None:
            log.info("challenger %s replaces %s, scored in the shadow of model %s",
                     model.version, serving, self.model.version)
            self.challenger, self._challenger.refused = model, None
