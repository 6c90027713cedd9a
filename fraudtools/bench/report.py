"""The benchmark's report: ``bench.json``, a markdown summary and the latency plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from fraudtools.bench.broker_gc import describe
from fraudtools.bench.metrics import STAGES

__all__ = [
    "decision_layer_lines",
    "java_hop_line",
    "markdown",
    "plot",
    "redis_setup",
    "replay_line",
    "summary",
    "write",
]


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _gc(stages: dict[str, Any]) -> str:
    gc = stages.get("gc")  # not in reports from before the worker timed its pauses
    return f"{gc['pauses']:,} ({gc['over_10ms']})" if gc else "n/a"


def _rates(r: dict[str, Any]) -> list[str]:
    return sorted(r.get("latency_ms", {}), key=int)


def _b2b(e: dict[str, Any]) -> dict[str, Any]:
    """A latency entry's broker-to-broker figures ({} in reports from before them)."""
    return dict(e.get("broker_to_broker_ms") or {})


def java_hop_line(r: dict[str, Any]) -> str:
    """``java_hop_ms`` in a sentence."""
    hop = r.get("java_hop_ms")
    if not hop:
        return "Kafka's EndToEndLatency: not in this report."
    if not hop.get("available"):
        return f"Kafka's EndToEndLatency: not measured ({hop.get('note')})."
    return (f"Kafka's own EndToEndLatency (Java, one record at a time, acks all, "
            f"{hop['records']:,} records of {hop.get('record_size', '?')} B, one partition): "
            f"p50 {hop['p50']} ms, p99 {hop['p99']} ms, p99.9 {hop['p999']} ms (whole ms), "
            f"average {hop['avg']} ms.")


def replay_line(r: dict[str, Any]) -> str:
    """``replay_eps`` in a sentence."""
    rp = r.get("phases", {}).get("replay")
    if rp is None:
        return "training's replay: not in this report."
    return (f"training's replay (in-process, {rp['days']} days of the reference data): "
            f"{rp['transactions']:,} transactions + {rp['labels']:,} labels in "
            f"{rp['seconds']:.2f} s, {_n(r.get('replay_eps'))} events/s")


def _cluster(r: dict[str, Any]) -> bool:
    return bool(r.get("redis_mode") == "cluster")


def redis_setup(r: dict[str, Any]) -> str:
    """What Redis the run used: one server, or the cluster's nodes and its WAIT."""
    if not _cluster(r):
        return f"one Redis ({r['stack']['redis']})"
    nodes = r["stack"].get("redis_nodes", [])
    primaries = sum(n["role"] == "primary" for n in nodes)
    replicas = sum(n["role"] == "replica" for n in nodes)
    wait = r.get("redis_wait_replicas")
    return (f"a Redis Cluster of {primaries} primaries and {replicas} replicas "
            f"({r['stack']['redis']}), each round trip ending with "
            + (f"WAIT {wait} per primary" if wait else "no WAIT"))


def _redis_cost(pm: dict[str, Any]) -> str:
    """Redis' core-seconds: the one server's, or a cluster's sum (primaries + replicas)."""
    if "redis_primaries" not in pm:
        return _n(pm.get("redis"))
    return (f"{_n(pm.get('redis'))} ({_n(pm.get('redis_primaries'))} + "
            f"{_n(pm.get('redis_replicas'))})")


NOT_REASONS = "not measured (the model carries no reasons)."


def _share(value: float) -> str:
    return f"{value:.1%}"


def _times(v: dict[str, Any], what: str) -> str:
    """A ratio to plain, and its range over the rounds when they differ."""
    low, high = v.get(f"{what}_vs_plain_range") or (None, None)
    spread = f" ({low:.2f}–{high:.2f})" if low is not None and low != high else ""
    return f"{v[f'{what}_vs_plain']:.2f}{spread}"


def decision_layer_lines(d: dict[str, Any]) -> list[str]:
    """The decision layer (``bench.json``'s ``decision_layer``) as a markdown table."""
    warm = d["transactions"] - d["measured"]
    redis = "a Redis Cluster" if d.get("redis_mode") == "cluster" else "one Redis"
    rounds = f"{d['rounds']} round{'s' if d['rounds'] != 1 else ''}"
    out = [
        f"In-process (`BatchPipeline.decide` on {redis}, no Kafka), {rounds}; in each, every "
        "variant on a fresh key prefix, the variants taking turns batch by batch: "
        f"{d['measured']:,} transactions measured a variant after {warm:,} that warm the "
        f"state up, batches of {d['batch']}. "
        f"Model {d['model_version']}, challenger {d['challenger_version']}, "
        f"{d['rules']} rules. Medians over the rounds; \"× plain\": the median of each "
        "round's ratio to plain (in brackets: the lowest and the highest).",
        "",
        "| variant | transactions/s (min–max) | × plain | CPU µs a transaction | × plain | "
        "not approve | rules fired / changed | stages, µs a transaction | reasons, µs an "
        "explained row |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, v in d["variants"].items():
        if not v["available"]:
            out.append(f"| {name}: {v['description']} | {v['note']} | | | | | | | |")
            continue
        stages = ", ".join(f"{s} {_n(us, 1)}" for s, us in v["stage_us"].items()) or "–"
        rules = (f"{v['rules_fired']:,} / {v['changed_by_rules']:,}"
                 + (f" ({v['rule_errors']:,} errors)" if v["rule_errors"] else "")
                 if name in ("rules50", "all") else "–")
        out.append(
            f"| {name}: {v['description']} | {_n(v['tps_median'])} ({_n(v['tps_min'])}–"
            f"{_n(v['tps_max'])}) | {_times(v, 'tps')} | {_n(v['cpu_us_median'], 1)} | "
            f"{_times(v, 'cpu')} | {_share(v['not_approve_share'])} | {rules} | {stages} | "
            f"{_n(v['reasons_us_per_explained_row'], 1)} |")
    bound = d.get("reasons_within_10_percent")
    out += ["", "Reasons on the approve path (issue 15: within 10 % of plain's throughput): "
            + (NOT_REASONS if bound is None else
               f"{bound['value']:.2f} of plain, {'met' if bound['met'] else 'NOT met'}.")]
    return out


def _broker_gc(e: dict[str, Any]) -> str:
    stopped = e.get("broker_gc_pauses")
    return "–" if stopped is None else describe(stopped)  # not in older reports


def summary(r: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"limit {_n(r['limit_eps'])}/s   throughput {_n(r['throughput_eps'])}/s "
        f"({r['throughput_vs_limit']:.0%} of the limit)   baseline (batch 1) "
        f"{_n(r['baseline_eps'])}/s ({r['batching_speedup']:.1f}x)   two workers "
        f"{_n(r['two_workers_eps'])}/s",
    ]
    if "burst_eps" in r:  # not in reports from before the size bounds
        b = r["phases"]["burst"]
        lines.append(f"  burst: one card's {b['sent']:,} transactions and their labels "
                     f"{_n(r['burst_eps'])}/s ({r['burst_vs_throughput']:.0%} of the normal "
                     f"traffic's), {b['missing']} undecided, {b['dead_letters']} dead letters")
    hop = r.get("kafka_hop_ms") or {}
    lines.append(f"  floor: one Kafka hop at 1,000/s: p50 {hop.get('p50')} p99 {hop.get('p99')} ms "
                 "(a decision takes two)")
    lines.append(f"  {java_hop_line(r)}")
    for rate in _rates(r):
        e = r["latency_ms"][rate]
        b = _b2b(e)
        lines.append(f"  {int(rate):>6,}/s offered, {_n(e['achieved_eps'])}/s achieved: p50 "
                     f"{e['p50']} p95 {e['p95']} p99 {e['p99']} max {e['max']} ms"
                     f"{'' if e['sustained'] else '  (not sustained)'}; broker to broker "
                     + (f"p50 {b.get('p50')} p99 {b.get('p99')} max {b.get('max')} ms"
                        if b.get("available") else f"n/a ({b.get('note', 'not measured')})"))
    lines.append(replay_line(r))
    cost = r["core_seconds_per_million"]
    lines.append(f"Redis: {redis_setup(r)}; commands a decision "
                 f"{r.get('redis_commands_per_decision')}")
    lines.append(f"cost per million decisions: worker {_n(cost.get('worker'))}, redis "
                 f"{_redis_cost(cost)}, kafka {_n(cost.get('kafka'))} core-seconds; worker "
                 f"RSS {_n(r['worker_rss_mb'])} MB; Redis {_n(r['redis_bytes_per_card'])} "
                 f"B/card, {_n(r['redis_bytes_per_terminal'])} B/terminal")
    if "decision_layer" in r:  # not in reports from before it
        variants = r["decision_layer"]["variants"]
        lines.append("decision layer (in-process, × plain): " + ", ".join(
            f"{name} {v['tps_vs_plain']:.2f} of the rate, {v['cpu_vs_plain']:.2f} of the CPU"
            if v["available"] else f"{name} {v['note']}" for name, v in variants.items()
            if name != "plain"))
    lines += [f"  bar: {name}: {_n(c['value'], 2)} {'met' if c['met'] else 'NOT met'}"
              for name, c in r["bar"].items()]
    return "\n".join(lines)


def markdown(r: dict[str, Any], png: str) -> str:
    m, g = r["machine"], r["git"]
    lat = r["latency_ms"]
    out = [
        f"# Benchmark ({r['mode']}{', Redis Cluster' if _cluster(r) else ''}) — "
        f"{r['started_at']}",
        "",
        f"Redis: {redis_setup(r)}.",
        "",
        f"Commit `{(g['commit'] or '?')[:12]}`{' (with uncommitted changes)' if g['dirty'] else ''}"
        f"; {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gb']} GB; Python {m['python']}, Kafka {m['kafka']}, Redis {m['redis']}; "
        f"load average at start {m['load_average_at_start']}. Broker, Redis, worker and this "
        f"benchmark share the same cores. {r['duration_seconds']} s.",
        "",
        "## Against the bar",
        "",
        "| figure | measured | met |",
        "|---|---:|:---:|",
    ]
    out += [f"| {name} | {_n(c['value'], 2)} | {'yes' if c['met'] else '**no**'} |"
            for name, c in r["bar"].items()]
    cost = r["core_seconds_per_million"]
    tp = r["phases"]["throughput"]
    out += [
        "",
        "## Figures",
        "",
        "| | |",
        "|---|---:|",
        f"| pass-through limit (aiokafka consume → produce) | {_n(r['limit_eps'])} /s |",
        f"| throughput, one worker, pre-loaded backlog | {_n(r['throughput_eps'])} /s |",
        f"| baseline, `FRAUD_BATCH_SIZE=1` | {_n(r['baseline_eps'])} /s |",
        f"| two workers, one group | {_n(r['two_workers_eps'])} /s |",
        f"| highest offered rate sustained | {_n(r['max_sustained_eps'])} /s |",
        f"| worker resident memory (steady state) | {_n(r['worker_rss_mb'], 1)} MB |",
        f"| Redis per card / per terminal | {_n(r['redis_bytes_per_card'])} B / "
        f"{_n(r['redis_bytes_per_terminal'])} B |",
        f"| cost: worker / Redis{' (primaries + replicas)' if _cluster(r) else ''} / broker "
        f"core-seconds per million decisions | {_n(cost.get('worker'))} / "
        f"{_redis_cost(cost)} / {_n(cost.get('kafka'))} |",
        f"| Redis commands processed a decision (every client's) | "
        f"{r.get('redis_commands_per_decision', {}).get('total', '–')} |",
        f"| training's replay, in-process "
        f"({(r.get('phases', {}).get('replay') or {}).get('days', '?')} days) | "
        f"{_n(r.get('replay_eps'))} events/s |",
        "",
        "## Latency, send → decision at a consumer (ms)",
        "",
        f"![latency against offered rate]({png})",
        "",
        f"Floor: one Kafka hop (producer, acks all → a consumer in another process) at 1,000/s "
        f"took p50 {(r.get('kafka_hop_ms') or {}).get('p50')} ms, p99 "
        f"{(r.get('kafka_hop_ms') or {}).get('p99')} ms in this run; a decision takes two hops "
        "plus the worker.",
        "",
        java_hop_line(r),
        "",
        "| offered /s | achieved /s | p50 | p95 | p99 | max | sustained | mean batch | worker ms "
        "per event (decode, redis, features, model, emit) | worker GC pauses (> 10 ms) |",
        "|---:|---:|---:|---:|---:|---:|:---:|---:|---|---:|",
    ]
    for rate in _rates(r):
        e = lat[rate]
        st = e["worker_stages"]
        per_event = ", ".join(_n(st["ms_per_event"].get(s), 3) for s in STAGES)
        out.append(f"| {int(rate):,}{' (max)' if e['kind'] == 'max' else ''} | "
                   f"{_n(e['achieved_eps'])} | {e['p50']} | {e['p95']} | {e['p99']} | {e['max']} | "
                   f"{_n(e['sustained'])} | {_n(st['mean_batch_size'], 1)} | {per_event} | "
                   f"{_gc(st)} |")
    out += [
        "",
        "## Broker to broker: transaction appended → decision appended (ms)",
        "",
        "The broker's own LogAppendTime of each transaction (from its ack) and of the first "
        "copy of its decision (from the record): no client in between, whole milliseconds, "
        "one stamp for a whole produced batch.",
        "",
        "The broker's garbage-collector pauses while each rate ran are from its GC log: "
        "a pause stops every append, the decisions' too.",
        "",
        "| offered /s | p50 | p95 | p99 | max | mean | decided | missing | sustained | "
        "broker GC pauses |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|",
    ]
    for rate in _rates(r):
        e = lat[rate]
        b = _b2b(e)
        name = f"{int(rate):,}{' (max)' if e['kind'] == 'max' else ''}"
        if not b.get("available"):
            out.append(f"| {name} | {b.get('note', 'not measured')} | | | | | | | "
                       f"{_n(e['sustained'])} | {_broker_gc(e)} |")
            continue
        out.append(f"| {name} | {b['p50']} | {b['p95']} | {b['p99']} | {b['max']} | "
                   f"{b['mean']} | {_n(b['decided'])} | {_n(b['missing'])} | "
                   f"{_n(e['sustained'])} | {_broker_gc(e)} |")
    st = tp["stages"]
    out += [
        "",
        "## Where the worker's time goes (throughput phase)",
        "",
        f"Mean batch {_n(st['mean_batch_size'], 1)} events. Per event: "
        + ", ".join(f"{s} {_n(st['ms_per_event'].get(s), 4)} ms" for s in STAGES)
        + f" — {_n(st['ms_per_event_total'], 4)} ms in the stages against "
        f"{1000 / r['throughput_eps']:.4f} ms of wall time per decision; the rest is the "
        "Kafka consumer and producer, the event loop and waiting for Redis."
        + (f" Garbage collector: {st['gc']['pauses']:,} pauses, {st['gc']['ms_total']} ms in "
           f"all, {st['gc']['over_10ms']} over 10 ms." if st.get("gc") else ""),
        "",
        "## Cost (CPU from /proc, core-seconds per million decisions)",
        "",
        "| phase | worker | redis"
        + (" (primaries + replicas)" if _cluster(r) else "")
        + " | kafka | cores busy (machine) | other processes (cores) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("throughput", "baseline", "limit"):
        c = r["phases"][name]["cpu"]
        pm = c["core_seconds_per_million"]
        worker = pm.get("worker", pm.get("limit"))
        out.append(f"| {name} | {_n(worker)} | {_redis_cost(pm)} | {_n(pm.get('kafka'))} | "
                   f"{_n(c['machine_busy_cores'], 2)} | {_n(c['other_processes_cores'], 2)} |")
    for rate in _rates(r):
        e = lat[rate]
        pm = e["core_seconds_per_million"]
        out.append(f"| latency {int(rate):,}/s | {_n(pm.get('worker'))} | {_redis_cost(pm)} | "
                   f"{_n(pm.get('kafka'))} | {_n(e['machine_busy_cores'], 2)} | "
                   f"{_n(e.get('other_processes_cores'), 2)} |")
    if _cluster(r):
        pm = tp["cpu"]["core_seconds_per_million"]
        out += ["", "Per node, throughput phase: " + ", ".join(
            f"{n['address']} ({n['role']}) {_n(pm.get('redis@' + n['address']))}"
            for n in r["stack"].get("redis_nodes", [])) + "."]
    red = r["redis"]
    proj = red.get("projection_10m_cards") or {}
    two = r["phases"]["two_workers"]
    out += [
        "",
        "## Memory",
        "",
        f"Worker: {_n(r['worker_rss_mb'], 1)} MB resident "
        f"(peak {_n(r['worker_rss_peak_mb'], 1)} MB). "
        f"Redis: {red['cards']:,} cards and {red['terminals']:,} terminals after "
        f"{red['history_days_loaded']} days of event time "
        f"({'steady state' if red['steady_state'] else 'not yet the 40-day steady state'}); "
        f"{_n(red['mean_transactions_per_card_key'], 1)} transactions per card key, "
        f"{_n(red['mean_transactions_per_terminal_key'], 1)} per terminal key. "
        f"10 million cards ({_n(proj.get('terminals'))} terminals): "
        f"{_n(proj.get('gb_memory_usage'), 1)} GB by MEMORY USAGE, "
        f"{_n(proj.get('gb_used_memory_delta'), 1)} GB by the used_memory delta.",
        "",
        "## Two workers",
        "",
        f"{two['sent']:,} sent, {two['distinct']:,} decided, {two['repeated']} decided more than "
        f"once, {two['missing']} missing: exactly once {_n(two['exactly_once'])}. Per worker: "
        f"{two['per_worker_decisions']}.",
        "",
    ]
    if "decision_layer" in r:  # not in reports from before it
        out += ["## The decision layer: rules, shadow, reasons", "",
                *decision_layer_lines(r["decision_layer"]), ""]
    return "\n".join(out)


def plot(r: dict[str, Any], path: Path) -> None:
    """Latency percentiles against offered rate, and the worker's time per event by stage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rates = _rates(r)
    lat = r["latency_ms"]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2)
    x = [int(k) for k in rates]
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x:")):
        ax.plot(x, [lat[k][key] for k in rates], style, label=key)
    for key, style in (("p50", "o--"), ("p99", "^--")):
        b2b = [_b2b(lat[k]).get(key) for k in rates]
        ax.plot(x, [math.nan if v is None else v for v in b2b], style,
                label=f"broker → broker {key}")
    ax.plot([1000, 5000], [12, 20], "r*", markersize=12, label="bar (broker → broker p99)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{v:,}" for v in x], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("offered transactions a second")
    ax.set_ylabel("send → decision at a consumer; broker → broker (ms)")
    ax.set_title("Latency against offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()

    labels = [f"{int(k):,}/s" for k in rates] + ["backlog"]
    stages = [lat[k]["worker_stages"]["ms_per_event"] for k in rates]
    stages.append(r["phases"]["throughput"]["stages"]["ms_per_event"])
    bottom = [0.0] * len(labels)
    for stage in STAGES:
        values = [(s.get(stage) or 0.0) * 1000 for s in stages]
        bx.bar(labels, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    bx.set_ylabel("worker µs per event")
    bx.set_title("Worker time per event by stage")
    bx.legend()
    fig.savefig(path, dpi=110)


def write(r: dict[str, Any], where: Path, name: str = "bench") -> list[Path]:
    """``<name>.json``, ``<name>.md`` and ``<name>_latency.png`` in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    paths = [where / f"{name}.json", where / f"{name}.md", where / f"{name}_latency.png"]
    paths[0].write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
                         + b"\n")
    plot(r, paths[2])
    paths[1].write_text(markdown(r, paths[2].name))
    return paths
