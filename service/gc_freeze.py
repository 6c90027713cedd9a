"""Keep the worker's startup objects out of the garbage collector's full scans."""

from __future__ import annotations

import gc
import logging

from service import metrics

__all__ = ["freeze_startup_objects"]

log = logging.getLogger(__name__)


async def freeze_startup_objects() -> None:
    """Once the worker is up, take what it has built so far (modules, model, clients: ~100k
    objects) out of the garbage collector's full scans: they live as long as the process.
    Each full collection scanned them all and stopped the worker 50-120 ms on this machine,
    several times a minute under load: the latency tails (docs/benchmarks.md). From then on
    every collection's pause is timed (``fraud_gc_pause_seconds``)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    metrics.GC_FROZEN.set(frozen)
    metrics.GC_PAUSES.install()
    log.info("garbage collector: %d startup objects frozen", frozen)
