"""Reason codes: each feature's share of a score, as a second ONNX model beside the first.

A decision's reasons are the features that pushed its score up most. They come from the
contributions model ``reasons.onnx``: the same float32 input as ``model.onnx`` (``features``,
``[None, n_features]``) and one float32 contribution per feature out (``contributions``,
``[None, n_features]``, in the order of the features), such that for every row::

    sum(contributions) + base_value == output

``output`` is the model's fraud probability (``"probability"``) or its log-odds, the
decision function (``"log_odds"``), depending on the kind of model:

* **random forest** (method ``"path_contributions"``, Saabas): along a row's path from a
  tree's root to its leaf, each split credits the change of node value (the fraction of
  fraud among the training rows at the node) to the split's feature; averaged over the
  trees. ``base_value`` is the mean of the roots' values; output: the probability. A leaf's
  value is its root's plus the changes along its path, so the sum is exact.
* **HistGradientBoosting** (``"path_contributions"``): the same in raw log-odds, summed
  over the trees. scikit-learn keeps no mean value for a split node (it stores an
  unshrunk Newton step there, 0 at the root), so a split node's value here is the mean of
  its leaves' values over the training rows that reach it (the nodes' ``count``).
  ``base_value`` is the model's baseline plus the roots' values; output: the log-odds.
* **logistic regression**, behind standard scalers or not (``"linear"``): the contribution
  of feature ``i`` is ``w_i * (x_i - mean_i) / scale_i`` in log-odds, ``base_value`` the
  intercept (the log-odds of a transaction at the training means, where every scaled
  feature is 0). Exact, up to the float32 output.

A tree path's contributions depend only on its leaf, so both tree models export as a
``TreeEnsembleRegressor`` (ai.onnx.ml) with one target per feature whose leaf weights are
the leaf's contribution vector (its nonzero entries): onnxruntime finds the leaf and adds
the vector in C++, for a whole batch in one call, at about the cost of a score. The linear
one is a Sub and a Mul on the input cast to double.

:func:`check_faithfulness` runs the exported bytes on the test set and requires sum +
``base_value`` to equal the scikit-learn model's output within :data:`FAITHFULNESS_TOLERANCE`
before anything is written; otherwise training fails.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraudcore.artifacts import REASONS_FILE, ReasonsDescription, ReasonsMethod, ReasonsOutput
from fraudcore.errors import ModelError
from fraudmodel import session
from training.train import Classifier

__all__ = [
    "FAITHFULNESS_TOLERANCE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "FaithfulnessError",
    "ReasonsModel",
    "UnexplainableModel",
    "allowed_difference",
    "build",
    "check_faithfulness",
    "contributions",
    "describe",
    "model_output",
]

log = logging.getLogger(__name__)

INPUT_NAME = "features"  # the name model.onnx's input has (training.export.INPUT_NAME)
OUTPUT_NAME = "contributions"
#: The largest difference between sum + base_value and scikit-learn's output (probability or
#: log-odds) that training accepts. The tree contributions are summed in double and meet it
#: with room to spare (about 1e-7); the linear ones are exact in double, see
#: :func:`allowed_difference` for a model that computes its own output in float32.
FAITHFULNESS_TOLERANCE = 1e-5
#: Float32's unit roundoff, 2**-24.
_UNIT_ROUNDOFF = 2.0**-24
_OPSET = {"": 21, "ai.onnx.ml": 3}
_IR_VERSION = 10  # what skl2onnx writes for model.onnx; onnxruntime 1.2x reads it


class FaithfulnessError(ModelError):
    """The contributions do not add up to the model's output; nothing is written."""


class UnexplainableModel(ModelError, TypeError):
    """A model of a kind (or shape) this module cannot build contributions for."""


@dataclass(frozen=True)
class ReasonsModel:
    """The contributions ONNX of a model and what its numbers mean."""

    onnx: bytes
    method: ReasonsMethod
    output: ReasonsOutput
    base_value: float


def build(model: Classifier, n_features: int) -> ReasonsModel:
    """The contributions model of a fitted candidate (see the module docstring)."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if isinstance(final, RandomForestClassifier):
        _require_binary(final)
        trees = [_forest_tree(estimator.tree_) for estimator in final.estimators_]
        base = float(np.mean([tree.value[0] for tree in trees]))
        onnx_bytes = _tree_ensemble(trees, n_features, aggregate="AVERAGE")
        return ReasonsModel(onnx_bytes, "path_contributions", "probability", base)
    if isinstance(final, HistGradientBoostingClassifier):
        _require_binary(final)
        trees = [_boosting_tree(iteration, n_features) for iteration in final._predictors]
        baseline = float(np.asarray(final._baseline_prediction).ravel()[0])
        base = baseline + float(sum(tree.value[0] for tree in trees))
        onnx_bytes = _tree_ensemble(trees, n_features, aggregate="SUM")
        return ReasonsModel(onnx_bytes, "path_contributions", "log_odds", base)
    if isinstance(final, LogisticRegression):
        _require_binary(final)
        return _linear(model, final, n_features)
    raise UnexplainableModel(
        f"no reason codes for a {type(final).__name__}: training/reasons.py knows random "
        "forests, HistGradientBoosting and logistic regression"
    )


def describe(
    reasons: ReasonsModel, *, features: tuple[str, ...], faithfulness: float
) -> ReasonsDescription:
    """What ``metadata.json`` records of ``reasons`` (``features`` in the input's order,
    ``faithfulness`` what :func:`check_faithfulness` measured)."""
    return ReasonsDescription(
        file=REASONS_FILE,
        sha256=hashlib.sha256(reasons.onnx).hexdigest(),
        method=reasons.method,
        output=reasons.output,
        base_value=reasons.base_value,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        features=features,
        faithfulness_max_abs_diff=faithfulness,
    )


def model_output(model: Classifier, output: ReasonsOutput, features: NDArray[np.float32]
                 ) -> NDArray[np.float64]:
    """What the contributions of ``model`` add up to: its fraud probability or log-odds."""
    if output == "probability":
        return np.asarray(model.predict_proba(features)[:, 1], dtype=np.float64)
    # Every candidate whose output is log-odds has decision_function (the protocol does not).
    scored: Any = model
    return np.asarray(scored.decision_function(features), dtype=np.float64)


def contributions(reasons: ReasonsModel, features: NDArray[np.float32]) -> NDArray[np.float32]:
    """onnxruntime's contributions for ``features`` (in the session the worker runs)."""
    # onnxruntime is untyped: run() returns a list of arrays.
    loaded = session(reasons.onnx)
    result: NDArray[np.float32] = loaded.run([OUTPUT_NAME], {INPUT_NAME: features})[0]
    return result


def allowed_difference(
    reasons: ReasonsModel, model: Classifier, found: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """Per row, how far sum + base may be from the model's output: :data:`FAITHFULNESS_
    TOLERANCE`, plus, for a model that computes its output in float32, that arithmetic's
    own error bound.

    A logistic regression fitted on float32 features keeps float32 coefficients and sums
    its decision function in float32; its output then carries an error of up to
    ``gamma_n * (|base| + sum |c_i|)`` with ``gamma_n = n u / (1 - n u)``, ``n`` the
    number of terms (features and intercept) and ``u = 2**-24`` (the textbook bound of a
    float32 dot product, Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1).
    No tolerance can be tighter than the model's own rounding: on logits up to 96 it
    reached 1.2e-5 (3.4 u times the terms' size) while the exact sum in double differs
    from a float64-fitted model's by 1e-14.
    """
    allowed = np.full(len(found), FAITHFULNESS_TOLERANCE)
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if isinstance(final, LogisticRegression) and final.coef_.dtype == np.float32:
        terms = found.shape[1] + 1
        gamma = terms * _UNIT_ROUNDOFF / (1 - terms * _UNIT_ROUNDOFF)
        size = np.abs(found.astype(np.float64)).sum(axis=1) + abs(reasons.base_value)
        allowed += gamma * size
    return allowed


def check_faithfulness(
    reasons: ReasonsModel, model: Classifier, features: NDArray[np.float32]
) -> float:
    """The largest absolute difference between sum + base and the model's output; raises
    :class:`FaithfulnessError` on a row where it exceeds :func:`allowed_difference`."""
    found = contributions(reasons, features)
    if found.shape != features.shape:
        raise FaithfulnessError(
            f"the contributions model answers shape {found.shape} for {features.shape} rows of "
            "features; the export is wrong, nothing was written"
        )
    expected = model_output(model, reasons.output, features)
    difference = np.abs(found.astype(np.float64).sum(axis=1) + reasons.base_value - expected)
    allowed = allowed_difference(reasons, model, found)
    output = reasons.output.replace("_", "-")
    if not bool(np.all(difference <= allowed)):  # NaN fails too
        row = int(np.argmax(~(difference <= allowed)))
        raise FaithfulnessError(
            f"{reasons.method} contributions plus the base value {reasons.base_value:.6g} "
            f"differ from scikit-learn's {output} by {difference[row]:.2e} on row {row:,} of "
            f"{len(features):,} (allowed {allowed[row]:.2e}); the export is wrong, nothing "
            "was written"
        )
    worst = float(np.max(difference)) if len(features) else 0.0
    log.info(
        "reason codes (%s) add up to scikit-learn's %s on the %s test rows (largest "
        "difference %.1e, tolerance %g%s)", reasons.method, output, f"{len(features):,}",
        worst, FAITHFULNESS_TOLERANCE,
        " plus the float32 model's own rounding" if bool(np.any(allowed > FAITHFULNESS_TOLERANCE))
        else "",
    )
    return worst


def _require_binary(estimator: Any) -> None:
    # scikit-learn is untyped: estimator is Any.
    classes = np.asarray(getattr(estimator, "classes_", [])).tolist()
    if classes != [0, 1]:
        raise UnexplainableModel(
            f"reason codes explain a fraud/not-fraud classifier (classes [0, 1]); this one "
            f"has classes {classes}"
        )


# --- trees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tree:
    """One tree, its nodes by index (the root is 0): a leaf's children are -1."""

    left: NDArray[np.int64]
    right: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]  # go left when x <= threshold
    missing_left: NDArray[np.int64]  # 1: a NaN goes left
    value: NDArray[np.float64]  # every node's value, in the output space


def _forest_tree(tree: Any) -> _Tree:
    """A scikit-learn tree of a forest; node values are the fraud fraction (``tree_.value``
    holds the class fractions since scikit-learn 1.4; normalised again to be sure)."""
    classes = np.asarray(tree.value[:, 0, :], dtype=np.float64)
    left = np.asarray(tree.children_left, dtype=np.int64)
    return _Tree(
        left=left,
        right=np.asarray(tree.children_right, dtype=np.int64),
        feature=np.where(left < 0, 0, np.asarray(tree.feature, dtype=np.int64)),
        threshold=np.asarray(tree.threshold, dtype=np.float64),
        missing_left=np.asarray(tree.missing_go_to_left, dtype=np.int64),
        value=classes[:, 1] / classes.sum(axis=1),
    )


def _boosting_tree(iteration: Any, n_features: int) -> _Tree:
    """One iteration of a binary HistGradientBoosting: one tree; a split node's value is
    the row-weighted mean of its leaves (see the module docstring)."""
    (predictor,) = iteration
    nodes = predictor.nodes
    if bool(np.any(nodes["is_categorical"])):
        raise UnexplainableModel(
            "reason codes do not cover HistGradientBoosting's categorical splits"
        )
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, -1, nodes["left"].astype(np.int64))
    right = np.where(leaf, -1, nodes["right"].astype(np.int64))
    feature = np.where(leaf, 0, nodes["feature_idx"].astype(np.int64))
    if bool(np.any(feature >= n_features)):
        raise UnexplainableModel(f"a tree splits on a feature beyond the {n_features} inputs")
    value = nodes["value"].astype(np.float64).copy()
    count = nodes["count"].astype(np.float64).copy()
    for node in reversed(_preorder(left, right)):  # children before their parent
        if left[node] >= 0:
            a, b = left[node], right[node]
            total = count[a] + count[b]
            value[node] = (
                (value[a] * count[a] + value[b] * count[b]) / total
                if total > 0 else (value[a] + value[b]) / 2
            )
            count[node] = total
    return _Tree(
        left=left,
        right=right,
        feature=feature,
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(np.int64),
        value=value,
    )


def _preorder(left: NDArray[np.int64], right: NDArray[np.int64]) -> list[int]:
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] >= 0:
            stack.extend((int(right[node]), int(left[node])))
    return order


def _leaf_contributions(tree: _Tree) -> Iterator[tuple[int, dict[int, float]]]:
    """Each leaf and its path contributions (feature -> change of value), in float64."""
    stack: list[tuple[int, dict[int, float]]] = [(0, {})]
    while stack:
        node, path = stack.pop()
        if tree.left[node] < 0:
            yield node, path
            continue
        feature = int(tree.feature[node])
        for child in (int(tree.left[node]), int(tree.right[node])):
            step = dict(path)
            step[feature] = step.get(feature, 0.0) + float(tree.value[child] - tree.value[node])
            stack.append((child, step))


def _tree_ensemble(trees: list[_Tree], n_features: int, *, aggregate: str) -> bytes:
    """A TreeEnsembleRegressor with one target per feature: each leaf's weights are its
    path contributions; ``aggregate`` AVERAGE (a forest) or SUM (boosting).

    The input is cast to double first: onnxruntime then compares with scikit-learn's own
    float64 thresholds (scikit-learn compares the float32 feature, widened, to them: the
    same branch every time) and adds the float64 weights in double; only the output is
    float32 (the operator's only output type). Float32 weights and sums instead were ten
    times less exact (5e-6 against 5e-7 on boosting's log-odds) for 15 % less time.
    """
    nodes: dict[str, list[Any]] = {
        key: [] for key in ("treeids", "nodeids", "featureids", "values", "modes",
                            "truenodeids", "falsenodeids", "missing")
    }
    targets: dict[str, list[Any]] = {key: [] for key in ("treeids", "nodeids", "ids", "weights")}
    for tree_id, tree in enumerate(trees):
        leaf = tree.left < 0
        count = len(leaf)
        nodes["treeids"].extend([tree_id] * count)
        nodes["nodeids"].extend(range(count))
        nodes["featureids"].extend(tree.feature.tolist())
        nodes["values"].extend(np.where(leaf, 0.0, tree.threshold).tolist())
        nodes["modes"].extend(np.where(leaf, "LEAF", "BRANCH_LEQ").tolist())
        nodes["truenodeids"].extend(np.where(leaf, 0, tree.left).tolist())
        nodes["falsenodeids"].extend(np.where(leaf, 0, tree.right).tolist())
        nodes["missing"].extend(np.where(leaf, 0, tree.missing_left).tolist())
        for node, path in _leaf_contributions(tree):
            for feature, contribution in sorted(path.items()):
                if contribution != 0.0:
                    targets["treeids"].append(tree_id)
                    targets["nodeids"].append(node)
                    targets["ids"].append(feature)
                    targets["weights"].append(contribution)
    if not targets["weights"]:  # every tree a single leaf: one zero weight keeps it valid
        first_leaf = int(np.flatnonzero(trees[0].left < 0)[0])
        for key, value in zip(targets, (0, first_leaf, 0, 0.0), strict=True):
            targets[key].append(value)
    widen = helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.DOUBLE)
    ensemble = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        [OUTPUT_NAME],
        domain="ai.onnx.ml",
        n_targets=n_features,
        aggregate_function=aggregate,
        post_transform="NONE",
        nodes_treeids=nodes["treeids"],
        nodes_nodeids=nodes["nodeids"],
        nodes_featureids=nodes["featureids"],
        nodes_values_as_tensor=_doubles("thresholds", nodes["values"]),
        nodes_modes=nodes["modes"],
        nodes_truenodeids=nodes["truenodeids"],
        nodes_falsenodeids=nodes["falsenodeids"],
        nodes_missing_value_tracks_true=nodes["missing"],
        target_treeids=targets["treeids"],
        target_nodeids=targets["nodeids"],
        target_ids=targets["ids"],
        target_weights_as_tensor=_doubles("weights", targets["weights"]),
    )
    return _model([widen, ensemble], [], n_features, name="path_contributions")


def _doubles(name: str, values: list[float]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.DOUBLE, [len(values)], values)


# --- linear ------------------------------------------------------------------------------


def _linear(model: Classifier, final: Any, n_features: int) -> ReasonsModel:
    """``w * (x - mean) / scale`` for a logistic regression behind standard scalers.

    Each scaler step is computed as scikit-learn computes it on float32 features (in
    float32, with its mean and scale cast to float32), then widened and multiplied by the
    weights in double, the output double: the contributions are scikit-learn's own terms of
    the decision function, which they add up to but for the order of the additions.
    """
    nodes: list[onnx.NodeProto] = []
    constants: list[onnx.TensorProto] = []
    current = INPUT_NAME
    steps = model.steps[:-1] if isinstance(model, Pipeline) else []
    for index, (name, step) in enumerate(steps):
        if not isinstance(step, StandardScaler):
            raise UnexplainableModel(
                f"the linear reason codes know StandardScaler steps only; step {name!r} is a "
                f"{type(step).__name__}"
            )
        for op, values in (("Sub", step.mean_), ("Div", step.scale_)):
            if values is None:  # with_mean=False or with_std=False
                continue
            constant, result = f"{op.lower()}_{index}", f"{op.lower()}_{index}_out"
            constants.append(helper.make_tensor(
                constant, TensorProto.FLOAT, [n_features],
                np.asarray(values, dtype=np.float32).tolist(),
            ))
            nodes.append(helper.make_node(op, [current, constant], [result]))
            current = result
    weights = np.asarray(final.coef_, dtype=np.float64).reshape(-1)
    if weights.shape != (n_features,):
        raise UnexplainableModel(
            f"the logistic regression has {weights.size} weights for {n_features} features"
        )
    constants.append(helper.make_tensor("weight", TensorProto.DOUBLE, [n_features], weights))
    nodes.append(helper.make_node("Cast", [current], ["scaled"], to=TensorProto.DOUBLE))
    nodes.append(helper.make_node("Mul", ["scaled", "weight"], [OUTPUT_NAME]))
    base = float(np.asarray(final.intercept_).ravel()[0])
    onnx_bytes = _model(nodes, constants, n_features, name="linear", output=TensorProto.DOUBLE)
    return ReasonsModel(onnx_bytes, "linear", "log_odds", base)


def _model(
    nodes: list[onnx.NodeProto],
    constants: list[onnx.TensorProto],
    n_features: int,
    *,
    name: str,
    output: int = TensorProto.FLOAT,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        f"reasons_{name}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, output, [None, n_features])],
        initializer=constants,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in _OPSET.items()],
        producer_name="fraud-stream training.reasons",
        ir_version=_IR_VERSION,
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
