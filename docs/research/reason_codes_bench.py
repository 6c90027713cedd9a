"""Reason codes for the shipped forest: TreeSHAP in Python against the ONNX path contributions.

    .venv/bin/python docs/research/reason_codes_bench.py [--rows 100] [--shap-rows 100]

Rebuilds the shipped model's training and test weeks (the reference data, seed 0, replayed
from 45 days before the training week: every feature's window is at most 37 days), fits the
three training candidates on them, and reports each one's contributions model (size, build
time, faithfulness on the test week). The refitted forest must export to the shipped
model's sha256 and reasons.onnx, so the forest measured is the one in ``models/current``.
Then, on one thread, over the test week's highest-scored rows (the ones that get reasons):

* ``model.onnx`` and ``reasons.onnx`` (onnxruntime, the worker's session options): µs per
  row for one row at a time and for a batch;
* path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2) in pure Python, one row at a
  time, and the same algorithm vectorised over the rows of a batch with numpy;
* how far apart the two methods' reasons are: the same top reason, the same top-3 set.

TreeSHAP is checked first against Shapley values by enumeration of every coalition on a
small forest, and on every measured row its values must add up to the forest's output.
Writes ``reports/reason_codes_bench.json``; prints a summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from threadpoolctl import threadpool_limits

from fraudcore import FEATURE_NAMES
from fraudmodel import session as onnx_session
from training import export, generator, protocol, reasons
from training.dataset import normalise
from training.replay import replay
from training.train import CANDIDATES, features_of

ROOT = Path(__file__).resolve().parents[2]
Tree = tuple[list[int], list[int], list[int], list[float], list[float], list[float]]


# --- TreeSHAP, pure Python ---------------------------------------------------------------


def tree_of(estimator: Any) -> Tree:
    """left, right, feature, threshold, value (fraud fraction), cover of a fitted tree."""
    t = estimator.tree_
    fraction = t.value[:, 0, 1] / t.value[:, 0, :].sum(axis=1)
    return (t.children_left.tolist(), t.children_right.tolist(), t.feature.tolist(),
            t.threshold.tolist(), fraction.tolist(), t.weighted_n_node_samples.tolist())


def _extend(d: list[int], z: list[float], o: list[float], w: list[float],
            pz: float, po: float, pi: int) -> None:
    depth = len(d)
    d.append(pi)
    z.append(pz)
    o.append(po)
    w.append(1.0 if depth == 0 else 0.0)
    for i in range(depth - 1, -1, -1):
        w[i + 1] += po * w[i] * (i + 1) / (depth + 1)
        w[i] = pz * w[i] * (depth - i) / (depth + 1)


def _unwind(d: list[int], z: list[float], o: list[float], w: list[float], k: int) -> None:
    depth = len(d) - 1
    ok, zk = o[k], z[k]
    n = w[depth]
    for i in range(depth - 1, -1, -1):
        if ok != 0:
            t = w[i]
            w[i] = n * (depth + 1) / ((i + 1) * ok)
            n = t - w[i] * zk * (depth - i) / (depth + 1)
        else:
            w[i] = w[i] * (depth + 1) / (zk * (depth - i))
    del d[k], z[k], o[k], w[depth]


def _unwound_sum(z: list[float], o: list[float], w: list[float], k: int) -> float:
    depth = len(w) - 1
    ok, zk = o[k], z[k]
    n, total = w[depth], 0.0
    for i in range(depth - 1, -1, -1):
        if ok != 0:
            t = n * (depth + 1) / ((i + 1) * ok)
            total += t
            n = w[i] - t * zk * (depth - i) / (depth + 1)
        else:
            total += w[i] * (depth + 1) / (zk * (depth - i))
    return total


def tree_shap(tree: Tree, x: list[float], phi: list[float]) -> None:
    """Add one tree's SHAP values for row ``x`` to ``phi``."""
    left, right, feature, threshold, value, cover = tree

    def recurse(node: int, d: list[int], z: list[float], o: list[float], w: list[float],
                pz: float, po: float, pi: int) -> None:
        d, z, o, w = d[:], z[:], o[:], w[:]
        _extend(d, z, o, w, pz, po, pi)
        if left[node] < 0:
            for i in range(1, len(d)):
                phi[d[i]] += _unwound_sum(z, o, w, i) * (o[i] - z[i]) * value[node]
            return
        f = feature[node]
        hot, cold = ((left[node], right[node]) if x[f] <= threshold[node]
                     else (right[node], left[node]))
        iz = io = 1.0
        if f in d:
            k = d.index(f)
            iz, io = z[k], o[k]
            _unwind(d, z, o, w, k)
        recurse(hot, d, z, o, w, iz * cover[hot] / cover[node], io, f)
        recurse(cold, d, z, o, w, iz * cover[cold] / cover[node], 0.0, f)

    recurse(0, [], [], [], [], 1.0, 1.0, -1)


def forest_shap(trees: list[Tree], x: list[float], n_features: int) -> list[float]:
    phi = [0.0] * n_features
    for tree in trees:
        tree_shap(tree, x, phi)
    return [p / len(trees) for p in phi]


# --- TreeSHAP vectorised over the rows of a batch -----------------------------------------


def forest_shap_batch(trees: list[Tree], rows: np.ndarray) -> np.ndarray:
    """The same recursion once per node for all rows: the path's features and zero
    fractions are the same for every row, its one fractions and weights are arrays."""
    phi = np.zeros(rows.shape)
    for tree in trees:
        _tree_shap_batch(tree, rows, phi)
    return phi / len(trees)


def _tree_shap_batch(tree: Tree, rows: np.ndarray, phi: np.ndarray) -> None:
    left, right, feature, threshold, value, cover = tree
    n = len(rows)
    ones = np.ones(n)

    def recurse(node: int, d: list[int], z: list[float], o: list[np.ndarray],
                w: list[np.ndarray], pz: float, po: np.ndarray, pi: int) -> None:
        d, z, o, w = d[:], z[:], o[:], w[:]
        depth = len(d)
        d.append(pi)
        z.append(pz)
        o.append(po)
        w.append(ones if depth == 0 else np.zeros(n))
        for i in range(depth - 1, -1, -1):
            w[i + 1] = w[i + 1] + po * w[i] * (i + 1) / (depth + 1)
            w[i] = pz * w[i] * (depth - i) / (depth + 1)
        if left[node] < 0:
            for k in range(1, len(d)):
                phi[:, d[k]] += _sum_batch(z, o, w, k) * (o[k] - z[k]) * value[node]
            return
        f = feature[node]
        goes_left = (rows[:, f] <= threshold[node]).astype(np.float64)
        iz, io = 1.0, ones
        if f in d:
            k = d.index(f)
            iz, io = z[k], o[k]
            d, z, o, w = _unwind_batch(d, z, o, w, k)
        lz = iz * cover[left[node]] / cover[node]
        rz = iz * cover[right[node]] / cover[node]
        recurse(left[node], d, z, o, w, lz, io * goes_left, f)
        recurse(right[node], d, z, o, w, rz, io * (1.0 - goes_left), f)

    recurse(0, [], [], [], [], 1.0, ones, -1)


def _sum_batch(z: list[float], o: list[np.ndarray], w: list[np.ndarray], k: int) -> np.ndarray:
    depth = len(w) - 1
    hot = o[k] != 0  # one fractions are 0 or 1 in path-dependent TreeSHAP
    n, total_hot, total_cold = w[depth], 0.0, 0.0
    for i in range(depth - 1, -1, -1):
        t = n * (depth + 1) / (i + 1)
        total_hot = total_hot + t
        n = w[i] - t * z[k] * (depth - i) / (depth + 1)
        total_cold = total_cold + w[i] * (depth + 1) / (z[k] * (depth - i))
    return np.where(hot, total_hot, total_cold)


def _unwind_batch(d: list[int], z: list[float], o: list[np.ndarray], w: list[np.ndarray],
                  k: int) -> tuple[list[int], list[float], list[np.ndarray], list[np.ndarray]]:
    depth = len(d) - 1
    hot = o[k] != 0
    w = w[:]
    n = w[depth]
    for i in range(depth - 1, -1, -1):
        t = w[i]
        as_hot = n * (depth + 1) / (i + 1)
        n = np.where(hot, t - as_hot * z[k] * (depth - i) / (depth + 1), n)
        w[i] = np.where(hot, as_hot, t * (depth + 1) / (z[k] * (depth - i)))
    keep = [i for i in range(depth + 1) if i != k]
    return [d[i] for i in keep], [z[i] for i in keep], [o[i] for i in keep], w[:depth]


# --- the check by enumeration -------------------------------------------------------------


def _expected(tree: Tree, x: list[float], known: set[int], node: int = 0) -> float:
    """E[f(x) | x_S] as TreeSHAP defines it: follow x on known features, else cover-weight."""
    left, right, feature, threshold, value, cover = tree
    if left[node] < 0:
        return value[node]
    f = feature[node]
    if f in known:
        child = left[node] if x[f] <= threshold[node] else right[node]
        return _expected(tree, x, known, child)
    a, b = left[node], right[node]
    return (cover[a] * _expected(tree, x, known, a)
            + cover[b] * _expected(tree, x, known, b)) / cover[node]


def check_against_enumeration() -> float:
    """The largest difference from exact Shapley values on a small forest (6 features)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=3, max_depth=5, random_state=0).fit(x, y)
    trees = [tree_of(e) for e in forest.estimators_]
    worst = 0.0
    for row in x[:5].tolist():
        found = forest_shap(trees, row, 6)
        for f in range(6):
            others = [g for g in range(6) if g != f]
            exact = 0.0
            for size in range(6):
                weight = math.factorial(size) * math.factorial(5 - size) / math.factorial(6)
                for s in itertools.combinations(others, size):
                    gain = sum(_expected(t, row, {*s, f}) - _expected(t, row, set(s))
                               for t in trees) / len(trees)
                    exact += weight * gain
            worst = max(worst, abs(found[f] - exact))
    batch = forest_shap_batch(trees, x[:5])
    worst = max(worst, float(np.max(np.abs(batch - [forest_shap(trees, r, 6) for r in
                                                    x[:5].tolist()]))))
    return worst


# --- timing -------------------------------------------------------------------------------


def per_row_us(call: Callable[[], object], rows: int, *, seconds: float = 1.0,
               rounds: int = 5) -> dict[str, float]:
    """Best and median of ``rounds`` rounds of µs per row (each round at least ``seconds``
    or one call)."""
    call()
    results = []
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - started < seconds:
            call()
            count += 1
        results.append((time.perf_counter() - started) / count / rows * 1e6)
    return {"best": min(results), "median": statistics.median(results)}


def reference_week() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped model's training week (features, labels) and its cleaned test week."""
    split = protocol.Split(dt.date(2018, 7, 25), 7, 7, 7)
    frame = normalise(generator.generate(generator.GeneratorConfig(seed=0)), source="bench")
    start = np.datetime64(split.train_start - dt.timedelta(days=45))
    frame = frame[frame["TX_DATETIME"].to_numpy(dtype="datetime64[ns]") >= start]
    featured, _ = replay(frame.reset_index(drop=True))
    train, test = protocol.split(featured, split)
    test = protocol.clean_test(featured, test, split)
    return features_of(train), train["TX_FRAUD"].to_numpy(), features_of(test)


def candidates(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Every training candidate fitted on the week: its contributions model's size, build
    time, faithfulness on the test week, and the model itself."""
    out: dict[str, Any] = {}
    for candidate in CANDIDATES:
        model = candidate.build()
        model.fit(x, y)
        started = time.perf_counter()
        built = reasons.build(model, len(FEATURE_NAMES))
        seconds = time.perf_counter() - started
        found = reasons.contributions(built, test)
        difference = np.abs(found.astype(np.float64).sum(axis=1) + built.base_value
                            - reasons.model_output(model, built.output, test))
        allowed = reasons.allowed_difference(built, model, found)
        out[candidate.name] = {
            "model": model, "method": built.method, "output": built.output,
            "bytes": len(built.onnx), "build_seconds": round(seconds, 2),
            "max_abs_diff": float(difference.max()),
            "rows_over_1e-5": int(np.sum(difference > 1e-5)),
            "passes_check": bool(np.all(difference <= allowed)),
            "max_abs_output": float(np.max(np.abs(
                reasons.model_output(model, built.output, test)))),
            "onnx": built.onnx,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100, help="batch size")
    parser.add_argument("--shap-rows", type=int, default=100, help="rows for Python TreeSHAP")
    args = parser.parse_args()
    enumeration = check_against_enumeration()
    assert enumeration < 1e-12, enumeration
    models = ROOT / "models"
    directory = models / (models / "current").read_text().strip()
    x, y, test_rows = reference_week()
    with threadpool_limits(limits=1):
        fitted = candidates(x, y, test_rows)
    forest = fitted["random_forest"]["model"]
    version = hashlib.sha256(export.convert(forest, len(FEATURE_NAMES))).hexdigest()[:12]
    if version != directory.name:
        raise SystemExit(f"refitted forest is {version}, the shipped one {directory.name}")
    if fitted["random_forest"]["onnx"] != (directory / "reasons.onnx").read_bytes():
        raise SystemExit("the refitted forest's reasons.onnx differs from the shipped one")
    model = onnx_session((directory / "model.onnx").read_bytes())
    reasons_session = onnx_session((directory / "reasons.onnx").read_bytes())
    base = json.loads((directory / "metadata.json").read_text())["reasons"]["base_value"]
    scores = model.run(["probabilities"], {"features": test_rows})[0][:, 1]
    rows = test_rows[np.argsort(-scores, kind="stable")[: args.rows]]  # the reviewed ones
    one = rows[:1]
    result: dict[str, Any] = {
        "model_version": version, "batch": args.rows, "test_rows": len(test_rows),
        "reviewed_in_test": int(np.sum(scores >= json.loads(
            (directory / "metadata.json").read_text())["thresholds"]["review"])),
        "enumeration_max_abs_diff": enumeration,
        "candidates": {name: {k: v for k, v in c.items() if k not in ("model", "onnx")}
                       for name, c in fitted.items()},
    }
    with threadpool_limits(limits=1):
        for name, session, output in (("model.onnx", model, "probabilities"),
                                      ("reasons.onnx", reasons_session, "contributions")):
            result[name] = {
                "one_row": per_row_us(lambda s=session, o=output: s.run([o], {"features": one}), 1),
                "batch": per_row_us(
                    lambda s=session, o=output: s.run([o], {"features": rows}), len(rows)
                ),
            }
        trees = [tree_of(e) for e in forest.estimators_]
        python_rows = rows[: args.shap_rows].astype(np.float64).tolist()
        started = time.perf_counter()
        shap = np.array([forest_shap(trees, r, len(FEATURE_NAMES)) for r in python_rows])
        per_row = (time.perf_counter() - started) / len(python_rows) * 1e6
        result["treeshap_python"] = {
            "one_row": per_row_us(
                lambda: forest_shap(trees, python_rows[0], len(FEATURE_NAMES)), 1, seconds=0,
                rounds=3,
            ),
            "batch": {"best": per_row, "median": per_row, "rows": len(python_rows)},
        }
        started = time.perf_counter()
        vectorised = forest_shap_batch(trees, rows.astype(np.float64))
        result["treeshap_numpy_batch"] = {
            "batch": {"best": (time.perf_counter() - started) / len(rows) * 1e6}
        }
        assert np.max(np.abs(vectorised[: len(shap)] - shap)) < 1e-9
        proba = forest.predict_proba(rows)[:, 1]
    paths = reasons_session.run(["contributions"], {"features": rows})[0].astype(np.float64)
    result["local_accuracy_max_abs_diff"] = {
        "treeshap": float(np.max(np.abs(vectorised.sum(axis=1) + base - proba))),
        "path_contributions": float(np.max(np.abs(paths.sum(axis=1) + base - proba))),
    }
    top1 = float(np.mean(np.argmax(paths, axis=1) == np.argmax(vectorised, axis=1)))
    top3 = float(np.mean([set(np.argsort(-p)[:3]) == set(np.argsort(-s)[:3])
                          for p, s in zip(paths, vectorised, strict=True)]))
    overlap = float(np.mean([len(set(np.argsort(-p)[:3]) & set(np.argsort(-s)[:3])) / 3
                             for p, s in zip(paths, vectorised, strict=True)]))
    result["agreement"] = {"same_top_1": top1, "same_top_3_set": top3, "top_3_overlap": overlap,
                           "max_abs_diff": float(np.max(np.abs(paths - vectorised)))}
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "reason_codes_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))


def summary(result: dict[str, Any]) -> str:
    """The readable part: µs per row, faithfulness, agreement."""
    lines = [f"model {result['model_version']}, one thread; µs per row, best / median of 5 rounds "
             "(Python TreeSHAP: of 3 rounds of one row; one pass over the batch)",
             f"{'':24}{'one row':>26}{'batch of ' + str(result['batch']):>26}"]
    for name in ("model.onnx", "reasons.onnx", "treeshap_python", "treeshap_numpy_batch"):
        one, batch = result[name].get("one_row"), result[name]["batch"]
        cells = [f"{c['best']:,.1f} / {c.get('median', c['best']):,.1f}" if c else "-"
                 for c in (one, batch)]
        lines.append(f"{name:24}{cells[0]:>26}{cells[1]:>26}")
    for name, c in result["candidates"].items():
        lines.append(
            f"{name}: {c['method']} in {c['output']}, {c['bytes']:,} bytes, built in "
            f"{c['build_seconds']} s; test week max |sum + base - output| "
            f"{c['max_abs_diff']:.1e} (|output| up to {c['max_abs_output']:.1f}), rows over "
            f"1e-5: {c['rows_over_1e-5']}, passes the check: {c['passes_check']}"
        )
    a = result["agreement"]
    lines.append(
        f"Saabas vs TreeSHAP on the {result['batch']} highest-scored test rows: same top "
        f"reason {a['same_top_1']:.0%}, same top-3 set {a['same_top_3_set']:.0%}, top-3 "
        f"overlap {a['top_3_overlap']:.0%}, largest difference {a['max_abs_diff']:.3f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
