"""Where the worker's CPU goes: a py-spy ``raw`` profile summed by component.

    python -m fraudtools.bench.profile reports/bench-profile-throughput.txt

Each sample is charged to the innermost frame that belongs to a known component (the
redis-py client, aiokafka, Faust, onnxruntime, the features, ...), looking past generic
frames (asyncio, typing, weakref) and never above the frame that runs the event loop: a
sample in that frame itself is the loop's own work (uvloop's C code: socket reads and
writes, callbacks, timers).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["COMPONENTS", "Profiler", "summarize"]

#: (component, regex on a frame "function (path:line)"), first match from the leaf wins.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("startup (imports)", r"<frozen importlib|_find_and_load"),
    ("onnxruntime (model)", r"onnxruntime/|InferenceSession|Model\.score"),
    ("features (fraudnative, fraudcore.compute)", r"fraudcore/features|fraudnative/"),
    ("decode + validate (orjson, fraudcore.events)", r"decode_transaction|decode_label|"
                                                     r"fraudcore/events"),
    ("decision JSON (Decision.to_json)", r"Decision\.to_json"),
    ("redis-py client (commands, pipeline, replies)", r"\(redis/|hiredis"),
    ("prometheus_client (metrics)", r"prometheus_client/"),
    ("aiokafka producer", r"aiokafka/producer"),
    ("aiokafka consumer (fetch, records)", r"aiokafka/consumer|aiokafka/record"),
    ("aiokafka network, protocol", r"aiokafka/"),
    ("Faust + mode (streams, agents, events, acks)", r"\(faust/|\(mode/"),
    ("service/state.py (Lua arguments, history parsing)", r"\(service/state\.py"),
    ("service code (agents, processing)", r"\(service/|\(fraudcore/|\(hmac\.py"),
)
GENERIC = re.compile(r"\((?:asyncio|_weakrefset|typing|weakref|contextlib|functools|enum|abc|"
                     r"threading|collections|concurrent|selectors|socket|ssl|<frozen runpy)")
LOOP = "event loop (uvloop: I/O, callbacks, scheduling)"


#: The frame that runs an event loop: what is above it is start-up, not work.
LOOP_ROOT = re.compile(r"Worker\.execute_from_commandline|ServiceThread\._start_thread|"
                       r"run_until_complete|run_forever")


def _component(frames: list[str]) -> str:
    roots = [i for i, frame in enumerate(frames) if LOOP_ROOT.search(frame)]
    if roots:
        frames = frames[roots[-1] + 1 :]
    for frame in reversed(frames):
        if GENERIC.search(frame):
            continue
        for name, pattern in COMPONENTS:
            if re.search(pattern, frame):
                return name
    return LOOP


class Profiler:
    """``py-spy record`` on a process (raw stacks, 100 samples a second, without pausing
    it) into ``path`` until :meth:`stop`, which summarizes it."""

    def __init__(self, pid: int, path: Path) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
             "-f", "raw", "-r", "100", "--nonblocking", "-o", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any] | None:
        """The profile's summary (:func:`summarize`), or None if py-spy wrote none."""
        self.process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        return {"file": self.path.name, **summarize(self.path)} if self.path.exists() else None


def summarize(path: Path) -> dict[str, Any]:
    """Shares of the samples by component and by thread (``py-spy record -f raw``)."""
    by_component: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_component[_component(frames)] += n
        thread = "consumer thread (Faust's aiokafka)" if frames[0].startswith(
            "Thread._bootstrap") else "main thread (agents, producer, web)"
        by_thread[thread] += n
    return {
        "samples": total,
        "by_component": {k: round(v / total, 3) for k, v in by_component.most_common()}
        if total else {},
        "by_thread": {k: round(v / total, 3) for k, v in by_thread.most_common()} if total else {},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    result = summarize(Path(args[0]))
    print(f"{result['samples']} samples")
    for part in ("by_component", "by_thread"):
        for name, share in result[part].items():
            print(f"  {share:6.1%}  {name}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
