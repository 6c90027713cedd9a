"""Cost of 50 rules per transaction over a context of ~30 fields, for four libraries.

Run in a scratch virtualenv that has every candidate (none is a project dependency but the
one chosen):

    python -m venv /tmp/rules-venv
    /tmp/rules-venv/bin/pip install cel-python common-expression-language rule-engine \
        cel-expr-python
    /tmp/rules-venv/bin/python docs/research/rule_libraries_bench.py

and, for the rules as the worker runs them (fraudrules: only the named fields handed over,
errors caught per rule), in the project's own virtualenv:

    .venv/bin/python docs/research/rule_libraries_bench.py --fraudrules

Prints, per library, the best and the median of five rounds of microseconds per transaction
(building the library's input from the context dict once, then evaluating all 50 rules),
and how many rules fired in all (the same for every library on the same transactions, or
the rules differ). Speed on a shared machine moves by tens of percent between runs: compare
within one run.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

FEATURES = [
    "is_weekend", "is_night", "tx_count_by_card_1d", "amount_mean_by_card_1d",
    "tx_count_by_card_7d", "amount_mean_by_card_7d", "tx_count_by_card_30d",
    "amount_mean_by_card_30d", "tx_count_by_terminal_1d_delay7d",
    "fraud_rate_by_terminal_1d_delay7d", "tx_count_by_terminal_7d_delay7d",
    "fraud_rate_by_terminal_7d_delay7d", "tx_count_by_terminal_30d_delay7d",
    "fraud_rate_by_terminal_30d_delay7d", "tx_count_by_card_1h", "seconds_since_last_by_card_30d",
    "amount_ratio_median_by_card_30d", "amount_zscore_by_card_30d",
    "fraud_count_by_terminal_30d_delay7d", "fraud_age_days_min_by_terminal_37d",
    "fraud_age_days_max_by_terminal_37d",
]
TERMINALS = [f"T{i}" for i in range(200)]


def contexts(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx: dict[str, Any] = {
            "transaction_id": f"tx-{i}",
            "card_id": str(rng.randrange(10**15, 10**16)),
            "terminal_id": rng.choice(TERMINALS),
            "amount": round(rng.lognormvariate(4, 1.2), 2),
            "hour": rng.randrange(24),
            "weekday": rng.randrange(1, 8),  # ISO: 1 = Monday
            "score": rng.random() ** 3,
            "extra": {"channel": rng.choice(["online", "pos"])} if rng.random() < 0.7 else {},
        }
        for name in FEATURES:
            ctx[name] = float(rng.randrange(0, 30)) if "count" in name else rng.random() * 3
        out.append(ctx)
    return out


def rules() -> tuple[list[str], list[str]]:
    """The same 50 rules in CEL and in rule-engine's syntax."""
    cel: list[str] = []
    re_: list[str] = []
    for k in range(5):
        big = 3000.0 + 500 * k
        cel += [
            f"amount > {big}",
            f"score > 0.9{k} && amount > {100.0 + k}",
            f"tx_count_by_card_1h >= {25.0 + k}",
            f"terminal_id in {TERMINALS[k * 10 : k * 10 + 10]!r}".replace("'", '"'),
            f"hour >= 1 && hour <= 4 && amount > {1000.0 + k}",
            f"amount > 3.0 * amount_mean_by_card_30d && tx_count_by_card_30d > {20.0 + k}",
            f"fraud_rate_by_terminal_7d_delay7d > 2.9{k}",
            f'has(extra.channel) && extra.channel == "online" && amount > {2000.0 + k}',
            f'transaction_id.matches("^test-{k}")',
            f"is_night == 1.0 && amount_zscore_by_card_30d > 2.9{k}"
            " || weekday == 6 && score > 0.99",
        ]
        re_ += [
            f"amount > {big}",
            f"score > 0.9{k} and amount > {100 + k}",
            f"tx_count_by_card_1h >= {25 + k}",
            f"terminal_id in {TERMINALS[k * 10 : k * 10 + 10]!r}".replace("'", '"'),
            f"hour >= 1 and hour <= 4 and amount > {1000 + k}",
            f"amount > 3 * amount_mean_by_card_30d and tx_count_by_card_30d > {20 + k}",
            f"fraud_rate_by_terminal_7d_delay7d > 2.9{k}",
            f'extra&["channel"] == "online" and amount > {2000 + k}',
            f'transaction_id =~ "^test-{k}"',
            f"is_night == 1 and amount_zscore_by_card_30d > 2.9{k}"
            " or weekday == 6 and score > 0.99",
        ]
    return cel, re_


Evaluate = Callable[[dict[str, Any]], int]


def rule_engine_lib(texts: list[str]) -> Evaluate:
    import rule_engine

    types = {name: rule_engine.DataType.FLOAT for name in [*FEATURES, "amount", "hour",
                                                           "weekday", "score"]}
    types |= {n: rule_engine.DataType.STRING for n in ("transaction_id", "card_id",
                                                      "terminal_id")}
    types["extra"] = rule_engine.DataType.MAPPING(rule_engine.DataType.STRING)
    context = rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(types))
    compiled = [rule_engine.Rule(t, context=context) for t in texts]

    def run(ctx: dict[str, Any]) -> int:
        return sum(1 for r in compiled if r.matches(ctx))

    return run


def cel_python_lib(texts: list[str]) -> Evaluate:
    import celpy

    env = celpy.Environment()
    programs = [env.program(env.compile(t)) for t in texts]

    def run(ctx: dict[str, Any]) -> int:
        activation = {k: celpy.json_to_cel(v) for k, v in ctx.items()}
        fired = 0
        for p in programs:
            result = p.evaluate(activation)
            fired += isinstance(result, celpy.celtypes.BoolType) and bool(result)
        return fired

    return run


def common_expression_language_lib(texts: list[str]) -> Evaluate:
    import cel

    programs = [cel.compile(t) for t in texts]

    def run(ctx: dict[str, Any]) -> int:
        context = cel.Context(variables=ctx)
        return sum(1 for p in programs if p.execute(context) is True)

    return run


def common_expression_language_dict(texts: list[str]) -> Evaluate:
    import cel

    programs = [cel.compile(t) for t in texts]

    def run(ctx: dict[str, Any]) -> int:
        return sum(1 for p in programs if p.execute(ctx) is True)

    return run


def common_expression_language_one_list(texts: list[str]) -> Evaluate:
    """All 50 as one CEL list expression: one call a transaction (an error in one rule
    would be an error for all: shown for scale, not as a design)."""
    import cel

    program = cel.compile("[" + ", ".join(f"({t})" for t in texts) + "]")

    def run(ctx: dict[str, Any]) -> int:
        return sum(1 for v in program.execute(ctx) if v is True)

    return run


def cel_expr_python_lib(texts: list[str]) -> Evaluate:
    from cel_expr_python import cel as cx

    t = cx.Type
    declared = {name: t.DOUBLE for name in [*FEATURES, "amount", "score"]}
    declared |= {"hour": t.DOUBLE, "weekday": t.DOUBLE}
    declared |= {n: t.STRING for n in ("transaction_id", "card_id", "terminal_id")}
    declared["extra"] = t.Map(t.STRING, t.DYN)
    env = cx.NewEnv(variables=declared)
    texts = [x.replace(">= 1 &&", ">= 1.0 &&").replace("<= 4 &&", "<= 4.0 &&")
              .replace("weekday == 6", "weekday == 6.0") for x in texts]
    programs = [env.compile(x) for x in texts]

    def run(ctx: dict[str, Any]) -> int:
        data = {**ctx, "hour": float(ctx["hour"]), "weekday": float(ctx["weekday"])}
        activation = env.Activation(data)
        return sum(1 for p in programs if p.eval(activation).value() is True)

    return run


def fraudrules_lib(texts: list[str]) -> Evaluate:
    """The project's own path: a rules file, compiled by fraudrules, evaluated per
    transaction on its Transaction, feature vector and score."""
    from datetime import UTC, datetime, timedelta

    from fraudcore import FEATURE_NAMES, Transaction
    from fraudrules import parse_rules

    body = "".join(
        f"  - id: r{i}\n    when: |\n      {text}\n    action: review\n"
        for i, text in enumerate(texts)
    )
    ruleset = parse_rules(f"rules:\n{body}".encode())
    monday = datetime(2025, 3, 3, tzinfo=UTC)

    def run(ctx: dict[str, Any]) -> int:
        tx = Transaction(ctx["transaction_id"], ctx["card_id"], ctx["terminal_id"],
                         ctx["amount"],
                         monday + timedelta(days=ctx["weekday"] - 1, hours=ctx["hour"]),
                         ctx["extra"])
        row = [ctx["amount"] if n == "amount" else ctx[n] for n in FEATURE_NAMES]
        return len(ruleset.evaluate(tx, row, ctx["score"]).fired)

    return run


def measure(name: str, make: Callable[[list[str]], Evaluate], texts: list[str],
            data: list[dict[str, Any]]) -> None:
    try:
        started = time.perf_counter()
        run = make(texts)
        compile_ms = (time.perf_counter() - started) * 1000
    except ImportError as exc:
        print(f"{name:42s} not installed ({exc})")
        return
    fired = sum(run(ctx) for ctx in data)  # warm-up, and the check
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for ctx in data:
            run(ctx)
        rounds.append((time.perf_counter() - started) / len(data) * 1e6)
    print(f"{name:42s} {min(rounds):9.1f} µs/tx (median {statistics.median(rounds):9.1f})"
          f"  compile 50: {compile_ms:7.1f} ms  fired: {fired}")


def main() -> None:
    import sys

    cel, re_ = rules()
    assert len(cel) == len(re_) == 50
    data = contexts(1000)
    print(f"{len(cel)} rules, {len(data)} transactions, {len(data[0])} fields each")
    if "--fraudrules" in sys.argv:
        measure("fraudrules (the worker's path)", fraudrules_lib, cel, data)
        measure("common-expression-language (Context once)", common_expression_language_lib,
                cel, data)
        return
    measure("common-expression-language (Context once)", common_expression_language_lib, cel,
            data)
    measure("common-expression-language (dict a call)", common_expression_language_dict, cel,
            data)
    measure("common-expression-language (one list)", common_expression_language_one_list, cel,
            data)
    measure("cel-expr-python (Activation once)", cel_expr_python_lib, cel, data)
    measure("rule-engine (typed)", rule_engine_lib, re_, data)
    small = data[:200]  # 100 times slower: fewer transactions
    measure("cel-python (200 transactions)", cel_python_lib, cel, small)
    measure("common-expression-language (same 200)", common_expression_language_lib, cel, small)


if __name__ == "__main__":
    main()
