"""Shared pieces of the benchmarks: a loopback test bed, a service tree, A/B timing.

Benchmarks are scripts, not tests: they print numbers and never fail on one.
Everything runs on loopback addresses (tests/testbed.py); nothing else is touched.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gitorigin import sample_service_files


def tree_files(n_files: int, size: int = 2048) -> dict[str, str]:
    """``n_files`` small source-like files in nested folders, like a real service's tree."""
    files = {}
    for i in range(n_files):
        body = f"# module {i}\n" + ("x = %d\n" % i) * (size // 8)
        files[f"lib/pkg{i // 100:02d}/mod{i:04d}.py"] = body[:size]
    return files


def service_tree(n_files: int, message: str = "v1") -> dict[str, str]:
    return {**sample_service_files("svc", "/srv/svc", message), **tree_files(n_files)}


def alternate(a: Callable[[], float], b: Callable[[], float], runs: int) -> tuple[list, list]:
    """Run A and B ``runs`` times each, alternating which goes first; returns timings."""
    ta, tb = [], []
    for i in range(runs):
        for fn, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            out.append(fn())
    return ta, tb


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def row(
    metric: str, ours: float, theirs: float, alt: str, unit: str = "s", target: str = ""
) -> list[str]:
    fmt = (lambda v: f"{v * 1000:.0f} ms") if unit == "s" else (lambda v: f"{v:g} {unit}")
    ratio = ours / theirs if theirs else float("nan")
    return [metric, fmt(ours), f"{alt}: {fmt(theirs)}", f"{ratio:.2f}x", target]


def print_table(rows: list[list[str]]) -> str:
    from relconsole.headless.render import format_table

    text = format_table([["metric", "relconsole", "alternative", "ratio", "target"], *rows])
    print(text, flush=True)
    return text


# -- CPU spent: the whole machine's, a process tree's, the bed hosts' -----------------
TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Seconds of CPU the whole machine spent since boot (all cores, not idle/iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def tree_cpu(pid: int) -> float:
    """A process's CPU seconds with its reaped children's (utime stime cutime cstime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    return sum(int(x) for x in text.rsplit(")", 1)[1].split()[11:15]) / TICK


def bed_cpu(bed) -> float:
    """CPU seconds of every bed host's sshd and supervisord trees (what the hosts spent)."""
    return sum(
        tree_cpu(int(pid_file.read_text().split()[0]))
        for h in bed.hosts
        for pid_file in (h._sshd_pid_file, h._supervisord_pid_file)
    )
