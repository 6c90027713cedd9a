"""ONNX export ≈ scikit-learn, for every candidate type, and the shipped model matches this code;
the same for the contributions models of reason codes (training/reasons.py).

HistGradientBoosting is the case that broke under protobuf 7 (a bool in an int attribute,
see training/onnx_compat.py); its conversion here is the regression test for that fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE, REASONS_FILE, model_info
from training import reasons
from training.export import INPUT_NAME, PARITY_TOLERANCE, ParityError, check_parity, convert

ROOT = Path(__file__).resolve().parents[2]
N_FEATURES = 22
assert len(FEATURE_NAMES) == N_FEATURES  # the synthetic data has the model's width


def _data(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features on mixed scales (amounts, counts, rates) and a learnable label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 0] = rng.lognormal(3.0, 1.0, size=n)  # amounts
    X[:, 3:9] = rng.poisson(4.0, size=(n, 6))  # counts
    X[:, 1] = rng.integers(0, 2, size=n)  # a flag
    logit = 0.02 * (X[:, 0] - 20) + 1.5 * X[:, 10] - X[:, 17] + 0.5 * X[:, 1]
    y = (logit + rng.normal(scale=0.5, size=n) > 0.5).astype(np.int64)
    return X.astype(np.float32), y


def _fit(name: str, y: np.ndarray) -> Any:
    # One thread: OpenMP on a busy two-core machine makes these small fits slow and erratic.
    with threadpool_limits(limits=1):
        return CANDIDATES[name]().fit(X_TRAIN, y)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    with threadpool_limits(limits=1):  # predict_proba inside check_parity, too
        yield


X_TRAIN, Y_TRAIN = _data(0)
X_TEST, _ = _data(1, n=300)

CANDIDATES: dict[str, Callable[[], Any]] = {
    "logistic_regression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)
    ),
    "random_forest": lambda: RandomForestClassifier(
        n_estimators=15, max_depth=8, min_samples_leaf=3, random_state=0
    ),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=30,
        max_leaf_nodes=15,
        min_samples_leaf=10,
        early_stopping=False,
        random_state=0,
    ),
}


@pytest.fixture(scope="module", params=list(CANDIDATES))
def fitted(request: pytest.FixtureRequest) -> tuple[Any, bytes]:
    model = _fit(request.param, Y_TRAIN)
    return model, convert(model, N_FEATURES)


def test_converted_model_has_the_named_float32_input_and_probability_output(
    fitted: tuple[Any, bytes],
) -> None:
    _, model_bytes = fitted
    graph = onnx.load_from_string(model_bytes).graph
    assert [i.name for i in graph.input] == [INPUT_NAME] == ["features"]
    tensor = graph.input[0].type.tensor_type
    assert tensor.elem_type == onnx.TensorProto.FLOAT
    dims = tensor.shape.dim
    assert len(dims) == 2 and dims[1].dim_value == N_FEATURES and not dims[0].HasField("dim_value")
    outputs = [o.name for o in graph.output]
    assert "probabilities" in outputs
    probabilities = next(o for o in graph.output if o.name == "probabilities")
    # zipmap off: a plain float tensor, not a sequence of maps
    assert probabilities.type.WhichOneof("value") == "tensor_type"
    assert probabilities.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_the_same_model_converts_to_the_same_bytes(fitted: tuple[Any, bytes]) -> None:
    """The version is the bytes' sha256: exporting a model again must not change it (skl2onnx
    names the graph with a random UUID unless told otherwise)."""
    model, model_bytes = fitted
    assert convert(model, N_FEATURES) == model_bytes
    assert onnx.load_from_string(model_bytes).graph.name == "fraud_model"


def test_parity_with_scikit_learn(fitted: tuple[Any, bytes]) -> None:
    model, model_bytes = fitted
    worst = check_parity(model_bytes, model, X_TEST)
    assert 0.0 <= worst <= PARITY_TOLERANCE <= 1e-5
    # The same check by hand, on the named output rather than by position.
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    onnx_proba = session.run(["probabilities"], {"features": X_TEST})[0]
    assert onnx_proba.shape == (len(X_TEST), 2)
    np.testing.assert_allclose(
        onnx_proba[:, 1], model.predict_proba(X_TEST)[:, 1], rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(onnx_proba.sum(axis=1), 1.0, atol=1e-5)


def test_reasons_model_has_the_same_input_and_one_contribution_per_feature(
    fitted: tuple[Any, bytes],
) -> None:
    model, _ = fitted
    built = reasons.build(model, N_FEATURES)
    graph = onnx.load_from_string(built.onnx).graph
    onnx.checker.check_model(onnx.load_from_string(built.onnx), full_check=True)
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in graph.output] == [reasons.OUTPUT_NAME] == ["contributions"]
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 2 and dims[1].dim_value == N_FEATURES
        assert not dims[0].HasField("dim_value")
    worst = reasons.check_faithfulness(built, model, X_TEST)
    assert 0.0 <= worst <= reasons.FAITHFULNESS_TOLERANCE


def test_parity_fails_when_the_bytes_belong_to_another_model() -> None:
    model = _fit("logistic_regression", Y_TRAIN)
    other = _fit("logistic_regression", 1 - Y_TRAIN)  # the opposite scores
    with pytest.raises(ParityError, match="nothing was written") as info:
        check_parity(convert(other, N_FEATURES), model, X_TEST)
    assert "300 rows" in str(info.value)


def test_parity_fails_between_two_model_types() -> None:
    forest = _fit("random_forest", Y_TRAIN)
    boosting = _fit("hist_gradient_boosting", Y_TRAIN)
    with pytest.raises(ParityError):
        check_parity(convert(boosting, N_FEATURES), forest, X_TEST)


# --- the shipped model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> tuple[str, dict[str, Any], bytes]:
    models = ROOT / "models"
    version = (models / POINTER_FILE).read_text().strip()
    assert version, "models/current is empty"
    directory = models / version
    assert directory.is_dir(), f"models/current names {version!r}, which is not a folder in models/"
    metadata = json.loads((directory / METADATA_FILE).read_text())
    return version, metadata, (directory / MODEL_FILE).read_bytes()


def test_shipped_model_matches_this_code(shipped: tuple[str, dict[str, Any], bytes]) -> None:
    version, metadata, model_bytes = shipped
    # Raises FingerprintMismatch / ModelIntegrityError with what to do (make train).
    info = model_info(metadata, model_bytes)
    assert info.version == version
    assert info.sha256.startswith(version)
    assert info.input_name == "features"
    assert info.output_name == "probabilities"
    assert 0.0 <= info.thresholds.review <= info.thresholds.decline <= 1.0


def test_shipped_model_scores_a_zero_vector(shipped: tuple[str, dict[str, Any], bytes]) -> None:
    _, metadata, model_bytes = shipped
    info = model_info(metadata, model_bytes)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [info.input_name]
    assert session.get_inputs()[0].type == "tensor(float)"
    rows = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    proba = session.run([info.output_name], {info.input_name: rows})[0]
    assert proba.shape == (3, 2)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(proba[0], proba[1])  # deterministic


def test_shipped_reasons_match_the_shipped_model(
    shipped: tuple[str, dict[str, Any], bytes],
) -> None:
    version, metadata, model_bytes = shipped
    reasons_bytes = (ROOT / "models" / version / REASONS_FILE).read_bytes()
    info = model_info(metadata, model_bytes, reasons_bytes=reasons_bytes)
    assert info.reasons is not None
    session = ort.InferenceSession(reasons_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [info.reasons.input_name] == ["features"]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert [o.name for o in session.get_outputs()] == [info.reasons.output_name]
    rows = np.zeros((3, N_FEATURES), dtype=np.float32)
    rows[:, 0] = [5.0, 50.0, 500.0]
    found = session.run([info.reasons.output_name], {info.reasons.input_name: rows})[0]
    assert found.shape == rows.shape
    model = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    proba = model.run([info.output_name], {info.input_name: rows})[0][:, 1].astype(np.float64)
    total = found.astype(np.float64).sum(axis=1) + info.reasons.base_value
    if info.reasons.output == "log_odds":  # boosting and linear models: in the logit's space
        total = 1.0 / (1.0 + np.exp(-total))
    np.testing.assert_allclose(total, proba, rtol=0, atol=1e-5)
