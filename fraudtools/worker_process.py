"""The real worker as a separate process, started the way a user starts it.

Used by the demo, the benchmark, the soak, the fault runs and the integration tests:
``python -m service`` with ``FRAUD_*`` settings in its environment
(:class:`fraudtools.isolated.IsolatedWorker` builds them), its output in a log file.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

__all__ = ["ROOT", "WorkerProcess", "free_port"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """The real worker, as a user starts it (``python -m service``)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def web_port(self) -> str:
        return self.env["FRAUD_WEB_PORT"]

    def start(self) -> Self:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "--web-port", self.web_port],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> Self:
        """Until ``/health`` answers 200; raises at once if the process exits."""
        url = f"http://127.0.0.1:{self.web_port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise RuntimeError(f"worker exited with {code}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not healthy after {timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def health(self, path: str = "/health") -> tuple[int, dict[str, object]] | None:
        """``/health`` (or ``/livez``, ``/readyz``) right now: (status, body), or None when
        it does not answer."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), json.loads(exc.read())
        except OSError:
            return None

    def metric(self, name: str) -> float:
        """Sum of the samples of a Prometheus metric (0 when the worker does not answer;
        an error when ``/metrics`` itself fails)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/metrics", timeout=2
            ) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                raise RuntimeError(f"/metrics answered {exc.code}") from None
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]
