"""Training's replay, timed in-process: ``training.replay.replay`` over a fixed slice of the
reference data (the generator's reference population, seed 0, the plan's ``replay_days``).

The data is generated and normalised before the clock starts; the time is the replay's own
(:class:`training.replay.ReplayStats`: its label events, the in-memory store and every
transaction's features). No worker runs meanwhile (it shares the cores).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraudtools.bench.metrics import progress
from training.dataset import normalise
from training.generator import GeneratorConfig, generate
from training.replay import replay

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench

__all__ = ["phase"]


def phase(bench: Bench) -> None:
    """``replay_eps`` (transactions and label events a second) and ``phases.replay``."""
    days = bench.plan.replay_days
    progress(f"replay: generating {days} days of the reference data ...")
    frame = normalise(generate(GeneratorConfig(seed=0, days=days)), source="bench")
    progress(f"replay: training's replay of {len(frame):,} transactions ...")
    _, stats = replay(frame)
    bench.result["replay_eps"] = round(stats.events_per_second)
    bench.result["phases"]["replay"] = {
        "transactions": stats.transactions, "labels": stats.labels,
        "seconds": round(stats.seconds, 3), "days": days,
    }
    progress(f"replay: {stats.transactions:,} transactions + {stats.labels:,} labels in "
             f"{stats.seconds:.2f} s, {bench.result['replay_eps']:,} events/s")
