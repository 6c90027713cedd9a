"""Pure parts of the bench's newer figures: Kafka's EndToEndLatency output parsed
(``java_hop_ms``) and its jars fetched once per pom, the broker-to-broker join of append
times (copies, missing decisions, a topic that is not LogAppendTime), the bar figure by
figure, and the report's lines for a figure that is missing."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from fraudtools.bench.java_hop import fetch, parse_output
from fraudtools.bench.kafka import Arrival, broker_to_broker, first_copies
from fraudtools.bench.report import java_hop_line, replay_line
from fraudtools.bench.run import bar

# What kafka-tools 4.4.0 printed on the local broker (2,000 records).
END_TO_END = """\
0\t244.044206
1000\t1.671203
Avg latency: 2.4461 ms
Percentiles: 50th = 1, 99th = 13, 99.9th = 22
"""


def test_the_tools_summary_is_parsed() -> None:
    assert parse_output(END_TO_END) == {"p50": 1, "p99": 13, "p999": 22, "avg": 2.4461}


def test_the_last_summary_counts_and_spaces_do_not_matter() -> None:
    two = ("Avg latency: 9.0 ms\nPercentiles: 50th = 9, 99th = 9, 99.9th = 9\n"
           "Avg latency:  2.5327 ms \nPercentiles: 50th = 1, 99th = 14, 99.9th = 58\n")
    assert parse_output(two) == {"p50": 1, "p99": 14, "p999": 58, "avg": 2.5327}


@pytest.mark.parametrize("text", [
    "",
    "Invalid number of arguments. Expected 5 or 6 positional arguments, but got 1.",
    "Exception in thread \"main\" org.apache.kafka.common.errors.TimeoutException\n",
    "Avg latency: 2.4461 ms\n",  # cut off before the percentiles
    "Percentiles: 50th = 1, 99th = 13, 99.9th = 22\n",  # no average
    "Avg latency: NaN ms\nPercentiles: 50th = 1, 99th = 13, 99.9th = 22\n",
    "Avg latency: 2.4 ms\nPercentiles: 50th = 1, 99th = 13\n",
])
def test_output_without_a_whole_summary_gives_nothing(text: str) -> None:
    assert parse_output(text) is None


def _arrivals(*rows: tuple[str, int]) -> list[Arrival]:
    return [Arrival(tx_id, float(i), appended) for i, (tx_id, appended) in enumerate(rows)]


def test_the_first_copy_of_each_decision_is_the_one_that_counts() -> None:
    first, seen = first_copies(_arrivals(("a", 1_010), ("b", 1_020), ("a", 1_500), ("a", 9)))
    assert {i: a.appended_ms for i, a in first.items()} == {"a": 1_010, "b": 1_020}
    assert seen == {"a": 3, "b": 1}
    got = broker_to_broker({"a": 1_000, "b": 1_018}, 2, first)
    assert got["available"] and got["decided"] == 2 and got["missing"] == 0
    assert (got["p50"], got["max"]) == (6.0, 10.0)  # 10 and 2 ms; the copies are not seen
    assert got["max_by_second"] == [10.0]
    second, _ = first_copies(_arrivals(("a", 1_010), ("b", 2_020), ("c", 2_950)))
    spread = broker_to_broker({"a": 1_000, "b": 2_018, "c": 1_999}, 3, second)
    assert spread["max_by_second"] == [951.0, 2.0]  # c was appended in the first second


def test_transactions_without_a_decision_are_missing_not_counted() -> None:
    first, _ = first_copies(_arrivals(("a", 1_003), ("other", 1_004)))
    got = broker_to_broker({"a": 1_000, "b": 1_000, "c": 1_001}, 3, first)
    assert (got["decided"], got["missing"]) == (1, 2)
    assert got["p50"] == got["p99"] == got["max"] == 3.0
    nothing = broker_to_broker({"a": 1_000}, 1, {})
    assert nothing["available"] and nothing["missing"] == 1 and math.isnan(nothing["p50"])


def test_producer_time_is_never_taken_for_the_brokers() -> None:
    first, _ = first_copies(_arrivals(("a", 1_003), ("b", 1_004)))
    acks = broker_to_broker({"a": 1_000}, 2, first)  # one ack carried CreateTime
    assert acks == {"available": False, "note": acks["note"]}
    assert "1 of 2 transactions" in acks["note"] and "transactions topic" in acks["note"]
    unstamped, _ = first_copies(_arrivals(("a", -1), ("b", 1_004)))
    decisions = broker_to_broker({"a": 1_000, "b": 1_000}, 2, unstamped)
    assert not decisions["available"] and "decisions topic" in decisions["note"]
    assert "p50" not in decisions


def _result(**changes: Any) -> dict[str, Any]:
    """A run that meets every line of the bar, with ``changes`` applied."""
    r: dict[str, Any] = {
        "throughput_eps": 10_000, "batching_speedup": 3.0, "replay_eps": 50_000,
        "core_seconds_per_million": {"worker": 70.0, "redis": 40.0, "kafka": 12.0},
        "broker_to_broker_ms": {
            "1000": {"p50": 3.0, "p95": 5.0, "p99": 12.0, "max": 30.0, "sustained": True},
            "5000": {"p50": 4.0, "p95": 9.0, "p99": 20.0, "max": 40.0, "sustained": True},
        },
    }
    r.update(changes)
    return r


LINES = [
    "throughput_eps >= 10000",
    "broker-to-broker p50 at 1000/s <= 3 ms",
    "broker-to-broker p99 at 1000/s <= 12 ms",
    "broker-to-broker p99 at 5000/s <= 20 ms, sustained",
    "worker core-seconds per million decisions <= 70",
    "Redis core-seconds per million decisions <= 40",
    "replay_eps >= 50000",
    "batching >= 3x baseline",
]


def _b2b(rate: str, **figures: Any) -> dict[str, Any]:
    lat = {k: dict(v) for k, v in _result()["broker_to_broker_ms"].items()}
    lat[rate].update(figures)
    return {"broker_to_broker_ms": lat}


def test_a_run_on_every_limit_meets_every_line() -> None:
    got = bar(_result())
    assert list(got) == LINES
    assert all(line["met"] for line in got.values())
    assert got["broker-to-broker p99 at 1000/s <= 12 ms"]["value"] == 12.0
    assert got["Redis core-seconds per million decisions <= 40"]["value"] == 40.0


@pytest.mark.parametrize(("line", "changes"), [
    (LINES[0], {"throughput_eps": 9_999}),
    (LINES[1], _b2b("1000", p50=3.01)),
    (LINES[2], _b2b("1000", p99=12.5)),
    (LINES[3], _b2b("5000", p99=20.01)),
    (LINES[3], _b2b("5000", sustained=False)),
    (LINES[4], {"core_seconds_per_million": {"worker": 70.1, "redis": 40.0}}),
    (LINES[5], {"core_seconds_per_million": {"worker": 70.0, "redis": 40.1}}),
    (LINES[6], {"replay_eps": 49_999}),
    (LINES[7], {"batching_speedup": 2.99}),
])
def test_each_line_is_missed_on_its_own(line: str, changes: dict[str, Any]) -> None:
    got = bar(_result(**changes))
    assert {k for k, v in got.items() if not v["met"]} == {line}


def test_a_figure_the_run_lacks_or_nan_misses_its_line() -> None:
    empty = bar({})
    assert list(empty) == LINES
    assert all(v == {"value": None, "met": False} for v in empty.values())
    unmeasured = bar(_result(broker_to_broker_ms={
        "1000": {"p50": None, "p99": None, "sustained": False,
                 "note": "2 of 2 transactions' acks carried the producer's time"},
        "5000": {"p50": math.nan, "p99": math.nan, "sustained": True}}))
    assert {k for k, v in unmeasured.items() if not v["met"]} == set(LINES[1:4])
    assert unmeasured[LINES[3]]["value"] is None


def test_the_jars_are_not_fetched_again_for_the_same_pom(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>\n")
    libs = tmp_path / "home" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka-tools.jar").write_text("jar")
    monkeypatch.setenv("PATH", "")  # no mvn: a fetch could only fail
    (libs / ".pom.sha256").write_text(hashlib.sha256(pom.read_bytes()).hexdigest() + "\n")
    assert asyncio.run(fetch(pom, tmp_path / "home")) is None
    pom.write_text("<project><!-- a version bump --></project>\n")
    why = asyncio.run(fetch(pom, tmp_path / "home"))
    assert why is not None and why.startswith("mvn not found")
    assert (libs / "kafka-tools.jar").exists()  # what was there stays until a fetch succeeds


def test_the_report_says_why_a_figure_is_missing() -> None:
    assert "not measured (java not found" in java_hop_line(
        {"java_hop_ms": {"available": False, "note": "java not found"}})
    line = java_hop_line({"java_hop_ms": {"available": True, "p50": 1, "p99": 14, "p999": 58,
                                          "avg": 2.5, "records": 5_000, "record_size": 300}})
    assert "p50 1 ms, p99 14 ms, p99.9 58 ms" in line and "5,000 records" in line
    assert "not in this report" in java_hop_line({}) and "not in this report" in replay_line({})
    assert "40,000 events/s" in replay_line({"replay_eps": 40_000, "phases": {"replay": {
        "days": 30, "transactions": 290_000, "labels": 1_000, "seconds": 7.275}}})
