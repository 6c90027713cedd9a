"""``make bench``: the worker's speed, latency, memory and cost on the real local stack.

    python -m fraudtools.bench            # the full run (about 10 minutes)
    python -m fraudtools.bench --quick    # a short run (about 3 minutes)

One run measures, on the broker and Redis of ``make up`` and the real worker process
(``python -m service``, started here on topics, a consumer group and a Redis key prefix
of the run's own, all removed at the end, also on error or Ctrl-C):

1. limit: a bare aiokafka consume -> produce pass-through in its own process (same
   records, decision-sized output, 4 partitions, batches of 500, acks awaited per batch);
   then the floor: one Kafka hop at 1,000/s (aiokafka, ``kafka_hop_ms``), and one hop as
   Kafka's own Java tool ``EndToEndLatency`` measures it (``java_hop_ms``);
2. throughput: the worker on a pre-loaded backlog, first to last decision, on topics
   created LogAppendTime (the broker stamps every record it appends);
3. latency: offered rates of 500, 1,000, 2,000, 5,000 a second and the highest sustained
   one, each for a fixed time, from the producer's send to the decision's arrival at a
   consumer (another process), with the worker's own time per stage from its /metrics;
   and from the transaction's append to the broker to its decision's append
   (``broker_to_broker_ms``, the broker's LogAppendTime of each);
4. baseline: the same worker with ``FRAUD_BATCH_SIZE=1``;
5. two workers in one consumer group: every transaction decided exactly once, the
   combined rate;
6. memory: the worker's resident set, Redis bytes per card and per terminal, projected
   to 10 million cards;
7. cost: CPU seconds of the worker, Redis and the broker (from /proc) per million
   decisions;
8. the decision layer, in-process: the batch path plain, with 50 rules, with a shadow
   model, with reason codes and with all three, interleaved in rounds, each against plain;
9. training's replay, in-process, over a fixed slice of the reference data
   (``replay_eps``).

It writes ``reports/bench.json`` (stable keys), ``reports/bench.md`` and
``reports/bench_latency.png``; worker logs go to ``reports/bench-logs/``. A benchmark, not
a test: it asserts nothing about speed (conventions, 11), it reports.

The package, a module per part::

    cli          the command line (``__main__`` runs it)
    run          the phases in order, the bar, cleanup on any exit (``execute``)
    context      ``Bench``: the run's names, processes, data and result; ``watch``
    plan         how much a full and a quick run do
    limit        phase 1, and the pass-through process itself
    floor        one Kafka hop at 1,000/s (the floor under the latency figures)
    java_hop     one Kafka hop by Kafka's EndToEndLatency (fetches its jars with Maven)
    throughput   phase 2 (with ``--profile``, py-spy on the worker)
    latency      phase 3
    baseline     phase 4
    two_workers  phase 5
    memory       phase 6 (Redis bytes by kind of key, through ``service.keys``)
    decision_layer  phase 8, and ``python -m fraudtools.bench.decision_layer``
    replay       phase 9: training's replay timed in-process
    worker       the worker process with its /metrics
    metrics      the worker's Prometheus text per stage, percentiles
    kafka        pre-loading, paced sending, reading back, the arrival-timing process,
                 the broker's append times joined (broker to broker)
    data         the generated input as Kafka records
    system       CPU and memory from /proc, the machine, git
    report       bench.json, bench.md, bench_latency.png
    processor    ``python -m fraudtools.bench.processor``: the batch path without Kafka
    profile      ``python -m fraudtools.bench.profile``: a py-spy profile by component

``fraudtools.soak`` runs on the same machinery.
"""

from __future__ import annotations

from fraudtools.bench.metrics import parse_metrics, stage_figures
from fraudtools.bench.plan import FULL, QUICK, Plan

__all__ = ["FULL", "QUICK", "Plan", "parse_metrics", "stage_figures"]
