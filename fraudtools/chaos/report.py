"""The scenarios' report: ``reports/chaos.json``, ``reports/chaos.md`` and the table in
``docs/reliability.md`` (replaced by complete runs only)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from fraudtools.chaos.scenario import LIVE_LATENCY, Outcome

__all__ = ["LEGEND", "TABLE_END", "TABLE_START", "table", "write_reports"]

LEGEND = (
    "*Decisions* counts every decision record, redeliveries included; *duplicated* the "
    "records beyond the first of a transaction (same score and action, checked), and "
    "*flagged* the first decisions marked `duplicate: true` although the transaction was "
    "sent once (a batch retried after it half ran: Known problem 7); "
    "*mismatched features*: decisions (every copy) whose 22 features differ from the "
    "offline replay of the same stream (a degraded one, from features on empty history, "
    "which is what fail-open decides on); *late labels*: decisions that counted fewer "
    "known frauds than the replay because a label was read after them (labels have their "
    "own topic; this stream's time is compressed, 16 days in ~23 s, so a few seconds are "
    "days) — never more frauds, nothing else different, and every label recorded in the "
    "end (checked); *dead letters*: of transactions (all valid), and of labels; "
    "*decisions paused*: the "
    "longest time without any decision after the fault started; *time to recover*: from "
    "the fault's start until every later transaction is decided within the live latency "
    f"(the larger of {LIVE_LATENCY:g} s and 1.5 x the p99 before the fault) of being sent; "
    "*max latency*: the worst send-to-decision time of the run."
)

TABLE_START = "<!-- chaos-table:start -->"
TABLE_END = "<!-- chaos-table:end -->"


def table(outcomes: Iterable[Outcome]) -> str:
    lines = [
        "| fault | events | decisions | lost | duplicated | degraded | mismatched features "
        "| late labels | dead letters (tx / labels) | decisions paused | time to recover "
        "| max latency | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for o in outcomes:
        mismatched = f"{o.mismatched}"
        if o.differ_from_uninterrupted != o.mismatched:
            mismatched += f" ({o.differ_from_uninterrupted} differ from an uninterrupted run)"
        duplicated = f"{o.duplicated}" + (f" ({o.flagged} flagged)" if o.flagged else "")
        lines.append(
            f"| {o.title} | {o.events:,} | {o.decisions:,} | {o.lost} | {duplicated} "
            f"| {o.degraded} | {mismatched} | {o.late_labels} "
            f"| {o.dead_letters} / {o.label_dead_letters} | {o.paused_seconds:.1f} s "
            f"| {o.recover_seconds:.1f} s | {o.max_latency_seconds:.1f} s "
            f"| {'pass' if o.ok else 'FAIL'} |"
        )
    return "\n".join(lines)


def _facts(o: Outcome) -> str:
    facts = [f"fault cleared after {o.fault_seconds:.1f} s",
             f"p99 send-to-decision before the fault {o.baseline_p99_seconds:.2f} s"]
    if o.fault.startswith("redis"):
        facts.append(f"{o.decided_during_outage:,} decided while Redis was down"
                     + (f", {o.undegraded_during_outage} of them not marked degraded"
                        if o.fault.endswith("open") else ""))
    facts += [n for n in o.notes if "log tail" not in n]
    if not o.ok:
        facts.append("PROBLEMS: " + "; ".join(o.problems))
    return "; ".join(facts)


def write_reports(
    outcomes: list[Outcome], *, reports: Path, doc: Path, meta: dict[str, Any]
) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "scenarios": [asdict(o) | {"ok": o.ok} for o in outcomes]}
    (reports / "chaos.json").write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    header = (
        f"# Chaos run {meta['finished_at']}\n\n"
        f"{meta['transactions']:,} generated transactions a scenario at {meta['rate']:g}/s "
        f"(fault {meta['fault_after']:g} s into the stream), private Kafka and Redis, "
        f"the real worker. {LEGEND}\n\n"
    )
    notes = "\n".join(f"- **{o.title}**: {_facts(o)}" for o in outcomes)
    (reports / "chaos.md").write_text(header + table(outcomes) + "\n\n" + notes + "\n")
    if meta.get("complete") and doc.exists():
        text = doc.read_text()
        if TABLE_START in text and TABLE_END in text:
            before, rest = text.split(TABLE_START, 1)
            _, after = rest.split(TABLE_END, 1)
            block = (
                f"{TABLE_START}\n_Measured {meta['finished_at']} by `make chaos` "
                f"({meta['transactions']:,} transactions a scenario at {meta['rate']:g}/s; "
                f"{meta['machine']})._\n\n{table(outcomes)}\n\n{notes}\n{TABLE_END}"
            )
            doc.write_text(before + block + after)
