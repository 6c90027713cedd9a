"""The broker's GC pauses as the bench reads them (:mod:`fraudtools.bench.broker_gc`)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from fraudtools.bench import broker_gc

_E = "(G1 Evacuation Pause)"
LOG = "\n".join([
    "[2026-12-02T07:46:10.001+0000][100ms] Using G1",
    f"[2026-12-02T07:46:36.154+0000][25173ms] GC(26) Pause Young (Normal) {_E} "
    "433M->170M(512M) 13.263ms",
    f"[2026-12-02T07:46:51.680+0000][40700ms] GC(27) Pause Young (Normal) {_E} "
    "455M->172M(512M) 26.562ms",
    "[2026-12-02T07:46:52.000+0000][41020ms] GC(28) Pause Young (Concurrent Start) "
    "(G1 Humongous Allocation) 300M->290M(512M) 4.5ms",
    "[2026-12-02T07:46:52.100+0000][41120ms] GC(28) Concurrent Mark Cycle",
    "[2026-12-02T07:46:53.000+0000][42020ms] GC(28) Pause Remark 310M->300M(512M) 2.000ms",
]) + "\n"


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_pauses_are_read_with_their_start_and_length() -> None:
    pauses = broker_gc.parse(LOG)

    assert [p.ms for p in pauses] == [13.263, 26.562, 4.5, 2.0]
    # The line is written as the pause ends.
    assert pauses[0].start == pytest.approx(_at("2026-12-02T07:46:36.154+0000") - 0.013263)
    assert pauses[0].kind == "Young (Normal) (G1 Evacuation Pause)"
    assert pauses[3].kind == "Remark"


def test_a_phase_counts_the_pauses_that_started_inside_it(tmp_path: Path) -> None:
    (tmp_path / "gc.log.0").write_text(LOG.splitlines(keepends=True)[1])  # rotated
    (tmp_path / "gc.log").write_text("".join(LOG.splitlines(keepends=True)[2:]))
    log = broker_gc.GcLog(tmp_path / "gc.log")

    whole = log.during(_at("2026-12-02T07:46:30.000+0000"), _at("2026-12-02T07:46:55.000+0000"))
    assert whole == {"available": True, "pauses": 4, "total_ms": 46.3, "max_ms": 26.6,
                     "share": round(0.046325 / 25, 4)}
    later = log.during(_at("2026-12-02T07:46:51.000+0000"), _at("2026-12-02T07:46:52.500+0000"))
    assert (later["pauses"], later["max_ms"]) == (2, 26.6)


def test_no_log_is_not_known_never_zero(tmp_path: Path) -> None:
    none = broker_gc.from_command_line(["java", "-Xmx1G", "kafka.Kafka", "server.properties"])
    assert none.during(0, 10) == {"available": False, "note": "the broker writes no GC log "
                                  "(start it with -Xlog:gc:file=...)"}
    missing = broker_gc.GcLog(tmp_path / "gc.log").during(0, 10)
    assert missing["available"] is False and "no GC log at" in missing["note"]
    assert broker_gc.find(None).during(0, 1)["available"] is False
    assert broker_gc.find(os.getpid()).path is None  # this process is no JVM


def test_the_log_is_found_on_the_command_line_as_stack_kafka_sh_writes_it() -> None:
    args = ["java", "-Xmx1G", "-Xlog:gc:file=/s/kafka/logs/gc.log:time,uptimemillis:"
            "filecount=5,filesize=20M", "kafka.Kafka"]
    assert broker_gc.from_command_line(args).path == Path("/s/kafka/logs/gc.log")
    assert broker_gc.from_command_line(["-Xlog:gc*:file=/l/gc-%p.log:time"]).path is None
