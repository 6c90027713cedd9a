"""What the decision layer costs: 50 rules, reason codes and a shadow model against the
plain path, in one run.

    python -m fraudtools.bench.decision_layer [--transactions 40000] [--rounds 5]
    python -m fraudtools.bench.decision_layer --redis-mode cluster [--json PATH]

In-process, as :mod:`fraudtools.bench.processor`: the worker's ``BatchPipeline.decide`` on
the local Redis (the worker's own store, ``service.stores.build_store``), batches of 500,
each decision encoded with ``to_json()``. The same generated transactions, with the
optional currency, mcc, country and channel (one in ten without), go through each variant:
``plain`` (the shipped model, no rules, no challenger), ``rules50`` (and the rules of
:data:`RULES` in a temp file, ``RulesHolder``), ``shadow`` (and a challenger: a copy of
the shipped model under another version name, ``ModelHolder`` on a temp models directory,
so a second model of the same size), ``reasons`` (the model's explainer, on the decisions
that do not approve) and ``all`` (the three, the real holders). The first three use the
model with its explainer taken off, so each variant adds one thing.

Rounds: each gives every variant a fresh key prefix (removed after it) and the same
transactions, the variants taking turns batch by batch (the order turned by one each
batch), so a shared machine's drifts fall on all of them alike; the first half warms the
state up, the second is timed. Per variant: medians over the rounds of transactions a
second and of µs of this process's CPU a transaction, the median of each round's ratio to
plain, the share not approving (the only decisions explained), the decisions the rules
fired on and changed, rule errors, and the worker's own stage times
(``fraud_stage_seconds``; reasons also per explained row). A model without an explainer
is not measured for reasons (:data:`NOT_AVAILABLE`; ``all`` runs without): nothing is
estimated.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from pydantic import SecretStr

from fraudcore import Thresholds, decide
from fraudcore.artifacts import METADATA_FILE, POINTER_FILE
from fraudtools.bench import data as bench_data
from fraudtools.bench.kafka import freeze_gc, runner
from fraudtools.bench.metrics import progress
from fraudtools.bench.processor import _NoSink  # decide() sends nothing
from fraudtools.bench.redis_nodes import MODES, RedisTarget
from fraudtools.bench.report import decision_layer_lines
from fraudtools.worker_process import ROOT
from service import engine, metrics
from service.model import CHALLENGER_FILE, Model, ModelHolder, current_version
from service.pipeline import BatchPipeline, OutputTopics
from service.ports import Models
from service.records import Message, Source
from service.rules import RulesHolder
from service.settings import Settings
from service.stores import build_store

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench

__all__ = ["NOT_AVAILABLE", "RULES", "VARIANTS", "Run", "Variant", "main", "measure",
           "median", "phase", "rules_yaml", "summarize", "with_optional_fields"]

BATCH = 500
NOT_AVAILABLE = "not available: the model carries no reasons"
#: The worker's stages that the decision layer adds (``fraud_stage_seconds``), and the model.
STAGES = ("model", "rules", "shadow", "reasons")

# An analyst's file: amounts, features by name, score bands, time, the optional fields,
# terminal lists, a few string functions. Most never fire on the generated traffic (its
# amounts stay under ~1,500): a few do (three "bad" terminals, small amounts of old cards).
RULES: tuple[tuple[str, str, str], ...] = (  # (id, action, when)
    ("big-amount", "decline", "amount > 5000"),
    ("big-amount-at-night", "decline", "amount > 2000 && hour < 6"),
    ("over-3x-card-mean", "review", "amount > 1000 && amount > 3.0 * amount_mean_by_card_30d"),
    ("velocity-1h", "review", "tx_count_by_card_1h >= 8"),
    ("velocity-1d", "review", "tx_count_by_card_1d >= 15"),
    ("ratio-to-median", "review", "amount_ratio_median_by_card_30d > 10.0 && amount > 500"),
    ("zscore", "review", "amount_zscore_by_card_30d > 6.0 && amount > 300"),
    ("score-band-large", "review", "score >= 0.3 && score < 0.5 && amount > 800"),
    ("small-old-card", "approve", "score < 0.05 && amount < 5 && tx_count_by_card_30d > 20"),
    ("terminal-fraud-7d", "review",
     "fraud_rate_by_terminal_7d_delay7d > 0.5 && tx_count_by_terminal_7d_delay7d >= 4"),
    ("terminal-fraud-count", "review", "fraud_count_by_terminal_30d_delay7d >= 10"),
    ("terminal-recent-fraud", "review", "fraud_age_days_min_by_terminal_37d < 1.0 && amount > 400"),
    ("new-card-large", "review", "tx_count_by_card_30d == 0 && amount > 1000"),
    ("rapid-repeat", "review", "seconds_since_last_by_card_30d < 10.0 && amount > 200"),
    ("weekend-night-large", "review", "is_weekend == 1 && is_night == 1 && amount > 1500"),
    ("sunday-atm", "review", 'weekday == 7 && channel == "atm" && amount > 800'),
    ("online-at-night", "review", 'hour < 6 && channel == "online" && tx_count_by_card_1h >= 3'),
    ("moto-large", "review", 'channel == "moto" && amount > 1200'),
    ("atm-velocity", "review", 'channel == "atm" && tx_count_by_card_1d >= 10'),
    ("foreign-currency-large", "review", 'currency != "" && currency != "EUR" && amount > 1500'),
    ("watched-currency", "review", 'currency in ["RUB", "NGN", "VND"] && amount > 300'),
    ("gambling", "review", 'mcc in ["7995", "7800", "7801", "7802"] && amount > 500'),
    ("quasi-cash", "decline", 'mcc in ["6051", "6540", "4829"] && amount > 1000'),
    ("airline-large", "review", 'mcc.startsWith("3") && amount > 3000'),
    ("sanctioned-country", "decline", 'country in ["KP", "IR", "SY", "CU"]'),
    ("us-in-euros", "review", 'country == "US" && currency == "EUR" && amount > 2000'),
    ("abroad-online-night", "review",
     'country != "" && country != "FR" && channel == "online" && hour < 5 && amount > 700'),
    ("test-terminals", "allow", 'terminal_id in ["T-TEST-1", "T-TEST-2", "T-TEST-3"]'),
    ("watched-terminals", "review", 'terminal_id in ["1337", "4242", "7777"]'),
    ("trusted-terminals-small", "approve",
     'terminal_id in ["100", "200", "300", "400"] && amount < 50'),
    ("lab-terminals", "allow", 'terminal_id.startsWith("T-LAB-")'),
    ("test-cards", "allow", 'card_id.startsWith("999999")'),
    ("test-transactions", "allow", 'transaction_id.matches("^test-[0-9]+$")'),
    ("kiosk-large", "review", 'terminal_id.matches("^(ATM|KIOSK)-[0-9]{4}$") && amount > 500'),
    ("card-ending-0000", "review", 'card_id.endsWith("0000") && amount > 2500'),
    ("emulator", "decline", 'has(extra.device_id) && extra.device_id == "emulator"'),
    ("round-amount", "review", "amount in [500.0, 1000.0, 2000.0, 5000.0]"),
    ("christmas-large", "review",
     "timestamp >= timestamp('2026-12-24T00:00:00Z') && "
     "timestamp < timestamp('2026-12-27T00:00:00Z') && amount > 1000"),
    ("day-mean-jump", "review",
     "amount_mean_by_card_1d > 4.0 * amount_mean_by_card_7d && tx_count_by_card_1d >= 3"),
    ("day-burst", "review",
     "tx_count_by_card_1d > 10 && tx_count_by_card_1d > 0.8 * tx_count_by_card_30d"),
    ("busy-terminal", "review", "tx_count_by_terminal_1d_delay7d > 50"),
    ("terminal-fraud-30d", "review", "fraud_rate_by_terminal_30d_delay7d > 0.3 && amount > 250"),
    ("terminal-old-fraud", "review",
     "fraud_age_days_max_by_terminal_37d > 36.0 && fraud_count_by_terminal_30d_delay7d > 5"),
    ("terminal-fraud-1d", "review",
     "fraud_rate_by_terminal_1d_delay7d >= 1.0 && tx_count_by_terminal_1d_delay7d >= 3"),
    ("score-very-high", "decline", "score > 0.98 && amount > 100"),
    ("score-mid-tiny", "approve",
     "score >= 0.5 && score < 0.7 && amount < 10 && tx_count_by_card_30d > 30"),
    ("weekend-small-hours", "review", "weekday >= 6 && hour >= 1 && hour <= 4 && amount > 600"),
    ("digital-goods-burst", "review",
     'mcc == "5816" && channel == "online" && tx_count_by_card_1h >= 5'),
    ("pounds-abroad", "review",
     'currency == "GBP" && country != "" && country != "GB" && amount > 900'),
    ("long-id-or-no-channel", "review",
     'size(transaction_id) > 64 || (channel == "" && amount > 2500)'),
)

_CURRENCIES = ("EUR",) * 9 + ("GBP", "USD")
_MCCS = ("5411", "5812", "5999", "5541", "4111", "5816", "7995", "6011", "5311", "3000",
         "5912", "5732", "4829")
_COUNTRIES = ("FR", "FR", "FR", "FR", "BE", "DE", "ES", "GB", "US")
_CHANNELS = ("card_present", "card_present", "online", "card_present", "online", "moto", "atm")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str


VARIANTS = (
    Variant("plain", "the shipped model, no rules, no challenger"),
    Variant("rules50", f"{len(RULES)} rules"),
    Variant("shadow", "a challenger of the same size in the shadow"),
    Variant("reasons", "reason codes on the decisions that do not approve"),
    Variant("all", "rules, shadow and reasons"),
)


def rules_yaml(rules: Sequence[tuple[str, str, str]] = RULES) -> str:
    """The rules as an analyst's YAML file (:mod:`fraudrules.ruleset`)."""
    listed = [{"id": rule_id, "when": when, "action": action} for rule_id, action, when in rules]
    return str(yaml.safe_dump({"rules": listed}, sort_keys=False, width=200))


def with_optional_fields(values: Sequence[bytes]) -> list[bytes]:
    """Each transaction with currency, mcc, country and channel, mixed by position; one in
    ten sends none of them."""
    out = []
    for i, value in enumerate(values):
        if i % 10 == 9:
            out.append(value)
            continue
        tx = orjson.loads(value)
        tx.update(currency=_CURRENCIES[i % len(_CURRENCIES)], mcc=_MCCS[i % len(_MCCS)],
                  country=_COUNTRIES[i % len(_COUNTRIES)], channel=_CHANNELS[i % len(_CHANNELS)])
        out.append(orjson.dumps(tx))
    return out


@dataclass(frozen=True)
class Run:
    """One variant's measured half in one round."""

    variant: str
    round_no: int
    measured: int
    wall: float  # seconds
    cpu: float  # seconds of this process's CPU
    not_approve: int = 0
    fired: int = 0  # decisions on which at least one rule fired
    changed: int = 0  # ... and whose action is not the model's
    shadowed: int = 0
    explained: int = 0
    rule_errors: int = 0
    stages: Mapping[str, float] = field(default_factory=dict)  # seconds by stage
    decided: int = 0
    dead: int = 0  # dead-lettered

    @property
    def tps(self) -> float:
        return self.measured / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.measured * 1e6


def median(values: Sequence[float]) -> float:
    """The median (NaN for none)."""
    return float(statistics.median(values)) if values else float("nan")


def _ratios(runs: Sequence[Run], plain: Mapping[int, Run], value: str) -> list[float]:
    """Each round's ``value`` against plain's in the same round."""
    return [getattr(r, value) / getattr(plain[r.round_no], value) for r in runs
            if r.round_no in plain]


def summarize(runs: Sequence[Run], *, explains: bool) -> dict[str, Any]:
    """Per variant: medians over the rounds, ratios to plain, counts (``bench.json``)."""
    plain = {r.round_no: r for r in runs if r.variant == "plain"}
    variants: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        entry: dict[str, Any] = {"description": v.description, "available": True}
        if not explains and v.name == "reasons":
            variants[v.name] = {**entry, "available": False, "note": NOT_AVAILABLE}
            continue
        if not explains and v.name == "all":
            entry["description"] = f"rules and shadow ({NOT_AVAILABLE})"
        mine = [r for r in runs if r.variant == v.name]
        if not mine:
            raise ValueError(f"no run of {v.name}")
        tps, cpu = [r.tps for r in mine], [r.cpu_us for r in mine]
        measured = sum(r.measured for r in mine)
        stages = {s: round(median([r.stages.get(s, 0.0) / r.measured * 1e6 for r in mine]), 2)
                  for s in STAGES if any(r.stages.get(s) for r in mine)}
        per_row = [r.stages.get("reasons", 0.0) / r.explained * 1e6 for r in mine if r.explained]
        tps_ratios, cpu_ratios = _ratios(mine, plain, "tps"), _ratios(mine, plain, "cpu_us")
        entry.update(
            rounds=len(mine),
            tps_median=round(median(tps)), tps_min=round(min(tps)), tps_max=round(max(tps)),
            tps_vs_plain=round(median(tps_ratios), 3),
            tps_vs_plain_range=[round(min(tps_ratios), 3), round(max(tps_ratios), 3)],
            cpu_us_median=round(median(cpu), 1),
            cpu_vs_plain=round(median(cpu_ratios), 3),
            cpu_vs_plain_range=[round(min(cpu_ratios), 3), round(max(cpu_ratios), 3)],
            wall_us_median=round(median([r.wall / r.measured * 1e6 for r in mine]), 1),
            measured_per_run=mine[0].measured,
            not_approve_share=round(sum(r.not_approve for r in mine) / measured, 4),
            rules_fired=round(median([r.fired for r in mine])),
            changed_by_rules=round(median([r.changed for r in mine])),
            rule_errors=sum(r.rule_errors for r in mine),
            explained=round(median([r.explained for r in mine])),
            stage_us=stages,
            reasons_us_per_explained_row=round(median(per_row), 1) if per_row else None,
            runs=[{"round": r.round_no + 1, "tps": round(r.tps), "cpu_us": round(r.cpu_us, 1)}
                  for r in mine],
        )
        variants[v.name] = entry
    reasons = variants["reasons"]
    bound = ({"value": reasons["tps_vs_plain"], "met": reasons["tps_vs_plain"] >= 0.9}
             if reasons["available"] else None)
    return {"variants": variants, "reasons_within_10_percent": bound}


# ------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class _Fixed:
    """A :class:`service.ports.Models` that never changes."""

    model: Model
    challenger: Model | None = None


@dataclass(frozen=True)
class _Setup:
    models: Models
    rules: RulesHolder | None = None
    shadow: bool = False
    explains: bool = False


@dataclass(frozen=True)
class _Layer:
    setups: Mapping[str, _Setup]
    live: Model
    challenger: Model


@contextmanager
def _layer(models_dir: Path) -> Iterator[_Layer]:
    """The variants' models and rules, from copies in a temp directory (removed after)."""
    with tempfile.TemporaryDirectory(prefix="bench-decision-layer-") as tmp:
        models = Path(tmp) / "models"
        version = current_version(models_dir)
        shadow = f"{version}-shadow"
        shutil.copytree(models_dir / version, models / version)
        shutil.copytree(models_dir / version, models / shadow)
        metadata = orjson.loads((models / shadow / METADATA_FILE).read_bytes())
        (models / shadow / METADATA_FILE).write_bytes(
            orjson.dumps({**metadata, "version": shadow}, option=orjson.OPT_INDENT_2))
        (models / POINTER_FILE).write_text(version + "\n")
        (models / CHALLENGER_FILE).write_text(shadow + "\n")
        holder = ModelHolder(models)
        if holder.challenger is None:
            raise RuntimeError(f"the challenger copy was refused: {holder.challenger_refused}")
        rules_file = Path(tmp) / "rules.yaml"
        rules_file.write_text(rules_yaml())
        rules = RulesHolder(rules_file)
        live, challenger = holder.model, holder.challenger
        bare = replace(live, explainer=None)  # each variant adds one thing to plain
        explains = live.explainer is not None
        yield _Layer({
            "plain": _Setup(_Fixed(bare)),
            "rules50": _Setup(_Fixed(bare), rules),
            "shadow": _Setup(_Fixed(bare, challenger), shadow=True),
            "reasons": _Setup(_Fixed(live), explains=explains),
            "all": _Setup(holder, rules, shadow=True, explains=explains),
        }, live, challenger)


def _messages(transactions: int) -> list[Message]:
    records = bench_data.build(transactions).take(transactions, start=0).transactions_only()
    values = with_optional_fields(records.values)
    # keyed by card id, as the worker requires (a miskeyed record is only dead-lettered)
    return [Message(v, Source("bench", 0, i), k)
            for i, (k, v) in enumerate(zip(records.keys, values, strict=True))]


def _sums(metric: Any, suffix: str, label: str | None = None) -> dict[str, float]:
    """A metric's ``<name><suffix>`` samples by ``label`` (all summed under "" without)."""
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                key = sample.labels.get(label, "") if label else ""
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def _measured(name: str, round_no: int, pipeline: BatchPipeline,
                    batch: Sequence[Message], thresholds: Thresholds) -> Run:
    """Decide one batch, timed: wall and this process's CPU, and the stages' own times."""
    stages = _sums(metrics.STAGE_SECONDS, "_sum", "stage")
    errors = _sums(metrics.RULE_ERRORS, "_total").get("", 0.0)
    not_approve = fired = changed = shadowed = explained = 0
    wall, cpu = time.perf_counter(), time.process_time()
    result = await pipeline.decide(batch)
    for d in result.decisions:
        d.to_json()
        if d.action != "approve":
            not_approve += 1
        if d.rules:
            fired += 1
            changed += d.action != decide(d.score, thresholds)
        shadowed += d.shadow is not None
        explained += d.reasons is not None
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = _sums(metrics.STAGE_SECONDS, "_sum", "stage")
    errors = _sums(metrics.RULE_ERRORS, "_total").get("", 0.0) - errors
    return Run(name, round_no, len(batch), wall, cpu, not_approve, fired, changed, shadowed,
               explained, round(errors), {s: after.get(s, 0.0) - stages.get(s, 0.0)
                                          for s in STAGES},
               decided=len(result.decisions), dead=len(result.dead_letters))


def _plus(a: Run, b: Run) -> Run:
    """Two parts of one variant's round, summed."""
    summed = {f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Run)
              if f.name not in ("variant", "round_no", "stages")}
    return Run(a.variant, a.round_no, **summed,
               stages={s: a.stages.get(s, 0.0) + b.stages.get(s, 0.0) for s in STAGES})


async def _round(round_no: int, layer: _Layer, names: Sequence[str],
                 messages: Sequence[Message], *, url: str, mode: str,
                 settings: Mapping[str, str]) -> list[Run]:
    """Every variant on a fresh key prefix, batch by batch in turn (the order turned by one
    each batch): the first half warms the state up, the second is measured."""
    prefixes = [f"bench-decisions-{uuid.uuid4().hex[:8]}" for _ in names]
    stores = []
    try:
        pipelines = {}
        for name, prefix in zip(names, prefixes, strict=True):
            s = Settings.model_validate({**settings, "env": "development", "redis_mode": mode,
                                         "redis_url": SecretStr(url), "redis_key_prefix": prefix})
            stores.append(build_store(s))
            setup = layer.setups[name]
            pipelines[name] = BatchPipeline(
                stores[-1], setup.models, _NoSink(),
                topics=OutputTopics("decisions", "alerts", "dlq"), rules=setup.rules,
                decode=engine.decoder(s.engine), features=engine.features(s.engine))
        half = len(messages) // 2
        warm = [messages[i : min(i + BATCH, half)] for i in range(0, half, BATCH)]
        timed = [messages[i : i + BATCH] for i in range(half, len(messages), BATCH)]
        runs: dict[str, Run] = {}
        for k, batch in enumerate([*warm, *timed]):
            turn = (k + round_no) % len(names)
            for name in [*names[turn:], *names[:turn]]:
                if k < len(warm):
                    await pipelines[name].decide(batch)
                    continue
                part = await _measured(name, round_no, pipelines[name], batch,
                                       layer.live.info.thresholds)
                runs[name] = _plus(runs[name], part) if name in runs else part
    finally:
        for store in stores:
            await store.aclose()
        target = RedisTarget(mode, url)
        for prefix in prefixes:
            target.delete_prefix(prefix)
    for name, run in runs.items():
        setup = layer.setups[name]
        if run.decided != run.measured:  # a rate of dead letters is not a rate of decisions
            raise RuntimeError(f"{name}: {run.measured} measured, {run.decided} decided, "
                               f"{run.dead} dead-lettered")
        if setup.shadow and run.shadowed != run.decided:
            raise RuntimeError(f"{name}: the challenger scored {run.shadowed} of "
                               f"{run.decided} (it failed)")
        if setup.explains and run.explained != run.not_approve:
            raise RuntimeError(f"{name}: {run.explained} of {run.not_approve} explained (the "
                               "explainer failed)")
    return list(runs.values())


async def measure(url: str, transactions: int, rounds: int, *, mode: str = "single",
                  settings: Mapping[str, str] | None = None,
                  models_dir: Path = ROOT / "models") -> dict[str, Any]:
    """Every variant ``rounds`` times, interleaved; the ``decision_layer`` section.
    ``settings``: the worker's settings by field name (``unique_ids_across_cards``)."""
    messages = _messages(transactions)
    freeze_gc()  # the generated data out of the collector's scans, as the worker's start-up
    runs: list[Run] = []
    with _layer(models_dir) as layer:
        explains = layer.setups["reasons"].explains
        names = [v.name for v in VARIANTS if explains or v.name != "reasons"]
        for r in range(rounds):
            done = await _round(r, layer, names, messages, url=url, mode=mode,
                                settings=settings or {})
            runs += done
            progress(f"  decision layer, round {r + 1}/{rounds}: " + ", ".join(
                f"{run.variant} {run.tps:,.0f}/s {run.cpu_us:.0f} µs" for run in done))
        ruleset = rules.rules if (rules := layer.setups["rules50"].rules) is not None else None
        return {
            "transactions": len(messages), "measured": len(messages) - len(messages) // 2,
            "rounds": rounds, "batch": BATCH, "interleaved": "batch by batch", "redis_mode": mode,
            "rules": len(ruleset.rules) if ruleset else 0,
            "rules_version": ruleset.version if ruleset else None,
            "model_version": layer.live.version, "challenger_version": layer.challenger.version,
            "reasons_available": explains,
            **summarize(runs, explains=explains),
        }


async def phase(bench: Bench) -> None:
    """The bench's last phase, once every worker has stopped (``decision_layer``)."""
    plan = bench.plan
    progress(f"decision layer: {len(VARIANTS)} variants x {plan.decision_rounds} rounds of "
             f"{plan.decision_layer:,} transactions, in-process ...")
    settings = {k.removeprefix("FRAUD_").lower(): v for k, v in bench.worker_env.items()}
    bench.result["decision_layer"] = await measure(
        bench.redis_url, plan.decision_layer, plan.decision_rounds, mode=bench.redis_mode,
        settings=settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench.decision_layer",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=40_000,
                        help="per run, the first half warming up (default 40000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-mode", choices=MODES, default="single")
    parser.add_argument("--redis-url",
                        help="default redis://127.0.0.1:6379/0, or redis://127.0.0.1:7100 "
                             "with --redis-mode cluster (seed nodes, comma-separated)")
    parser.add_argument("--json", type=Path, help="also write the section there")
    args = parser.parse_args(argv)
    if args.transactions < 2 * BATCH or args.rounds < 1:
        parser.error(f"--transactions at least {2 * BATCH}, --rounds at least 1")
    url = args.redis_url or ("redis://127.0.0.1:7100" if args.redis_mode == "cluster"
                             else "redis://127.0.0.1:6379/0")
    section = runner()(measure(url, args.transactions, args.rounds, mode=args.redis_mode))
    if args.json:
        args.json.write_bytes(orjson.dumps(section, option=orjson.OPT_INDENT_2) + b"\n")
    print("\n".join(decision_layer_lines(section)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
