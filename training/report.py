"""Evaluation report: diagnostic plots (PNG) and a short Markdown summary.

Plots are drawn with matplotlib's object API (``matplotlib.figure.Figure`` rendered by
the Agg canvas), never through ``pyplot``: no GUI backend is needed, no global pyplot
state is touched and there is no figure to leak.

The report dict read by :func:`write_markdown` has this shape (missing parts render as
"—")::

    {
      "model": {"version": str, "type": str, "params": dict},
      "data": {...},                         # free-form: window, sizes, ...
      "validation": Metrics.to_dict(),
      "test": Metrics.to_dict(),
      "thresholds": {"review": float, "decline": float,
                     "review_rule": str, "decline_rule": str},
      "candidates": [{"name": str, "validation": Metrics.to_dict()}, ...],
    }
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from training.metrics import precision_recall_at, validate_predictions

__all__ = [
    "PLOT_FILES",
    "render_markdown",
    "write_markdown",
    "write_plots",
]

logger = logging.getLogger(__name__)

PLOT_FILES: tuple[str, ...] = (
    "precision_recall.png",
    "score_distribution.png",
    "card_precision_per_day.png",
)

_DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, format="png")
    logger.debug("wrote %s", path)
    return path


def _plot_precision_recall(
    predictions: pd.DataFrame, path: Path, *, review: float, decline: float
) -> Path:
    labels = predictions["label"].to_numpy(dtype=int)
    scores = predictions["score"].to_numpy(dtype=float)
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.plot(recall, precision, color="tab:blue", label="precision–recall")
    for name, threshold, color in (
        ("review", review, "tab:orange"),
        ("decline", decline, "tab:red"),
    ):
        p, r = precision_recall_at(predictions, threshold=threshold)
        ax.scatter(
            [r], [p], color=color, zorder=3, label=f"{name} ≥ {threshold:.4g}: P={p:.3f} R={r:.3f}"
        )
    base_rate = float(labels.mean())
    ax.axhline(base_rate, color="grey", linestyle=":", label=f"fraud rate {base_rate:.4f}")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall (transactions)")
    ax.set_ylabel("precision (transactions)")
    ax.set_title("Precision–recall")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def _plot_score_distribution(
    predictions: pd.DataFrame, path: Path, *, review: float, decline: float
) -> Path:
    labels = predictions["label"].to_numpy(dtype=int)
    scores = predictions["score"].to_numpy(dtype=float)
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = list(np.linspace(low, high, 51))  # matplotlib's stubs take a sequence, not an array
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for value, name, color in ((0, "legitimate", "tab:blue"), (1, "fraud", "tab:red")):
        selected = scores[labels == value]
        if selected.size:
            ax.hist(selected, bins=bins, alpha=0.5, color=color, label=f"{name} ({selected.size})")
    ax.set_yscale("log")
    ax.axvline(review, color="tab:orange", linestyle="--", label=f"review {review:.4g}")
    ax.axvline(decline, color="tab:red", linestyle="--", label=f"decline {decline:.4g}")
    ax.set_xlabel("score")
    ax.set_ylabel("transactions (log)")
    ax.set_title("Score distribution by class")
    ax.legend(loc="upper center", fontsize="small")
    return _save(fig, path)


def _day_name(day: object) -> str:
    if isinstance(day, pd.Timestamp | datetime):
        return day.date().isoformat()
    return str(day)


def _plot_card_precision(
    predictions: pd.DataFrame, path: Path, *, per_day_cp: Sequence[float]
) -> Path:
    values = [float(v) for v in per_day_cp]
    days = sorted(predictions["day"].unique())
    if len(days) == len(values):
        names = [_day_name(d) for d in days]
    else:
        names = [f"day {i + 1}" for i in range(len(values))]
    fig = Figure(figsize=(max(6.0, 0.6 * len(values) + 2), 4.5))
    ax = fig.add_subplot()
    positions = np.arange(len(values))
    ax.bar(positions, values, color="tab:blue", label="per day")
    if values:
        mean = float(np.mean(values))
        ax.axhline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
    ax.set_xticks(positions, names, rotation=45, ha="right", fontsize="small")
    ax.set_ylim(0.0, max([1e-3, *values]) * 1.2)
    ax.set_ylabel("card precision top-k")
    ax.set_title("Card precision per test day")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def write_plots(
    predictions: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    review_threshold: float,
    decline_threshold: float,
    per_day_cp: Sequence[float],
) -> list[Path]:
    """Write the three diagnostic PNGs into ``out_dir`` (created if needed).

    * ``precision_recall.png``: transaction-level precision–recall curve, with the review
      and decline operating points (``score >= threshold``) marked;
    * ``score_distribution.png``: score histograms of legitimate and fraud transactions
      (shared bins, log y axis), with the two thresholds as vertical lines;
    * ``card_precision_per_day.png``: one bar per test day of ``per_day_cp`` (labelled by
      the predictions' sorted days when the counts match) and a line at their mean.

    ``predictions`` is a predictions frame as in :mod:`training.metrics` (both classes
    needed). Returns the paths written, in the order above.
    """
    validate_predictions(predictions, both_classes=True)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    pr_name, dist_name, cp_name = PLOT_FILES
    return [
        _plot_precision_recall(
            predictions, directory / pr_name, review=review_threshold, decline=decline_threshold
        ),
        _plot_score_distribution(
            predictions, directory / dist_name, review=review_threshold, decline=decline_threshold
        ),
        _plot_card_precision(predictions, directory / cp_name, per_day_cp=per_day_cp),
    ]


# --- Markdown -----------------------------------------------------------------------------

_DASH = "—"


def _fmt(value: object) -> str:
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4f}"
    if isinstance(value, str):
        return value
    return f"`{json.dumps(value, default=str, sort_keys=True)}`"


def _metric_rows(k_label: str) -> list[tuple[str, str]]:
    return [
        ("AUC ROC", "auc_roc"),
        ("average precision", "average_precision"),
        (k_label, "card_precision_at_100"),
        ("precision at review", "precision_at_review"),
        ("recall at review", "recall_at_review"),
        ("precision at decline", "precision_at_decline"),
        ("recall at decline", "recall_at_decline"),
        ("cards a day at review", "alerts_per_day_at_review"),
        ("transactions", "transactions"),
        ("frauds", "frauds"),
    ]


def _k_label(*metric_dicts: Mapping[str, object]) -> str:
    for metrics in metric_dicts:
        k = metrics.get("k")
        if isinstance(k, int | float | np.integer | np.floating):
            return f"CP@{int(k)}"
    return "CP@100"


def _section(value: object) -> Mapping[str, object]:
    """A part of the report: ``value`` if it is a mapping; missing or not, an empty one."""
    return value if isinstance(value, Mapping) else {}


def _sections(value: object) -> list[Mapping[str, object]]:
    """A list part of the report (the candidates): its mappings."""
    return [_section(v) for v in value] if isinstance(value, list | tuple) else []


def render_markdown(report: Mapping[str, object], *, plots: Sequence[str] | None = None) -> str:
    """The Markdown summary of ``report`` (shape in the module docstring) as a string.

    ``plots`` are the image links to include, as written in the Markdown (relative paths);
    by default the three :data:`PLOT_FILES` names, i.e. plots next to the Markdown file.
    Numbers are shown with 4 decimals, counts with thousands separators.
    """
    model = _section(report.get("model"))
    data = _section(report.get("data"))
    validation = _section(report.get("validation"))
    test = _section(report.get("test"))
    thresholds = _section(report.get("thresholds"))
    candidates = _sections(report.get("candidates"))
    k_label = _k_label(validation, test)

    lines = [
        f"# Fraud model report: {model.get('type', _DASH)} {model.get('version', '')}".rstrip(),
        "",
    ]
    lines.append(f"- model type: {_fmt(model.get('type'))}")
    lines.append(f"- version: {_fmt(model.get('version'))}")
    params = _section(model.get("params"))
    if params:
        lines.append(f"- parameters: {_fmt(dict(params))}")
    lines += ["", "## Data", ""]
    if data:
        lines += [f"- {key}: {_fmt(value)}" for key, value in data.items()]
    else:
        lines.append(_DASH)

    lines += ["", "## Metrics", "", "| metric | validation | test |", "|---|---:|---:|"]
    for label, key in _metric_rows(k_label):
        lines.append(f"| {label} | {_fmt(validation.get(key))} | {_fmt(test.get(key))} |")

    lines += ["", "## Thresholds", ""]
    for name in ("review", "decline"):
        rule = thresholds.get(f"{name}_rule")
        suffix = f": {rule}" if rule else ""
        lines.append(f"- {name}: score ≥ {_fmt(thresholds.get(name))}{suffix}")

    if candidates:
        lines += [
            "",
            "## Candidates (validation)",
            "",
            f"| candidate | AUC ROC | average precision (± std) | {k_label} | within the "
            "best's spread | µs a row | µs a row, batches of 100 | ONNX bytes |",
            "|---|---:|---:|---:|:-:|---:|---:|---:|",
        ]
        for candidate in candidates:
            metrics = _section(candidate.get("validation"))
            cost = _section(candidate.get("cost"))
            within = candidate.get("within_spread")
            lines.append(
                f"| {candidate.get('name', _DASH)} | {_fmt(metrics.get('auc_roc'))} "
                f"| {_fmt(metrics.get('average_precision'))} "
                f"(± {_fmt(metrics.get('average_precision_std'))}) "
                f"| {_fmt(metrics.get('card_precision_at_100'))} "
                f"| {_DASH if within is None else ('yes' if within else 'no')} "
                f"| {_fmt(cost.get('one_row_us'))} | {_fmt(cost.get('batch_100_us_per_row'))} "
                f"| {_fmt(cost.get('onnx_bytes'))} |"
            )
        if report.get("selection"):
            lines += ["", f"Chosen: {report['selection']}."]

    links = list(PLOT_FILES) if plots is None else list(plots)
    if links:
        lines += ["", "## Plots", ""]
        for link in links:
            title = Path(link).stem.replace("_", " ")
            lines.append(f"![{title}]({link})")
    return "\n".join(lines) + "\n"


def write_markdown(
    report: Mapping[str, object],
    path: str | os.PathLike[str],
    *,
    plots: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write :func:`render_markdown` of ``report`` to ``path`` (UTF-8) and return the path.

    ``plots`` are image files to link (e.g. the result of :func:`write_plots`); they are
    linked relative to the Markdown file's directory. By default the three
    :data:`PLOT_FILES` are linked as siblings of the Markdown file.
    """
    target = Path(path)
    links: list[str] | None = None
    if plots is not None:
        links = [
            Path(os.path.relpath(Path(p).resolve(), target.parent.resolve())).as_posix()
            for p in plots
        ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_markdown(report, plots=links), encoding="utf-8")
    logger.debug("wrote %s", target)
    return target
