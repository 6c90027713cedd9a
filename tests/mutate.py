"""make mutate: mutmut over fraudcore/, training/metrics.py and training/protocol.py with the
tests in tests/unit ([tool.mutmut] in pyproject.toml), then the kill rate of each part.

Exits non-zero when fewer than 95 % of fraudcore's mutants are killed (training's two files
are reported, not gated). Killed: a unit test failed, or the mutant ran past mutmut's time
limit (an endless loop the tests would never let through). Every other outcome counts
against the rate: survived, no test reaches the mutant, suspicious, not checked.
tests/mutation-survivors.md explains each survivor.

    python tests/mutate.py             run (only mutants without a result), then report
    python tests/mutate.py --report    report the last run's results only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

GATE = 0.95
PARTS = {
    "fraudcore": lambda p: p.startswith("fraudcore/"),
    "training/metrics.py": lambda p: p == "training/metrics.py",
    "training/protocol.py": lambda p: p == "training/protocol.py",
}
# mutmut 3.7's exit codes (mutmut.__main__.status_by_exit_code).
KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}


def run(max_children: int) -> None:
    # mutmut 3.7.0 reads item._nodeid, which pytest 9 no longer has (3.8 reads item.nodeid,
    # but needs click>=8.4.2 and faust-streaming caps click<8.4): alias it for this run only.
    import _pytest.nodes

    if not hasattr(_pytest.nodes.Node, "_nodeid"):
        _pytest.nodes.Node._nodeid = property(lambda self: self.nodeid)  # type: ignore[attr-defined]
    from mutmut.__main__ import cli
    from mutmut.configuration import Config

    # mutmut runs the tests in mutants/, where it copies only the code it mutates and tests/;
    # some unit tests read other files of the repository (models/current, README.md, ...),
    # so every top-level file and folder that git tracks or would track goes there too.
    config = Config.get()
    mutated = {path.parts[0] for path in config.source_paths}
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    config.also_copy += [Path(top) for top in sorted({p.split("/")[0] for p in listed} - mutated)]

    try:
        cli(["run", "--max-children", str(max_children)], standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise


def outcome(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in TIMEOUT:
        return "timeout"
    if code == 0:
        return "survived"
    if code in (5, 33):
        return "no tests"
    if code is None:
        return "not checked"
    return "suspicious"


def report(root: Path) -> bool:
    counts: dict[str, Counter[str]] = {part: Counter() for part in PARTS}
    survivors: list[str] = []
    for meta in sorted(root.glob("mutants/**/*.py.meta")):
        source = meta.relative_to(root / "mutants").as_posix()[: -len(".meta")]
        part = next((name for name, match in PARTS.items() if match(source)), None)
        if part is None:
            continue
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = outcome(code)
            counts[part][status] += 1
            if status not in ("killed", "timeout"):
                survivors.append(f"  {status:12} {key}")
    ok = True
    for part, count in counts.items():
        total = sum(count.values())
        if not total:
            print(f"{part}: no mutation results (run make mutate first)")
            ok = ok and part != "fraudcore"
            continue
        detected = count["killed"] + count["timeout"]
        rate = detected / total
        rest = ", ".join(f"{n} {s}" for s, n in sorted(count.items()) if s != "killed")
        print(f"{part}: {detected}/{total} killed ({rate:.1%}){'; ' + rest if rest else ''}")
        if part == "fraudcore" and rate < GATE:
            print(f"fraudcore is below {GATE:.0%}")
            ok = False
    if survivors:
        print("not killed:")
        print("\n".join(survivors))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="report only, run nothing")
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args()
    root = Path.cwd()
    if not args.report:
        run(args.max_children)
        print()
    return 0 if report(root) else 1


if __name__ == "__main__":
    sys.exit(main())
