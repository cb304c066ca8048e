"""A timeline of one headless build: per stage and per host, seconds from process start.

    python3 -m bench.timeline --config CONFIG SVC      (against a bed or real hosts)

The build runs as ``relconsole --build SVC --json`` in a process of its own, with every
event stamped (seconds since the parent spawned it) and written at once; nothing else
differs from a real run. bench/vs_fabric.py --timeline prints one per fleet size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(t0: float, argv: list[str]) -> int:
    """Inside the build's process: stamp and flush every JSON event, then run the CLI."""
    from relconsole.headless import render

    def stamped(self, event) -> None:
        data = {"t": round(time.time() - t0, 4), **event.to_dict()}
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        sys.stdout.flush()

    render.JsonRenderer.__call__ = stamped  # type: ignore[method-assign]
    from relconsole.cli import main

    return main(argv)


def timed_build(config: Path, service: str) -> list[dict]:
    """Run one build; its events, each with ``t``."""
    argv = ["--config", str(config), "--build", service, "--json"]
    code = f"import sys, bench.timeline as tl; sys.exit(tl._child({time.time()!r}, {argv!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
    return events


def print_timeline(events: list[dict]) -> None:
    first = events[0]["t"] if events else float("nan")
    print(f"  first event at {first:.2f} s (process start, imports, config)")
    started: dict[str, float] = {}
    hosts: dict[str, dict[str, str]] = {}
    for e in events:
        kind, t = e["event"], e["t"]
        if kind == "stage_started":
            started[e["stage"]] = t
        elif kind == "stage_finished":
            s = started.get(e["stage"], t)
            print(f"  {e['stage']:<11} {s:6.2f} → {t:6.2f} s  ({t - s:.2f} s)")
        elif kind == "host_finished" and e.get("host"):
            hosts.setdefault(e["host"], {})[e["stage"]] = f"{t:.2f} ({e['seconds']:.2f})"
        elif kind == "output" and e.get("host"):
            line = e["line"]
            for mark, name in (("connected to", "connected"), ("RUNNING pid", "verified")):
                if mark in line:
                    hosts.setdefault(e["host"], {})[name] = f"{t:.2f}"
        elif kind == "batch_changed":
            print(f"  {'':<11} {t:6.2f} s  batch {e['batch']}/{e['of']}: {e['phase']}")
        elif kind == "finished":
            print(f"  finished    {t:6.2f} s  ({e['result']})")
    columns = ["connected", "upload", "setup", "verified", "supervisor"]
    print("  per host: seconds from process start (the host's own seconds for the stage)")
    print("  " + "host".ljust(6) + "".join(c.ljust(16) for c in columns))
    for host, marks in hosts.items():
        print("  " + host.ljust(6) + "".join(marks.get(c, "-").ljust(16) for c in columns))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("service")
    args = ap.parse_args()
    print_timeline(timed_build(args.config, args.service))


if __name__ == "__main__":
    main()
