"""The broker of ``make up`` writes the GC log the bench reads its pauses from."""

from __future__ import annotations

import time

from fraudtools.bench import broker_gc, system
from tests.integration.conftest import BOOTSTRAP


def test_the_local_broker_writes_the_gc_log_the_bench_reads() -> None:
    pid = system.listening_pid(int(BOOTSTRAP.rsplit(":", 1)[1]))
    log = broker_gc.find(pid)

    assert log.path is not None, log.note
    assert log.path.exists()
    since_start = log.during(0, time.time())
    assert since_start["available"] is True
    # Every pause the JVM logged is read: none is lost to the format.
    lines = log.path.read_text().count(" Pause ")
    assert since_start["pauses"] >= lines
