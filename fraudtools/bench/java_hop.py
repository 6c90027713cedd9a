"""One Kafka hop as Kafka's own Java tool measures it: ``java_hop_ms``.

``org.apache.kafka.tools.EndToEndLatency`` (kafka-tools, the broker's version) sends one
record at a time (acks all) to a fresh one-partition topic of the run and waits until its
own consumer has it before sending the next: a hop measured by a client that is not
Python, beside the floor phase's ``kafka_hop_ms``. Its percentiles are whole milliseconds
(each latency is truncated to ms); its average includes the first records, sent while the
JVM warms up.

The jars come from Maven Central with ``stack/kafka-tools/pom.xml`` into
``.stack/kafka-tools/libs``, fetched again only when the pom's sha256 changes (as
``stack/kafka.sh fetch`` does for the broker). Without java or mvn, or when the fetch or
the tool fails, the figure is ``{"available": false, "note": why}`` and the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudtools.bench.metrics import progress
from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.worker_process import ROOT

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench

__all__ = ["POM", "TOOL", "fetch", "parse_output", "phase"]

POM = ROOT / "stack" / "kafka-tools" / "pom.xml"
HOME = ROOT / ".stack" / "kafka-tools"
TOOL = "org.apache.kafka.tools.EndToEndLatency"
RECORD_SIZE = 300  # bytes: about a transaction's JSON
FETCH_TIMEOUT = 600.0
RUN_TIMEOUT = 300.0

_AVG = re.compile(r"^Avg latency:\s*([0-9]+(?:\.[0-9]+)?)\s*ms\s*$", re.MULTILINE)
_PERCENTILES = re.compile(
    r"^Percentiles:\s*50th\s*=\s*([0-9]+),\s*99th\s*=\s*([0-9]+),\s*99\.9th\s*=\s*([0-9]+)\s*$",
    re.MULTILINE)


def parse_output(text: str) -> dict[str, float] | None:
    """EndToEndLatency's figures from its standard output (its last summary): ``p50``,
    ``p99``, ``p999`` (whole ms) and ``avg`` (ms); None when the output has no summary."""
    avg, pct = _AVG.findall(text), _PERCENTILES.findall(text)
    if not avg or not pct:
        return None
    p50, p99, p999 = (int(v) for v in pct[-1])
    return {"p50": p50, "p99": p99, "p999": p999, "avg": float(avg[-1])}


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


async def _run(command: list[str], *, timeout: float) -> tuple[int | None, str, str]:
    """(exit status or None on a timeout, stdout, stderr) of ``command``; killed when it
    outlives ``timeout`` or the run is interrupted."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return None, "", ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def fetch(pom: Path = POM, home: Path = HOME) -> str | None:
    """The tool's jars in ``home/libs``: None when they are there (fetched now, or already
    for this pom's sha256), else why not. A fetch goes to ``libs.tmp`` and is swapped in
    whole; Maven's output is in ``home/fetch.log``."""
    libs = home / "libs"
    want = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs / ".pom.sha256"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return None
    mvn = shutil.which("mvn")
    if mvn is None:
        return f"mvn not found: cannot fetch Kafka's tools ({pom})"
    progress(f"java hop: fetching Kafka's tools from Maven Central into {libs} ...")
    tmp = libs.with_name("libs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    # Absolute paths: Maven resolves relative ones from the pom's directory.
    code, out, err = await _run(
        [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom.resolve()),
         f"-Dmaven.repo.local={(home.parent / 'm2').resolve()}",
         "dependency:copy-dependencies", f"-DoutputDirectory={tmp.resolve()}"],
        timeout=FETCH_TIMEOUT)
    log = home / "fetch.log"
    log.write_text(out + err)
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "timed out" if code is None else f"exited {code}"
        return f"Maven could not fetch Kafka's tools ({why}; {log}): {_tail(out + err, 3)}"
    (tmp / ".pom.sha256").write_text(want + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return None


async def measure(bootstrap: str, topic: str, records: int, *, home: Path = HOME
                  ) -> dict[str, Any]:
    """Run the tool on ``topic`` (one partition, made and removed here): ``java_hop_ms``."""
    java = shutil.which("java")
    if java is None:
        return {"available": False, "note": "java not found (Kafka's tools need Java 17+)"}
    problem = await fetch(home=home)
    if problem:
        return {"available": False, "note": problem}
    await create_topics(bootstrap, [topic], partitions=1)
    try:
        code, out, err = await _run(
            [java, "-cp", str(home / "libs" / "*"), TOOL, "--bootstrap-server", bootstrap,
             "--topic", topic, "--num-records", str(records), "--producer-acks", "all",
             "--record-size", str(RECORD_SIZE)],
            timeout=RUN_TIMEOUT)
    finally:
        await delete_topics(bootstrap, [topic])
    if code is None:
        return {"available": False, "note": f"{TOOL} took over {RUN_TIMEOUT:.0f} s"}
    figures = parse_output(out)
    if code != 0 or figures is None:
        return {"available": False,
                "note": f"{TOOL} exited {code} without its figures: {_tail(err or out)}"}
    warnings = [line for line in err.splitlines() if line.strip()]
    return {"available": True, **figures, "records": records, "record_size": RECORD_SIZE,
            **({"stderr": warnings[-10:]} if warnings else {})}


async def phase(bench: Bench) -> None:
    """``java_hop_ms`` on a topic of the run (no worker running)."""
    progress(f"java hop: {TOOL}, {bench.plan.java_records:,} records ...")
    hop = await measure(bench.bootstrap, f"{bench.run_id}-java-hop", bench.plan.java_records)
    bench.result["java_hop_ms"] = hop
    if hop["available"]:
        progress(f"java hop: p50 {hop['p50']} p99 {hop['p99']} p99.9 {hop['p999']} ms, avg "
                 f"{hop['avg']} ms (whole ms)")
    else:
        progress(f"java hop: not measured: {hop['note']}")
