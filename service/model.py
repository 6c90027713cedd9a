"""The model the worker serves, named by ``models/current``, and the challenger scored in
its shadow, named by ``models/challenger`` (loading and checking one:
:func:`fraudmodel.load_model`).

:class:`ModelHolder` watches both pointers; a new model is loaded, checked and swapped in
between two batches, so no event is lost or scored twice by the change. A model that fails
its checks is refused and the old one keeps serving (for the challenger: the old
challenger, or none). The challenger never decides: a worker starts without one when it is
refused, and removing the pointer stops the shadow. Promoting it is moving ``current``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE
from fraudcore.errors import ModelError
from fraudmodel import Model, current_version, load_current, load_model

__all__ = [
    "CHALLENGER_FILE",
    "Model",
    "ModelHolder",
    "Refusal",
    "current_version",
    "load_current",
    "load_model",
]

#: The pointer naming the challenger, beside ``current``; no file: no challenger.
CHALLENGER_FILE = "challenger"

log = logging.getLogger(__name__)


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
