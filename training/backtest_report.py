"""The backtest's files: the JSON report, the predictions CSV, and a Markdown report with
two plots beside the JSON (``REPORT.md``, ``REPORT_reviews_per_day.png``,
``REPORT_precision_per_day.png``).

Plots are drawn as training's (:mod:`training.report`): matplotlib's object API with the
Agg canvas, never ``pyplot``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from training.backtest import Backtest
from training.backtest_metrics import CHANGES, SIDES

__all__ = ["markdown_path", "plot_paths", "render_markdown", "write_all"]

log = logging.getLogger(__name__)

_COLORS = {"baseline": "tab:blue", "candidate": "tab:orange"}
_DASH = "—"


def markdown_path(report: Path) -> Path:
    return report.with_suffix(".md")


def plot_paths(report: Path) -> tuple[Path, Path]:
    stem = report.with_suffix("")
    return (
        stem.with_name(f"{stem.name}_reviews_per_day.png"),
        stem.with_name(f"{stem.name}_precision_per_day.png"),
    )


def _fmt(value: object) -> str:
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def _delta(a: object, b: object) -> str:
    if isinstance(a, bool) or isinstance(b, bool):
        return ""
    if isinstance(a, int) and isinstance(b, int):
        return f"{b - a:+,}"
    if isinstance(a, int | float) and isinstance(b, int | float):
        diff = float(b) - float(a)
        return f"{diff:+,.2f}" if max(abs(a), abs(b)) >= 10 else f"{diff:+.4f}"
    return ""


_ROWS = (
    ("transactions", "transactions"),
    ("frauds", "frauds"),
    ("reviews", "reviews"),
    ("cards reviewed a day", "review_cards_per_day"),
    ("declines", "declines"),
    ("precision, review or decline", "precision_at_review_or_decline"),
    ("recall, review or decline", "recall_at_review_or_decline"),
    ("precision, decline", "precision_at_decline"),
    ("recall, decline", "recall_at_decline"),
    ("AUC ROC", "auc_roc"),
    ("average precision", "average_precision"),
    ("card precision @100", "card_precision_at_100"),
    ("fraud amount", "fraud_amount"),
    ("fraud amount caught (review or decline)", "fraud_amount_caught"),
    ("fraud amount declined", "fraud_amount_declined"),
    ("fraud amount missed", "fraud_amount_missed"),
    ("good transactions declined", "good_declined"),
    ("good amount declined", "good_declined_amount"),
    ("good transactions reviewed", "good_reviewed"),
)


def _side_line(name: str, side: Mapping[str, Any]) -> str:
    thresholds = side.get("thresholds", {})
    rules = side.get("rules_file")
    rules_text = f", rules {side.get('rules_version')} ({rules})" if rules else ", no rules"
    return (
        f"- {name}: model {side.get('model_version')} ({side.get('model_dir')}), review ≥ "
        f"{thresholds.get('review', 0.0):.4g}, decline ≥ {thresholds.get('decline', 0.0):.4g}"
        f"{rules_text}"
    )


def render_markdown(report: Mapping[str, Any], *, plots: Sequence[str] = ()) -> str:
    """The Markdown report: the sides, the overall table, the days, the changes."""
    window, rate = report["window"], report.get("rate", {})
    base, cand = report["baseline"], report["candidate"]
    lines = [
        f"# Backtest {window['from']} .. {window['last']} ({window['days']} days)",
        "",
        _side_line("baseline", base),
        _side_line("candidate", cand),
        f"- {window['transactions']:,} transactions scored; reviewer capacity "
        f"{report['reviewer_capacity']['cards_per_day']:.1f} cards a day "
        f"({report['reviewer_capacity']['source']})",
    ]
    if rate:
        lines.append(
            f"- replay {rate['replay_events_per_second']:,} events/s, "
            f"{rate['decisions_per_second']:,} decisions/s, {rate['seconds']:.1f} s in all "
            f"({rate['events_per_second']:,} events/s end to end)"
        )
    lines += ["", "## Overall", "", "| | baseline | candidate | change |", "|---|---:|---:|---:|"]
    for label, key in _ROWS:
        a, b = base.get(key), cand.get(key)
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {_delta(a, b)} |")
    for side in SIDES:
        hits = report[side].get("rule_hits") or {}
        if hits:
            listed = ", ".join(f"{rule} {count:,}" for rule, count in hits.items())
            lines += ["", f"Rules fired ({side}): {listed}."]
    lines += [
        "", "## Per day", "",
        "| day | cards reviewed | declines | precision (review or decline) | "
        "precision (decline) | frauds | fraud amount missed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for day in report["days"]:
        b, c = day["baseline"], day["candidate"]

        def pair(key: str, b: Mapping[str, Any] = b, c: Mapping[str, Any] = c) -> str:
            return f"{_fmt(b[key])} → {_fmt(c[key])}"

        lines.append(
            f"| {day['day']} | {pair('review_cards')} | {pair('declines')} "
            f"| {pair('precision_at_review_or_decline')} | {pair('precision_at_decline')} "
            f"| {_fmt(b['frauds'])} | {pair('fraud_amount_missed')} |"
        )
    changes = report["changes"]
    lines += [
        "", "## Changes", "",
        f"{changes['transactions_changed']:,} transactions change action; "
        f"{changes['scores_changed']:,} change score.",
        "", "| change | transactions | frauds | legitimate | amount |", "|---|---:|---:|---:|---:|",
    ]
    for name, _side, _action in CHANGES:
        part = changes[name]
        lines.append(
            f"| {name.replace('_', ' ')} | {part['count']:,} | {part['frauds']:,} "
            f"| {part['goods']:,} | {part['amount']:,.2f} |"
        )
    for name, _side, _action in CHANGES:
        shown = changes[name]["examples"]
        if not shown:
            continue
        lines += [
            "", f"### {name.replace('_', ' ').capitalize()} (largest amounts)", "",
            "| transaction | card | day | fraud | amount | score b → c | action b → c "
            "| rules b → c |",
            "|---|---|---|---:|---:|---|---|---|",
        ]
        for ex in shown:
            lines.append(
                f"| {ex['transaction_id']} | {ex['card_id']} | {ex['day']} | {ex['label']} "
                f"| {ex['amount']:,.2f} | {ex['score_baseline']:.4f} → {ex['score_candidate']:.4f} "
                f"| {ex['action_baseline']} → {ex['action_candidate']} "
                f"| {ex['rules_baseline'] or _DASH} → {ex['rules_candidate'] or _DASH} |"
            )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _bars(ax: Any, days: Sequence[str], values: Mapping[str, Sequence[float]]) -> None:
    positions = np.arange(len(days))
    width = 0.4
    for i, side in enumerate(SIDES):
        ax.bar(positions + (i - 0.5) * width, list(values[side]), width, color=_COLORS[side],
               label=side)
    step = max(1, len(days) // 15)
    ax.set_xticks(positions[::step], list(days)[::step], rotation=45, ha="right",
                  fontsize="small")


def _plot_reviews(report: Mapping[str, Any], path: Path) -> Path:
    days = [d["day"] for d in report["days"]]
    values = {s: [float(d[s]["review_cards"]) for d in report["days"]] for s in SIDES}
    capacity = float(report["reviewer_capacity"]["cards_per_day"])
    fig = Figure(figsize=(max(6.0, 0.3 * len(days) + 3), 4.5))
    ax = fig.add_subplot()
    _bars(ax, days, values)
    ax.axhline(capacity, color="tab:red", linestyle="--", label=f"capacity {capacity:.1f}")
    ax.set_ylim(0.0, max([capacity, *values["baseline"], *values["candidate"]]) * 1.3 + 1e-9)
    ax.set_ylabel("cards sent to review")
    ax.set_title("Cards reviewed per day against reviewer capacity")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def _plot_precision(report: Mapping[str, Any], path: Path) -> Path:
    days = [d["day"] for d in report["days"]]
    fig = Figure(figsize=(max(6.0, 0.3 * len(days) + 3), 4.5))
    ax = fig.add_subplot()
    positions = np.arange(len(days))
    for side in SIDES:
        for key, style, what in (
            ("precision_at_review_or_decline", "-", "review or decline"),
            ("precision_at_decline", ":", "decline"),
        ):
            ax.plot(positions, [d[side][key] for d in report["days"]], style, marker=".",
                    color=_COLORS[side], label=f"{side}, {what}")
    step = max(1, len(days) // 15)
    ax.set_xticks(positions[::step], days[::step], rotation=45, ha="right", fontsize="small")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("precision (transactions)")
    ax.set_title("Precision per day")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    return path


def write_all(backtest: Backtest, *, report: Path, predictions: Path) -> list[Path]:
    """Write the JSON report, the predictions CSV, the Markdown report and its plots;
    returns the paths written."""
    for path in (report, predictions):
        path.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(backtest.report, indent=2) + "\n")
    backtest.predictions.to_csv(predictions, index=False)
    plots = [
        _plot_reviews(backtest.report, plot_paths(report)[0]),
        _plot_precision(backtest.report, plot_paths(report)[1]),
    ]
    markdown = markdown_path(report)
    markdown.write_text(
        render_markdown(backtest.report, plots=[p.name for p in plots]), encoding="utf-8"
    )
    for path in (report, predictions, markdown):
        log.info("wrote %s", path)
    return [report, predictions, markdown, *plots]
