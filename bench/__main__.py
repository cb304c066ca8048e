"""Every benchmark in one run: python3 -m bench [--quick]

Runs as root from the repo root (each part brings up its own loopback test bed) and
prints each part's table: deploy and upload (bench.deploy), status polls
(bench.poll), TUI throughput (bench.tui_throughput), start-up (bench.startup),
rolling restarts (bench.rolling), --plan, --run and the log pane (bench.operate),
delta uploads on a 20,000-file repository (bench.delta).
Scripts, not tests: nothing fails on a number.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time

PARTS = [
    ("deploy and upload", "bench.deploy", ["--runs", "5"], ["--runs", "2"]),
    ("status polls", "bench.poll", [], ["--runs", "5"]),
    ("TUI throughput", "bench.tui_throughput", [], ["--runs", "1"]),
    ("start-up", "bench.startup", [], ["--runs", "10"]),
    ("rolling restarts", "bench.rolling", [], ["--runs", "2"]),
    ("plan, run, log pane", "bench.operate", [], ["--runs", "3", "--seconds", "5"]),
    ("delta uploads", "bench.delta", [], ["--files", "2000", "--mb", "20", "--runs", "1"]),
]


def main() -> int:
    quick = "--quick" in sys.argv
    print(
        f"relconsole benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
        f"{platform.machine()}, Python {platform.python_version()}",
        flush=True,
    )
    failed = 0
    for title, module, full, short in PARTS:
        print(f"\n== {title} ({module}) ==", flush=True)
        proc = subprocess.run([sys.executable, "-m", module, *(short if quick else full)])
        failed += proc.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
