"""The model in service while ``models/current`` changes (service/model.py, README "How it
works"): a new current model is swapped in; a bad one, or a pointer that cannot be read,
is refused and the old model keeps serving. Real model files in a temporary copy of
``models/``, the real onnxruntime."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fraudcore import FEATURE_NAMES, fingerprint
from service.model import ModelHolder
from training import export

ROOT = Path(__file__).resolve().parents[2]
ROWS = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(ROOT / "models", copy)
    return copy


def _current(models: Path) -> str:
    return (models / "current").read_text().strip()


def _another_model(models: Path, *, point: bool = True) -> str:
    """A second valid model (another version) written beside the current one; with
    ``point`` False, ``current`` is put back on the old one."""
    old = _current(models)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    fitted = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    onnx = export.convert(fitted, len(FEATURE_NAMES))
    metadata = json.loads((models / old / "metadata.json").read_text())
    metadata["features"]["fingerprint"] = fingerprint()
    metadata.pop("reasons", None)  # no contributions file for this one
    new = export.write_artifacts(models, onnx, metadata).name
    if not point:
        (models / "current").write_text(f"{old}\n")
    return new


def _serves(holder: ModelHolder, version: str) -> None:
    assert holder.model.version == version
    scores = holder.model.score(ROWS)  # and it still scores
    assert scores.shape == (3,) and bool(np.all((scores >= 0) & (scores <= 1)))


def test_a_new_current_model_replaces_the_old_one(models: Path) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    new = _another_model(models)
    assert new != old
    assert holder.refresh() is True
    _serves(holder, new)
    assert holder.refused is None
    assert holder.refresh() is False  # nothing moved since


@pytest.mark.parametrize(
    "pointer",
    [None, "", "   \n", "../elsewhere", ".hidden", "a/b", b"\xff\xfe half-written",
     b"abc\x00def", b"\x00"],
    ids=["missing", "empty", "blank", "parent", "dot", "slash", "not-utf8", "nul-inside",
         "nul"],
)
def test_an_unreadable_pointer_keeps_the_old_model(
    models: Path, pointer: str | bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    path = models / "current"
    if pointer is None:
        path.unlink()
    elif isinstance(pointer, bytes):
        path.write_bytes(pointer)
    else:
        path.write_text(pointer)
    with caplog.at_level(logging.WARNING, logger="service.model"):
        assert holder.refresh() is False
    _serves(holder, old)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"model pointer unreadable, keeping {old}: ")
    assert holder.refused is None  # no model was tried: nothing refused


def test_a_pointer_that_is_a_directory_keeps_the_old_model(models: Path) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    (models / "current").unlink()
    (models / "current").mkdir()
    assert holder.refresh() is False
    _serves(holder, old)


def _truncate_onnx(directory: Path) -> None:
    """The ONNX file cut short, its hash in the metadata updated (so it passes that check
    and fails onnxruntime's)."""
    cut = (directory / "model.onnx").read_bytes()[:400]
    (directory / "model.onnx").write_bytes(cut)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["model"]["sha256"] = hashlib.sha256(cut).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(metadata))


def _append_a_byte(directory: Path) -> None:
    with (directory / "model.onnx").open("ab") as f:
        f.write(b"\0")


def _edit_metadata(directory: Path, path: tuple[str, ...], value: object) -> None:
    metadata = json.loads((directory / "metadata.json").read_text())
    node = metadata
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (directory / "metadata.json").write_text(json.dumps(metadata))


BREAKS = {
    # what is wrong with the new model -> a word of the refusal's reason
    "bytes-changed": (_append_a_byte, "sha256"),
    "not-onnx": (_truncate_onnx, "onnxruntime can load"),
    "other-fingerprint": (
        lambda d: _edit_metadata(d, ("features", "fingerprint"), "0000000000000000"),
        "0000000000000000",
    ),
    "no-such-output": (
        lambda d: _edit_metadata(d, ("model", "output_name"), "no-such-output"),
        "no-such-output",
    ),
    "no-metadata": (lambda d: (d / "metadata.json").unlink(), "cannot read"),
    "no-directory": (lambda d: shutil.rmtree(d), "cannot read"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_bad_new_model_is_refused_and_the_old_one_keeps_serving(
    models: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    new = _another_model(models)
    damage, reason = BREAKS[kind]
    damage(models / new)
    with caplog.at_level(logging.ERROR, logger="service.model"):
        assert holder.refresh() is False
    _serves(holder, old)
    refused = holder.refused
    assert refused is not None and refused.version == new
    assert reason in refused.reason, refused.reason
    assert f"refused model {new}, keeping {old}" in caplog.text
    # Not tried again while its files stay as they are (one refusal logged, not one a poll).
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="service.model"):
        assert holder.refresh() is False
    assert caplog.records == []
    _serves(holder, old)


def test_a_refused_model_is_taken_once_its_files_are_fixed(models: Path) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    new = _another_model(models)
    good = (models / new / "model.onnx").read_bytes()
    (models / new / "model.onnx").write_bytes(good + b"\0")
    assert holder.refresh() is False and holder.model.version == old
    (models / new / "model.onnx").write_bytes(good)  # fixed in place (size changes back)
    assert holder.refresh() is True
    _serves(holder, new)


def test_pointing_back_at_the_old_model_after_a_refusal_changes_nothing(models: Path) -> None:
    holder = ModelHolder(models)
    old = holder.model.version
    new = _another_model(models)
    _edit_metadata(models / new, ("model", "input_name"), "nope")
    assert holder.refresh() is False
    (models / "current").write_text(f"{old}\n")
    assert holder.refresh() is False
    _serves(holder, old)
    assert holder.refused is not None and holder.refused.version == new  # still shown
