"""Reason codes: the contributions models add up to scikit-learn's output for every
candidate kind, say which feature did it, travel in the artifact and are checked at load;
top_reasons picks a decision's reasons."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits

from fraudcore import FEATURE_NAMES, fingerprint
from fraudcore.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    POINTER_FILE,
    REASONS_FILE,
    ReasonsDescription,
    check_reasons,
    model_info,
)
from fraudcore.errors import ModelIntegrityError
from fraudmodel.reasons import CHECK_TOLERANCE, Explainer, load_explainer, top_reasons
from training import export, generator, reasons
from training.dataset import normalise
from training.replay import replay
from training.train import features_of

ROOT = Path(__file__).resolve().parents[2]
N = len(FEATURE_NAMES)


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features on mixed scales and a label learnt from a few of them (as in
    tests/contract/test_onnx_export.py); features 20 and 21 are constant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N))
    x[:, 0] = rng.lognormal(3.0, 1.0, size=n)
    x[:, 3:9] = rng.poisson(4.0, size=(n, 6))
    x[:, 1] = rng.integers(0, 2, size=n)
    x[:, 20:] = 1.0
    logit = 0.02 * (x[:, 0] - 20) + 1.5 * x[:, 10] - x[:, 17] + 0.5 * x[:, 1]
    y = (logit + rng.normal(scale=0.5, size=n) > 0.5).astype(np.int64)
    return x.astype(np.float32), y


X_TRAIN, Y_TRAIN = _data(0, 600)
X_TEST, _ = _data(1, 300)

KINDS: dict[str, Callable[[], Any]] = {
    "logistic_regression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)
    ),
    "random_forest": lambda: RandomForestClassifier(
        n_estimators=10, max_depth=None, min_samples_leaf=3, random_state=0
    ),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
        learning_rate=0.1, max_iter=30, max_leaf_nodes=7, min_samples_leaf=10,
        class_weight={0: 1, 1: 20}, early_stopping=False, random_state=0,
    ),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


def _fit(make: Callable[[], Any], x: np.ndarray = X_TRAIN, y: np.ndarray = Y_TRAIN) -> Any:
    with threadpool_limits(limits=1):
        return make().fit(x, y)


@pytest.fixture(scope="module", params=list(KINDS))
def explained(request: pytest.FixtureRequest) -> tuple[str, Any, reasons.ReasonsModel]:
    model = _fit(KINDS[request.param])
    return request.param, model, reasons.build(model, N)


# --- faithfulness -------------------------------------------------------------------------


def test_contributions_add_up_to_scikit_learns_output(
    explained: tuple[str, Any, reasons.ReasonsModel],
) -> None:
    kind, model, built = explained
    assert (built.method, built.output) == {
        "logistic_regression": ("linear", "log_odds"),
        "random_forest": ("path_contributions", "probability"),
        "hist_gradient_boosting": ("path_contributions", "log_odds"),
    }[kind]
    worst = reasons.check_faithfulness(built, model, X_TEST)
    found = reasons.contributions(built, X_TEST)
    assert found.shape == X_TEST.shape
    expected = (
        model.predict_proba(X_TEST)[:, 1]
        if built.output == "probability"
        else model.decision_function(X_TEST)
    )
    total = found.astype(np.float64).sum(axis=1) + built.base_value
    assert worst == pytest.approx(float(np.max(np.abs(total - expected))), abs=1e-12)
    # 1e-5 absolute holds for all three on this data (the float32 logistic regression's
    # own rounding is 1e-6 here; see test_the_linear_allowance_is_the_models_own_rounding).
    np.testing.assert_allclose(total, expected, rtol=0, atol=reasons.FAITHFULNESS_TOLERANCE)
    assert np.all(found[:, 20:] == 0.0)  # constant features never explain anything


@pytest.mark.parametrize("kind", ["random_forest", "hist_gradient_boosting"])
def test_tree_contributions_hold_for_missing_values_too(kind: str) -> None:
    model = _fit(KINDS[kind])
    built = reasons.build(model, N)
    x = X_TEST.copy()
    x[::3, 10] = np.nan
    x[1::4, 0] = np.nan
    assert reasons.check_faithfulness(built, model, x) <= reasons.FAITHFULNESS_TOLERANCE


def test_forest_contributions_are_the_path_changes_of_each_tree() -> None:
    """Saabas from its definition, with scikit-learn's decision_path: each split credits
    the change of the fraud fraction to its feature, averaged over the trees."""
    forest = _fit(KINDS["random_forest"])
    rows = X_TEST[:25]
    expected = np.zeros((len(rows), N))
    for tree in forest.estimators_:
        fraction = tree.tree_.value[:, 0, 1] / tree.tree_.value[:, 0, :].sum(axis=1)
        paths = tree.decision_path(rows)
        for r in range(len(rows)):
            nodes = paths.indices[paths.indptr[r]:paths.indptr[r + 1]]
            for parent, child in zip(nodes[:-1], nodes[1:], strict=True):
                expected[r, tree.tree_.feature[parent]] += fraction[child] - fraction[parent]
    expected /= len(forest.estimators_)
    built = reasons.build(forest, N)
    np.testing.assert_allclose(reasons.contributions(built, rows), expected, rtol=0, atol=1e-7)
    roots = [t.tree_.value[0, 0, 1] / t.tree_.value[0, 0, :].sum() for t in forest.estimators_]
    assert built.base_value == pytest.approx(float(np.mean(roots)), abs=1e-15)


def test_a_boosting_stump_credits_its_feature_with_the_leaf_minus_the_mean() -> None:
    """One split: the split feature gets the leaf's value minus the tree's mean over its
    training rows; the base is the baseline plus that mean."""
    stump = _fit(lambda: HistGradientBoostingClassifier(
        max_iter=1, max_leaf_nodes=2, early_stopping=False, random_state=0
    ))
    nodes = stump._predictors[0][0].nodes
    root, left, right = nodes[0], nodes[nodes[0]["left"]], nodes[nodes[0]["right"]]
    mean = (left["value"] * left["count"] + right["value"] * right["count"]) / root["count"]
    built = reasons.build(stump, N)
    baseline = float(stump._baseline_prediction.ravel()[0])
    assert built.base_value == pytest.approx(baseline + mean, abs=1e-12)
    found = reasons.contributions(built, X_TEST)
    feature = int(root["feature_idx"])
    goes_left = X_TEST[:, feature].astype(np.float64) <= root["num_threshold"]
    expected = np.where(goes_left, left["value"], right["value"]) - mean
    np.testing.assert_allclose(found[:, feature], expected, rtol=0, atol=1e-7)
    assert np.all(np.delete(found, feature, axis=1) == 0.0)


def test_linear_contributions_are_exactly_the_terms_of_the_decision_function() -> None:
    pipeline = _fit(KINDS["logistic_regression"])
    scaler, logistic = pipeline.steps[0][1], pipeline.steps[1][1]
    built = reasons.build(pipeline, N)
    found = reasons.contributions(built, X_TEST)
    assert found.dtype == np.float64  # no float32 rounding on the way out
    terms = scaler.transform(X_TEST).astype(np.float64) * logistic.coef_[0].astype(np.float64)
    np.testing.assert_array_equal(found, terms)
    assert built.base_value == float(logistic.intercept_[0])
    # A model that computes in double: the sum is its output but for the order of additions.
    exact = _fit(KINDS["logistic_regression"], X_TRAIN.astype(np.float64))
    built = reasons.build(exact, N)
    total = reasons.contributions(built, X_TEST).sum(axis=1) + built.base_value
    np.testing.assert_allclose(total, exact.decision_function(X_TEST), rtol=0, atol=1e-12)
    bare = _fit(lambda: LogisticRegression(max_iter=2000))  # no scaler: w * x
    found = reasons.contributions(reasons.build(bare, N), X_TEST)
    np.testing.assert_array_equal(found, X_TEST.astype(np.float64) * bare.coef_[0])


def test_the_linear_allowance_is_the_models_own_rounding() -> None:
    """A float32 logistic regression sums in float32: logits near 100 carry ~1e-5 of its
    own rounding, which the check allows (and no more); a float64 one gets 1e-5 flat."""
    x, y = _data(0, 20_000)
    model = _fit(KINDS["logistic_regression"], x, y)
    x, _ = _data(1, 20_000)
    assert model.steps[-1][1].coef_.dtype == np.float32
    built = reasons.build(model, N)
    found = reasons.contributions(built, x)
    allowed = reasons.allowed_difference(built, model, found)
    size = np.abs(found).sum(axis=1) + abs(built.base_value)
    gamma = 23 * 2.0**-24 / (1 - 23 * 2.0**-24)
    np.testing.assert_allclose(allowed, 1e-5 + gamma * size, rtol=1e-12)
    difference = np.abs(found.sum(axis=1) + built.base_value - model.decision_function(x))
    assert difference.max() > 1e-5  # 1e-5 flat would refuse this faithful model
    assert np.all(difference <= allowed)
    assert reasons.check_faithfulness(built, model, x) == pytest.approx(difference.max())
    exact = _fit(KINDS["logistic_regression"], x.astype(np.float64), y)  # float64 coefficients
    assert np.all(reasons.allowed_difference(built, exact, found) == 1e-5)


def test_contributions_of_another_model_are_refused() -> None:
    model = _fit(KINDS["random_forest"])
    other = reasons.build(_fit(KINDS["random_forest"], y=1 - Y_TRAIN), N)
    with pytest.raises(reasons.FaithfulnessError, match="nothing was written") as info:
        reasons.check_faithfulness(other, model, X_TEST)
    assert "of 300 (allowed 1.00e-05)" in str(info.value)
    moved = dataclasses.replace(reasons.build(model, N), base_value=0.5)
    with pytest.raises(reasons.FaithfulnessError, match="base value 0.5"):
        reasons.check_faithfulness(moved, model, X_TEST)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (GaussianNB, "GaussianNB"),
        (lambda: make_pipeline(MinMaxScaler(), LogisticRegression()), "MinMaxScaler"),
    ],
)
def test_a_model_of_another_kind_is_not_explained(make: Callable[[], Any], what: str) -> None:
    with pytest.raises(reasons.UnexplainableModel, match=what):
        reasons.build(_fit(make), N)


def test_a_three_class_model_is_not_explained() -> None:
    y = np.arange(len(X_TRAIN)) % 3
    with pytest.raises(reasons.UnexplainableModel, match=r"classes \[0, 1, 2\]"):
        reasons.build(_fit(lambda: LogisticRegression(max_iter=5000), y=y), N)


# --- the artifact and the service's load --------------------------------------------------


def _metadata(model_bytes: bytes, description: ReasonsDescription | None) -> dict[str, Any]:
    sha = hashlib.sha256(model_bytes).hexdigest()
    meta: dict[str, Any] = {
        "version": sha[:12],
        "model": {"sha256": sha, "input_name": "features", "output_name": "probabilities"},
        "features": {"fingerprint": fingerprint(), "names": list(FEATURE_NAMES)},
        "thresholds": {"review": 0.4, "decline": 0.9},
    }
    if description is not None:
        meta["reasons"] = {**dataclasses.asdict(description), "features": FEATURE_NAMES}
    return meta


def _write(directory: Path, model: Any, *, with_reasons: bool = True) -> Path:
    model_bytes = export.convert(model, N)
    built = reasons.build(model, N)
    description = reasons.describe(
        built, features=FEATURE_NAMES,
        faithfulness=reasons.check_faithfulness(built, model, X_TEST),
    )
    metadata = _metadata(model_bytes, description)
    return export.write_artifacts(
        directory, model_bytes, metadata, reasons=built.onnx if with_reasons else None
    )


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("models"), _fit(KINDS["random_forest"]))


def _info(directory: Path) -> Any:
    metadata = json.loads((directory / METADATA_FILE).read_text())
    return model_info(metadata, (directory / MODEL_FILE).read_bytes())


def test_the_artifact_carries_the_checked_reasons(forest_dir: Path) -> None:
    info = _info(forest_dir)
    assert info.reasons is not None
    content = (forest_dir / REASONS_FILE).read_bytes()
    assert info.reasons.file == REASONS_FILE
    assert info.reasons.sha256 == hashlib.sha256(content).hexdigest()
    assert (info.reasons.method, info.reasons.output) == ("path_contributions", "probability")
    assert info.reasons.features == FEATURE_NAMES
    assert 0 <= info.reasons.faithfulness_max_abs_diff <= 1e-5
    metadata = json.loads((forest_dir / METADATA_FILE).read_text())
    model_bytes = (forest_dir / MODEL_FILE).read_bytes()
    assert model_info(metadata, model_bytes, reasons_bytes=content).reasons == info.reasons


def test_the_explainer_adds_up_to_the_served_score(forest_dir: Path) -> None:
    info = _info(forest_dir)
    explainer = load_explainer(forest_dir, info)
    assert isinstance(explainer, Explainer) and explainer.output == "probability"
    found = explainer.explain(X_TEST)
    assert found.shape == X_TEST.shape and found.dtype == np.float64
    model = _fit(KINDS["random_forest"])  # the same seed: the same forest
    np.testing.assert_allclose(
        explainer.totals(found), model.predict_proba(X_TEST)[:, 1], rtol=0, atol=1e-5
    )


def test_log_odds_totals_go_through_the_logistic_function(tmp_path: Path) -> None:
    model = _fit(KINDS["hist_gradient_boosting"])
    directory = _write(tmp_path, model)
    explainer = load_explainer(directory, _info(directory))
    assert explainer is not None and explainer.output == "log_odds"
    np.testing.assert_allclose(
        explainer.totals(explainer.explain(X_TEST)), model.predict_proba(X_TEST)[:, 1],
        rtol=0, atol=1e-6,
    )


def test_a_tampered_or_missing_reasons_file_is_refused(forest_dir: Path, tmp_path: Path) -> None:
    info = _info(forest_dir)
    with pytest.raises(ModelIntegrityError, match="cannot read its reason codes"):
        load_explainer(tmp_path, info)
    content = bytearray((forest_dir / REASONS_FILE).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (tmp_path / REASONS_FILE).write_bytes(bytes(content))
    with pytest.raises(ModelIntegrityError, match=r"reasons.onnx has sha256 .*changed or corr"):
        load_explainer(tmp_path, info)


def test_reasons_of_another_model_are_refused_at_load(forest_dir: Path, tmp_path: Path) -> None:
    """The right hash in the metadata, but the contributions of another forest (the test
    batch does not add up to the model's scores) or no ONNX at all."""
    info = _info(forest_dir)
    other = reasons.build(_fit(KINDS["random_forest"], y=1 - Y_TRAIN), N).onnx
    for content, message in ((other, "do not explain this model"),
                             (b"not onnx", "not a model onnxruntime can load")):
        (tmp_path / REASONS_FILE).write_bytes(content)
        sha256 = hashlib.sha256(content).hexdigest()
        forged = dataclasses.replace(info, reasons=dataclasses.replace(info.reasons, sha256=sha256))
        with pytest.raises(ModelIntegrityError, match=message):
            load_explainer(tmp_path, forged, score=lambda rows: _scores(forest_dir, rows))


def test_the_load_check_uses_the_scorer_it_is_given(forest_dir: Path) -> None:
    info = _info(forest_dir)
    assert load_explainer(forest_dir, info, score=lambda rows: _scores(forest_dir, rows))
    off = lambda rows: _scores(forest_dir, rows) + 2 * CHECK_TOLERANCE  # noqa: E731
    with pytest.raises(ModelIntegrityError, match=f"tolerance {CHECK_TOLERANCE:g}"):
        load_explainer(forest_dir, info, score=off)


def _scores(directory: Path, rows: np.ndarray) -> np.ndarray:
    model = ort.InferenceSession((directory / MODEL_FILE).read_bytes())
    return np.asarray(model.run(["probabilities"], {"features": rows})[0][:, 1], np.float64)


def test_a_model_without_reasons_loads_with_no_explainer(tmp_path: Path) -> None:
    directory = _write(tmp_path, _fit(KINDS["logistic_regression"]), with_reasons=False)
    assert not (directory / REASONS_FILE).exists()
    metadata = json.loads((directory / METADATA_FILE).read_text())
    assert "reasons" not in metadata  # another model's reasons are dropped, not kept
    info = model_info(metadata, (directory / MODEL_FILE).read_bytes())
    assert info.reasons is None
    assert load_explainer(directory, info) is None


def test_the_writer_refuses_reasons_the_metadata_does_not_describe(tmp_path: Path) -> None:
    model = _fit(KINDS["logistic_regression"])
    model_bytes = export.convert(model, N)
    metadata, built = _metadata(model_bytes, None), reasons.build(model, N)
    with pytest.raises(ModelIntegrityError, match="describes no reasons"):
        export.write_artifacts(tmp_path, model_bytes, metadata, reasons=built.onnx)
    assert not (tmp_path / POINTER_FILE).exists()


GOOD_REASONS = ReasonsDescription(
    file=REASONS_FILE, sha256="ab" * 32, method="linear", output="log_odds", base_value=-2,
    input_name="features", output_name="contributions", features=FEATURE_NAMES,
    faithfulness_max_abs_diff=1e-7,
)
MODEL_BYTES = b"model bytes"


def test_model_info_reads_the_reasons_object() -> None:
    info = model_info(_metadata(MODEL_BYTES, GOOD_REASONS), MODEL_BYTES)
    assert info.reasons == GOOD_REASONS
    assert model_info(_metadata(MODEL_BYTES, None), MODEL_BYTES).reasons is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"file": "../model.onnx"}, "file must be an .onnx file name other than model.onnx"),
        ({"file": MODEL_FILE}, "file must be"), ({"file": ".hidden.onnx"}, "file must be"),
        ({"file": "reasons.json"}, "file must be"),
        ({"sha256": "AB" * 32}, "sha256 must be 64 lowercase hex digits"),
        ({"method": "shap"}, r"method must be one of \['path_contributions', 'linear'\]"),
        ({"output": "margin"}, r"output must be one of \['probability', 'log_odds'\]"),
        ({"base_value": "0.5"}, "base_value must be a finite number"),
        ({"base_value": True}, "base_value must be"), ({"base_value": math.inf}, "base_value"),
        ({"faithfulness_max_abs_diff": math.nan}, "faithfulness_max_abs_diff must be a finite"),
        ({"input_name": ""}, "input_name and output_name must be names"),
        ({"output_name": ""}, "input_name and output_name must be names"),
        ({"input_name": 5}, "input_name and output_name must be names"),
        ({"features": "amount"}, "its features a list"), ({"features": 7}, "TypeError"),
        ({"features": []}, "features must be the feature names"),
        ({"features": [1, 2]}, "features must be the feature names"),
    ],
)
def test_a_malformed_reasons_object_is_refused(change: dict[str, Any], message: str) -> None:
    metadata = _metadata(MODEL_BYTES, GOOD_REASONS)
    metadata["reasons"].update(change)
    with pytest.raises(ModelIntegrityError, match=message) as info:
        model_info(metadata, MODEL_BYTES)
    assert "reasons metadata is incomplete or malformed" in str(info.value)
    assert "retrain with `make train`" in str(info.value)


@pytest.mark.parametrize("key", sorted(dataclasses.asdict(GOOD_REASONS)))
def test_a_reasons_object_without_a_field_is_refused(key: str) -> None:
    metadata = _metadata(MODEL_BYTES, GOOD_REASONS)
    del metadata["reasons"][key]
    with pytest.raises(ModelIntegrityError, match=f"KeyError\\('{key}'\\)"):
        model_info(metadata, MODEL_BYTES)


def test_a_reasons_object_of_another_shape_or_other_features_is_refused() -> None:
    metadata = {**_metadata(MODEL_BYTES, None), "reasons": ["reasons.onnx"]}
    with pytest.raises(ModelIntegrityError, match="reasons must be an object"):
        model_info(metadata, MODEL_BYTES)
    metadata = _metadata(MODEL_BYTES, GOOD_REASONS)
    metadata["reasons"]["features"] = list(reversed(FEATURE_NAMES))
    with pytest.raises(ModelIntegrityError, match="its reasons explain features .* but the model"):
        model_info(metadata, MODEL_BYTES)


def test_the_reasons_bytes_are_checked_when_given() -> None:
    content = b"contributions"
    good = dataclasses.replace(GOOD_REASONS, sha256=hashlib.sha256(content).hexdigest())
    metadata = _metadata(MODEL_BYTES, good)
    assert model_info(metadata, MODEL_BYTES, reasons_bytes=content).reasons == good
    check_reasons(good, content, version="v")
    with pytest.raises(ModelIntegrityError, match=r"model v: reasons.onnx has sha256 "
                       rf"{hashlib.sha256(b'other').hexdigest()[:12]}\.\.\., its metadata "
                       rf"records {good.sha256[:12]}\.\.\."):
        check_reasons(good, b"other", version="v")
    with pytest.raises(ModelIntegrityError, match="changed or corrupted"):
        model_info(metadata, MODEL_BYTES, reasons_bytes=content + b"x")


# --- top_reasons ----------------------------------------------------------------------------


def test_top_reasons_are_the_largest_positive_contributions() -> None:
    contributions = np.zeros(N)
    contributions[[4, 0, 9, 2, 7]] = [0.3, 0.05, 0.3, -0.9, 1e-9]
    values = np.arange(N) + 0.1234567
    found = top_reasons(contributions, values)
    assert found == (
        {"feature": FEATURE_NAMES[4], "value": 4.123457, "contribution": 0.3},
        {"feature": FEATURE_NAMES[9], "value": 9.123457, "contribution": 0.3},
        {"feature": FEATURE_NAMES[0], "value": 0.123457, "contribution": 0.05},
    )
    assert top_reasons(contributions, values, k=5) == found  # 1e-9 rounds to 0, -0.9 is down
    assert top_reasons(contributions, values, k=1)[0]["feature"] == FEATURE_NAMES[4]
    assert top_reasons(-np.abs(contributions), values) == ()
    json.dumps(found)


def test_top_reasons_never_put_nan_in_json_and_refuse_rows_of_the_wrong_width() -> None:
    contributions, values = np.zeros(N), np.zeros(N)
    contributions[3], values[3] = 0.5, math.nan
    assert top_reasons(contributions, values) == (
        {"feature": FEATURE_NAMES[3], "value": None, "contribution": 0.5},
    )
    with pytest.raises(ValueError, match="21 contributions and 22 values for 22 features"):
        top_reasons(np.zeros(N - 1), np.zeros(N))


# --- the shipped model ----------------------------------------------------------------------


def test_the_shipped_models_reasons_add_up_to_its_scores_on_replayed_rows() -> None:
    """Rows of generated data (the reference's generator and feature code, smaller):
    reasons.onnx plus its base is model.onnx's score (each was checked against the
    scikit-learn forest within 1e-5 on the test week when trained)."""
    models = ROOT / "models"
    directory = models / (models / POINTER_FILE).read_text().strip()
    info = _info(directory)
    assert info.reasons is not None, "the shipped model has no reason codes: make train"
    explainer = load_explainer(directory, info)
    assert explainer is not None
    frame = normalise(generator.generate(
        generator.GeneratorConfig(customers=60, terminals=120, days=45, seed=3)
    ), source="test")
    rows = features_of(replay(frame)[0])
    assert len(rows) > 2_000
    scores = _scores(directory, rows)
    totals = explainer.totals(explainer.explain(rows))
    np.testing.assert_allclose(totals, scores, rtol=0, atol=1e-5)
    assert scores.max() > 0.5  # some of them would be reviewed or declined
