"""Input-to-paint latency of the console while a 50-host build streams output on every
host's pane (issue 15, target 5: p99 ≤ 50 ms).

Run from the repo root: python3 -m bench.tui_latency [--hosts 50] [--rate 100,1000]
    [--seconds 20] [--runs 3]

The real app (``RelconsoleApp.run_test(headless=True, size=(200, 60))``) over scripted
hosts (tests/fakehost.py: its status polls answer from a table, no ssh), running a fake
engine in the app's own run worker: the build's BuildStarted, its upload stage done,
then the setup stage printing ``--rate`` lines a second on every host (in 10 ms bursts,
as many programs print) for ``--seconds``. Meanwhile keys 1 and 2 are pressed in turn
(each shows the other stage's pane of 50 hosts' logs), 40–80 ms apart, as a terminal
driver hands them to the app. A key's latency: from the key handed to the app to the
end of the first screen update that shows its pane. In headless mode Textual computes
every update but writes nothing; this bench renders each update to the terminal's
escape sequences too (what a real terminal's update costs, writing aside).

Also printed: how long the 30 Hz drain of engine events takes per tick (p50/p99/max),
and the lines per second the panes were given. ``--before`` runs every rate a second
time with the panes as they were before issue 15 (Textual's own ``Log``: a thread
worker per write, every host's log written), alternating with the panes of now.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from pathlib import Path

from fakehost import connector, fake_config, fake_hosts
from gitorigin import make_origin, sample_service_files
from textual import events
from textual._compositor import CompositorUpdate
from textual.widgets import Log

import relconsole.ui.build_view as build_view
import relconsole.ui.host_logs as host_logs
from bench.common import pct
from relconsole.events import (
    BuildFinished,
    BuildStarted,
    HostFinished,
    Output,
    RunResult,
    Sink,
    Stage,
    StageFinished,
    StageStarted,
)
from relconsole.text import format_table

STAGES = (Stage.UPLOAD, Stage.SETUP)
BURST = 0.010  # seconds between the fake engine's bursts of lines


def fake_build(hosts: tuple[str, ...], rate: float, stop: threading.Event, given: list[int]):
    """The engine of a build whose setup stage prints ``rate`` lines/s on every host."""

    def work(sink: Sink, cancel: threading.Event) -> BuildFinished:
        sink(BuildStarted(service="svc", branch="main", hosts=hosts, stages=STAGES))
        sink(StageStarted(stage=Stage.UPLOAD))
        for host in hosts:
            sink(HostFinished(stage=Stage.UPLOAD, host=host, ok=True, seconds=0.1))
        sink(StageFinished(stage=Stage.UPLOAD, ok=True, seconds=0.2))
        sink(StageStarted(stage=Stage.SETUP))
        due = 0.0  # lines owed to each host (a rate below 100/s prints every few bursts)
        n = 0
        next_burst = time.perf_counter()
        while not (stop.is_set() or cancel.is_set()):
            due += rate * BURST
            burst, due = int(due), due - int(due)
            for host in hosts:
                for _ in range(burst):
                    line = f"step {n}: compiling module {n}"
                    sink(Output(stage=Stage.SETUP, line=line, host=host))
                    n += 1
            next_burst += BURST
            time.sleep(max(0.0, next_burst - time.perf_counter()))
        given.append(n)
        for host in hosts:
            sink(HostFinished(stage=Stage.SETUP, host=host, ok=True, seconds=1.0))
        sink(StageFinished(stage=Stage.SETUP, ok=True, seconds=1.0))
        return_event = BuildFinished(result=RunResult.SUCCESS, seconds=1.0, service="svc")
        sink(return_event)
        return return_event

    return work


async def measure(config, fakes, rate: float, seconds: float) -> dict[str, list[float]]:
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(config, connector=connector(fakes))
    latencies: list[float] = []
    drains: list[float] = []
    given: list[int] = []
    async with app.run_test(headless=True, size=(200, 60)) as pilot:
        await pilot.pause(0.5)  # mounted, first polls answered
        view = app.main_screen.build_view
        waiting: dict[str, object] = {}
        painted = asyncio.Event()
        display = app._display

        def display_and_render(screen, renderable) -> None:
            display(screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)  # what a terminal update costs
            want = waiting.get("stage")
            if want is not None and view.strip.selected == want:
                latencies.append(time.perf_counter() - waiting.pop("t0"))  # type: ignore[operator]
                waiting.clear()
                painted.set()

        app._display = display_and_render  # type: ignore[method-assign]
        drain = app.drain_run

        def timed_drain() -> None:
            started = time.perf_counter()
            drain()
            drains.append(time.perf_counter() - started)

        app.drain_timer.stop()
        app.drain_timer = app.set_interval(1 / 30, timed_drain, pause=True)

        stop = threading.Event()
        hosts = tuple(config.hosts)
        app.begin_run(app.new_run("svc", "build", "main"), fake_build(hosts, rate, stop, given))
        await asyncio.sleep(1.0)  # streaming, panes mounted
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            key = "12"[n % 2]
            painted.clear()
            waiting.update(stage=STAGES[n % 2], t0=time.perf_counter())
            press = events.Key(key, key)
            press.set_sender(app)
            app._driver.send_message(press)  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(painted.wait(), 5.0)
            except TimeoutError:
                latencies.append(5.0)
                waiting.clear()
            n += 1
            await asyncio.sleep(random.uniform(0.04, 0.08))
        stop.set()
        while app.active_run is not None:
            await asyncio.sleep(0.05)
        shown = sum(len(log.lines) for log in view.host_logs(Stage.SETUP).logs.values())
    elapsed = time.perf_counter() - started
    return {
        "latency": latencies,
        "drain": drains,
        "lines/s": [given[0] / (elapsed + 1.0)] if given else [0.0],
        "kept": [float(shown)],
    }


class BeforeLog(Log):
    """The panes' log before issue 15: never holds, sizes its lines in a worker."""

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


def before_log(id=None) -> Log:
    return BeforeLog(max_lines=host_logs.MAX_LINES, id=id)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rate", default="100,1000", help="lines/s per host, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", action="store_true", help="also the panes before issue 15")
    args = ap.parse_args()
    now = host_logs.make_log
    variants = {"now": now, "before": before_log} if args.before else {"now": now}
    rows = [["lines/s per host, panes", "key→paint p50", "p99", "max", "keys", "drain p99", "max"]]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        origin = make_origin(tmp / "origin")
        origin.commit(sample_service_files("svc", "/srv/svc"), "v1")
        names = [f"h{i + 1}" for i in range(args.hosts)]
        fakes = fake_hosts(tmp / "hosts", *names, programs=["svc"])
        config = fake_config(tmp, fakes, origin.url)
        for rate in [float(r) for r in args.rate.split(",")]:
            got: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
            for i in range(args.runs):
                order = list(variants) if i % 2 == 0 else list(variants)[::-1]
                for name in order:
                    host_logs.make_log = build_view.make_log = variants[name]  # type: ignore
                    result = asyncio.run(measure(config, fakes, rate, args.seconds))
                    for key, values in result.items():
                        got[name].setdefault(key, []).extend(values)
            for name, values in got.items():
                rows.append(row(f"{rate:g} × {args.hosts} hosts, {name}", values, args.runs))
    print(format_table(rows))


def row(label: str, got: dict[str, list[float]], runs: int) -> list[str]:
    ms = [v * 1000 for v in got["latency"]]
    drain = [v * 1000 for v in got["drain"]]
    print(
        f"{label}: given {sum(got['lines/s']) / runs:,.0f} lines/s in all; "
        f"latencies (ms) {sorted(round(m) for m in ms)[-10:]} (top 10)",
        flush=True,
    )
    return [
        label,
        f"{pct(ms, 50):.0f} ms",
        f"{pct(ms, 99):.0f} ms",
        f"{max(ms):.0f} ms",
        str(len(ms)),
        f"{pct(drain, 99):.0f} ms",
        f"{max(drain):.0f} ms",
    ]


if __name__ == "__main__":
    main()
