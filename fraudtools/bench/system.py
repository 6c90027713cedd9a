"""What the operating system says: CPU time and memory of processes (``/proc``), which
process listens on a port, and a description of the machine. Linux only, no psutil."""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "CpuSample",
    "cpu_seconds",
    "git_info",
    "listening_pid",
    "machine_info",
    "memory_kb",
    "sample",
    "system_busy_seconds",
]

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rindex(b")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, in kB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def system_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), from /proc/stat."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float  # time.monotonic()
    cpu: dict[str, float]  # process name -> CPU seconds so far
    busy: float  # the whole machine's busy CPU seconds so far


def sample(pids: dict[str, int]) -> CpuSample:
    cpu = {}
    for name, pid in pids.items():
        try:
            cpu[name] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            cpu[name] = float("nan")  # gone: shows as missing, never as zero
    return CpuSample(time.monotonic(), cpu, system_busy_seconds())


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def listening_pid(port: int) -> int | None:
    """The process that listens on TCP ``port`` (needs the right to read its fds)."""
    wanted = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not wanted:
        return None
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in wanted:
                        return int(fd_dir.split("/")[2])
    return None


def _kafka_version(pid: int | None) -> str | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for i, arg in enumerate(args[:-1]):
            if arg in (b"-cp", b"-classpath"):
                for entry in args[i + 1].decode().split(":"):
                    for jar in glob.glob(entry if entry.endswith("*") else entry + "/*"):
                        name = os.path.basename(jar)
                        if name.startswith("kafka_") and name.endswith(".jar"):
                            return name[: -len(".jar")].split("-", 1)[1]
    return None


def machine_info(*, kafka_pid: int | None, redis_version: str | None) -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    versions = {}
    for package in ("faust-streaming", "aiokafka", "redis", "hiredis", "onnxruntime", "orjson",
                    "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "kafka": _kafka_version(kafka_pid),
        "redis": redis_version,
        "packages": versions,
        "load_average_at_start": [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]],
    }


def git_info(root: Path) -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False).stdout

    commit = git("rev-parse", "HEAD").strip()
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": commit or None, "dirty": bool(changed), "changed": changed[:20]}
