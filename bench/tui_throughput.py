"""How much the Textual console costs a build whose check prints a lot.

Run as root from the repo root: python3 -m bench.tui_throughput [--runs 3] [--lines 200000]
Brings up its own 2-host loopback test bed (tests/testbed.py); touches nothing else.

The service's check prints ``--lines`` lines. Each run builds it, alternating:
  headless  ``relconsole --build svc`` in a subprocess, stdout to /dev/null (wall time
            of the process, interpreter start included);
  TUI       ``RelconsoleApp.run_test(headless=True, size=(200, 60))``: press b, wait
            until the screen shows the end (wall time from the key to that).
Both are also given by the engine's own duration (the history's row for the run).
During TUI runs a 10 ms ``set_interval`` probe records how late each tick comes: a
late tick is a stall of the event loop (keys and repaints wait that long).

Targets: TUI wall ≤ 1.5 × headless, stall p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployconfig import write_config
from gitorigin import make_origin, sample_service_files
from testbed import start_testbed

from bench.common import alternate, median, pct
from relconsole.config import load_config
from relconsole.headless.render import format_table
from relconsole.history import History

PROBE = 0.010  # seconds between probe ticks


def next_second() -> None:
    """Release ids have one-second resolution: never start two runs in one second."""
    now = int(time.time())
    while int(time.time()) == now:
        time.sleep(0.01)


def last_duration(state_dir: Path) -> float:
    history = History(state_dir)
    try:
        row = history.list("svc", limit=1)[0]
    finally:
        history.close()
    assert row["result"] == "success", row
    return row["duration"]


def headless_run(config_path: Path, state_dir: Path) -> tuple[float, float]:
    next_second()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "relconsole", "--config", str(config_path), "--build", "svc"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"headless build failed: {proc.stderr}")
    return wall, last_duration(state_dir)


async def tui_build(config_path: Path, lines: int) -> tuple[float, list[float], int]:
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(load_config(config_path))
    stalls: list[float] = []
    async with app.run_test(headless=True, size=(200, 60)) as pilot:
        main = app.main_screen
        await pilot.pause(0.2)  # mounted, first poll under way
        last = [time.perf_counter()]

        def probe() -> None:
            now = time.perf_counter()
            stalls.append(max(0.0, now - last[0] - PROBE))
            last[0] = now

        timer = app.set_interval(PROBE, probe)
        started = time.perf_counter()
        await pilot.press("b")
        while app.active_run is not None or main.build_view.finished is None:
            await asyncio.sleep(0.005)
        wall = time.perf_counter() - started
        timer.stop()
        finished = main.build_view.finished
        if not finished.ok:
            raise SystemExit(f"TUI build failed: {finished.error}")
        check = main.build_view.stage_log("check")
        shown = sum(1 for line in check.lines if line.startswith("line "))
        assert f"line {lines - 1}" in check.lines, "the last line is not in the check pane"
    return wall, stalls, shown


def tui_run(
    config_path: Path, state_dir: Path, lines: int, all_stalls: list[float], kept: list[int]
) -> tuple[float, float]:
    next_second()
    wall, stalls, shown = asyncio.run(tui_build(config_path, lines))
    all_stalls.extend(stalls)
    kept.append(shown)
    return wall, last_duration(state_dir)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bed = start_testbed(2, tmp / "bed")
        try:
            origin = make_origin(tmp / "git")
            origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
            check = {
                "name": "chatty",
                "run": f"python3 -c \"for i in range({args.lines}): print('line', i)\"",
            }
            config_path = write_config(tmp, bed, origin.url, hosts=["h1", "h2"], checks=[check])
            state_dir = tmp / "state"
            # Warm up: the workspace clone, the first release, page cache.
            headless_run(config_path, state_dir)

            stalls: list[float] = []
            kept: list[int] = []
            headless, tui = alternate(
                lambda: headless_run(config_path, state_dir),
                lambda: tui_run(config_path, state_dir, args.lines, stalls, kept),
                args.runs,
            )
        finally:
            bed.close()

    h_wall, t_wall = median([w for w, _ in headless]), median([w for w, _ in tui])
    h_eng, t_eng = median([d for _, d in headless]), median([d for _, d in tui])
    ms = [s * 1000 for s in stalls]
    table = [
        ["metric", "TUI", "headless", "ratio", "target"],
        [
            "wall time (median)",
            f"{t_wall:.2f} s",
            f"{h_wall:.2f} s",
            f"{t_wall / h_wall:.2f}x",
            "≤ 1.5x",
        ],
        [
            "engine duration (median)",
            f"{t_eng:.2f} s",
            f"{h_eng:.2f} s",
            f"{t_eng / h_eng:.2f}x",
            "",
        ],
        ["stall p50", f"{pct(ms, 50):.1f} ms", "", "", ""],
        ["stall p99", f"{pct(ms, 99):.1f} ms", "", "", "≤ 50 ms"],
        ["stall max", f"{max(ms):.1f} ms", "", "", ""],
    ]
    print(
        f"{args.lines:,} lines of check output, 2 hosts, {args.runs} runs each (A/B "
        f"alternating); {len(ms)} probe ticks; check pane kept {statistics.median(kept):,.0f}"
        " lines"
    )
    print(
        "wall times  TUI: "
        + ", ".join(f"{w:.2f}" for w, _ in tui)
        + "   headless: "
        + ", ".join(f"{w:.2f}" for w, _ in headless)
    )
    print(format_table(table), flush=True)


if __name__ == "__main__":
    main()
