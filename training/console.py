"""What training tells the person running it: each phase with its duration, progress
through the long ones, and numbers in words (durations, thresholds).

Progress goes to standard error. On a terminal it is a tqdm bar that disappears when its
phase ends (the phase's "done" line takes its place); anywhere else (a CI log, a file) it
is a plain line when another 10 % is done, at most one every 5 s, and one at least every
15 s while the work goes on. No plain line says 100 %: the phase's own "done in" line says
that, once it is true. A time left is shown only where the steps take about as long as
each other (the replay, not the candidates, whose models fit at very different speeds),
and only once 5 % is done.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from fraudcore import Thresholds

__all__ = [
    "Phases",
    "PlainProgress",
    "Progress",
    "Step",
    "duration",
    "score",
    "thresholds_text",
]

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(message)s"  # the CLI's; plain progress lines look the same
TIME_FORMAT = "%H:%M:%S"

Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``4 min 23 s``, ``1 h 05 min``."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def score(value: float) -> str:
    """A score or threshold in four decimals; below 0.001 in two significant digits, so
    that a small non-zero threshold never reads ``0.0000``."""
    if 0.0 < value < 0.001:
        return f"{value:.2g}"
    return f"{value:.4f}"


def thresholds_text(thresholds: Thresholds) -> str:
    """``review ≥ 0.0420, decline ≥ 0.3120``."""
    return f"review ≥ {score(thresholds.review)}, decline ≥ {score(thresholds.decline)}"


class Progress(Protocol):
    """What the work reports: ``n`` more of its units are done."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """Progress as plain lines on ``stream`` (see the module docstring for when)."""

    def __init__(
        self,
        name: str,
        total: int | None,
        unit: str,
        *,
        stream: TextIO,
        estimate: bool = True,
        clock: Clock = time.monotonic,
        step_percent: int = 10,
        min_gap: float = 5.0,
        interval: float = 15.0,
    ) -> None:
        self.name, self.total, self.unit, self.stream = name, total, unit, stream
        self.estimate, self.clock = estimate, clock
        self.step_percent, self.min_gap, self.interval = step_percent, min_gap, interval
        self.done = 0
        self.started = self.last_line = clock()
        self.next_percent = step_percent
        self.closed = False

    def advance(self, n: int = 1) -> None:
        if self.closed:
            return
        self.done += n
        if self.total is not None and self.done >= self.total:
            return  # finished: the phase's "done in" line follows, no "100 %" before it
        now = self.clock()
        since = now - self.last_line
        percent = self._percent()
        if (percent >= self.next_percent and since >= self.min_gap) or since >= self.interval:
            self.stream.write(f"{time.strftime(TIME_FORMAT)} {self.line(now)}\n")
            self.stream.flush()
            self.last_line = now
            self.next_percent = (percent // self.step_percent + 1) * self.step_percent

    def _percent(self) -> int:
        """Whole percent done, rounded down (99.9 % is 99)."""
        return self.done * 100 // self.total if self.total else 0

    def line(self, now: float) -> str:
        """``replaying: 40 % (700,000 of 1,750,000 transactions), 1 min 45 s so far, about
        2 min 38 s left``."""
        elapsed = now - self.started
        if not self.total:
            return f"{self.name}: {self.done:,} {self.unit}, {duration(elapsed)} so far"
        fraction = self.done / self.total
        text = (
            f"{self.name}: {self._percent()} % ({self.done:,} of {self.total:,} "
            f"{self.unit}), {duration(elapsed)} so far"
        )
        if self.estimate and fraction >= 0.05:
            text += f", about {duration(elapsed * (1 - fraction) / fraction)} left"
        return text

    def close(self) -> None:
        self.closed = True


# tqdm's own format (a rate, unit prefixes: 1.79M) for large counts; small ones (fits,
# test weeks) as a plain count without a rate; no time left where the steps differ.
_BAR_COUNT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}]"
_BAR_NO_ESTIMATE = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}]"


class _BarProgress:
    """A tqdm bar on a terminal; log lines written meanwhile print above it."""

    def __init__(
        self, name: str, total: int, unit: str, *, stream: TextIO, estimate: bool
    ) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = ExitStack()
        self._redirect.enter_context(logging_redirect_tqdm())
        large = total >= 10_000
        fmt = None if large and estimate else (_BAR_COUNT if estimate else _BAR_NO_ESTIMATE)
        self._bar = tqdm(
            total=total, desc=name, unit=f" {unit}", unit_scale=large, leave=False, file=stream,
            dynamic_ncols=True, mininterval=0.5, bar_format=fmt,
        )

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()
        self._redirect.close()


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Step:
    """The running phase: ``advance`` reports progress; ``note`` is added to its "done"
    line, e.g. ``12,831 events/s``."""

    progress: Progress
    note: str = ""

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)


@dataclass
class Phases:
    """Names and times the phases of a run: ``with phases.phase("replaying", ...) as step``
    logs what starts, shows its progress if it has a ``total``, and logs "replaying done
    in 4 min 23 s" (or "failed after") at the end; :meth:`summary` lists them all."""

    stream: TextIO | None = None  # standard error (as it is when a phase starts) if None
    tty: bool | None = None  # a bar or plain lines; None: a bar if the stream is a terminal
    clock: Clock = time.monotonic
    durations: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(
        self,
        name: str,
        what: str = "",
        *,
        total: int | None = None,
        unit: str = "",
        estimate: bool = True,
    ) -> Iterator[Step]:
        if what:
            log.info("%s %s", name, what)
        else:
            log.info("%s ...", name)
        started = self.clock()
        step = Step(self._progress(name, total, unit, estimate))
        try:
            yield step
        except BaseException:
            step.progress.close()
            log.warning("%s failed after %s", name, duration(self.clock() - started))
            raise
        step.progress.close()
        took = self.clock() - started
        self.durations[name] = self.durations.get(name, 0.0) + took
        log.info("%s done in %s%s", name, duration(took), f" ({step.note})" if step.note else "")

    def summary(self) -> str:
        """``generating 41 s, replaying 4 min 23 s, ...`` in the order they ran."""
        return ", ".join(f"{name} {duration(s)}" for name, s in self.durations.items())

    def total_seconds(self) -> float:
        return sum(self.durations.values())

    def _progress(self, name: str, total: int | None, unit: str, estimate: bool) -> Progress:
        if total is None:
            return _NoProgress()
        stream = self.stream if self.stream is not None else sys.stderr
        tty = self.tty if self.tty is not None else _isatty(stream)
        if tty:
            return _BarProgress(name, total, unit, stream=stream, estimate=estimate)
        return PlainProgress(name, total, unit, stream=stream, estimate=estimate, clock=self.clock)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False
