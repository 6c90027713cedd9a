"""The broker's garbage-collector pauses during a phase, from the JVM's own GC log.

A young collection stops the whole broker: no record is appended and no fetch is answered
until it ends. Under load every phase has some, and each one shows in the worker's
broker-to-broker tail although the worker did nothing wrong; this reads them from the log
the broker writes (``-Xlog:gc:file=...``, as ``stack/kafka.sh`` starts it and Kafka's own
start script does), so a report says how much of its tail was the broker's pauses.

A broker started without a GC log, or whose log cannot be read, gives ``available:
False`` and why: never zero pauses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["GcLog", "Pause", "describe", "find", "from_command_line", "parse"]

# -Xlog:gc:file=/path/gc.log:time,uptimemillis:filecount=5,filesize=20M (the file= part)
_FILE = re.compile(r"^-Xlog:gc[^:]*:(?:file=)?([^:]+)")
# [2026-12-02T07:46:36.154+0000][25173ms] GC(26) Pause Young (Normal) (G1 Evacuation
# Pause) 433M->170M(512M) 13.263ms: the time decoration is when the line was written,
# as the pause ended.
_PAUSE = re.compile(r"^\[(\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4})\].*? GC\(\d+\) Pause (.+?) "
                    r"[\d.]+[KMG]->.* ([\d.]+)ms$")


@dataclass(frozen=True)
class Pause:
    """One stop of the broker: when it started (epoch seconds), how long, what it was."""

    start: float
    ms: float
    kind: str


@dataclass(frozen=True)
class GcLog:
    """The broker's GC log, or why there is none."""

    path: Path | None
    note: str = ""

    def pauses(self) -> list[Pause]:
        """Every pause in the log and its rotated files (``gc.log.0``, ...), oldest first."""
        if self.path is None:
            return []
        files = sorted(self.path.parent.glob(self.path.name + ".*")) + [self.path]
        found: list[Pause] = []
        for f in files:
            try:
                found += parse(f.read_text(errors="replace"))
            except OSError:
                continue
        return sorted(set(found), key=lambda p: p.start)

    def during(self, since: float, until: float) -> dict[str, Any]:
        """The pauses that started between ``since`` and ``until`` (epoch seconds): how
        many, their sum and the longest, in ms, and the share of the time they took."""
        if self.path is None:
            return {"available": False, "note": self.note}
        if not self.path.exists():
            return {"available": False, "note": f"no GC log at {self.path}"}
        inside = [p for p in self.pauses() if since <= p.start <= until]
        total = sum(p.ms for p in inside)
        return {
            "available": True,
            "pauses": len(inside),
            "total_ms": round(total, 1),
            "max_ms": round(max((p.ms for p in inside), default=0.0), 1),
            "share": round(total / 1000 / (until - since), 4) if until > since else None,
        }


def parse(text: str) -> list[Pause]:
    """The pauses in a GC log written with the ``time`` decoration."""
    pauses = []
    for line in text.splitlines():
        m = _PAUSE.match(line.strip())
        if m is None:
            continue
        ended = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        ms = float(m.group(3))
        pauses.append(Pause(ended - ms / 1000, ms, m.group(2)))
    return pauses


def find(pid: int | None) -> GcLog:
    """The GC log of the broker process ``pid``, from its command line."""
    if pid is None:
        return GcLog(None, "the broker's process was not found")
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError as exc:
        return GcLog(None, f"cannot read the broker's command line: {exc}")
    return from_command_line(args)


def from_command_line(args: list[str]) -> GcLog:
    """The GC log a JVM started with ``args`` writes."""
    for arg in args:
        m = _FILE.match(arg)
        if m and "%" not in m.group(1):
            return GcLog(Path(m.group(1)))
        if m:
            return GcLog(None, f"the GC log's name has a pattern ({m.group(1)})")
    return GcLog(None, "the broker writes no GC log (start it with -Xlog:gc:file=...)")


def describe(stopped: dict[str, Any]) -> str:
    """:meth:`GcLog.during`'s figures in a few words."""
    if not stopped["available"]:
        return f"not known: {stopped['note']}"
    return (f"{stopped['pauses']} pauses, {stopped['total_ms']:g} ms in all, the longest "
            f"{stopped['max_ms']:g} ms")
