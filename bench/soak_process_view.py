"""The process view on a fleet that keeps failing: issue 14's long soak.

Run as root from the repo root: python3 -m bench.soak_process_view [--minutes 10]
[--hosts 10] [--seed N]. Brings up its own loopback bed (tests/testbed.py), opens the
real console headless (Textual's run_test) on the process view, and for the given time
restarts sshd or supervisord on a random host every few seconds (seeded; the seed is
printed). It measures:

- recovery: from the moment a host's sshd/supervisord is back, how long until the
  process view shows that host's program RUNNING again, in polls (target: within two);
  and the view's own part of it: from the moment the host serves again (its program
  RUNNING, asked over supervisord's socket directly) to the view showing it;
- the console's RSS and thread count, sampled every 30 s (target: flat), with the
  number of objects Python's collector tracks. To tell a leak from memory the
  allocator keeps: ``--trim`` collects garbage and calls glibc's ``malloc_trim(0)`` at
  each sample, then shows RSS again (what that gives back was not live); run with
  ``MALLOC_ARENA_MAX=2`` in the environment to limit the per-thread arenas;
  ``--no-faults`` polls a healthy fleet only (the growth of polling alone);
  ``--types`` lists the kinds of live objects that grew most from the first minute.

Numbers go to stdout as a table; nothing is asserted (this is a benchmark script, not
a timed test).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from deployconfig import write_config
from gitorigin import make_origin, sample_service_files
from testbed import start_testbed

from relconsole.config import load_config
from relconsole.pipeline import run_build

POLL_INTERVAL = 1.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(elapsed: float, trim: bool) -> tuple[float, float, float, int, int]:
    """(t, RSS, RSS after a full collection and malloc_trim or NaN, threads, objects the
    collector tracks: after that collection with ``trim``, so only live ones)."""
    rss = rss_mb()
    trimmed = float("nan")
    if trim:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = rss_mb()
    return elapsed, rss, trimmed, threading.active_count(), len(gc.get_objects())


#: The names :func:`live_types` saw on widgets and screens (Textual's DOM nodes).
WIDGET_TYPES: set[str] = set()


def live_types() -> collections.Counter[str]:
    """How many live objects of each type (after a full collection)."""
    from textual.dom import DOMNode

    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        name = f"{type(o).__module__}.{type(o).__qualname__}"
        counts[name] += 1
        if isinstance(o, DOMNode):
            WIDGET_TYPES.add(name)
    return counts


async def soak(
    minutes: float,
    n_hosts: int,
    seed: int,
    trace: bool = False,
    trim: bool = False,
    faults: bool = True,
    types: bool = False,
) -> None:
    from relconsole.ui.app import RelconsoleApp
    from relconsole.ui.process_screen import ProcessScreen

    base = Path(tempfile.mkdtemp(prefix="relconsole-soak-"))
    bed = start_testbed(n_hosts, base / "bed")
    try:
        origin = make_origin(base / "origin")
        origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
        config = load_config(
            write_config(
                base, bed, origin.url, checks=[], settings={"poll_interval": POLL_INTERVAL}
            )
        )
        finished = run_build(config, "svc", lambda e: None)
        if not finished.ok:
            raise SystemExit(f"the first build failed: {finished.error}")
        rng = random.Random(seed)
        app = RelconsoleApp(config)
        recoveries: list[float] = []
        #: From the host serving again (its program RUNNING, asked directly) to the view
        #: showing it: the view's own part of a recovery (0 when it was already shown).
        caught_up: list[float] = []
        samples: list[tuple[float, float, float, int, int]] = []
        async with app.run_test(headless=True, size=(200, 60)) as pilot:
            await pilot.press("p")
            while not isinstance(app.screen, ProcessScreen):
                await pilot.pause(0.05)
            screen = app.screen

            def running(host: str) -> bool:
                rows = screen._statuses.get(host)  # the view's last answer for the host
                return bool(
                    rows is not None
                    and rows.reachable
                    and any(r.state.value == "RUNNING" for r in rows.rows)
                )

            started = time.monotonic()
            next_sample = started
            baseline = None
            first_types: collections.Counter[str] | None = None
            if trace:  # what grows, by line of code, from the first minute to the end
                import tracemalloc

                tracemalloc.start(10)
            while time.monotonic() - started < minutes * 60:
                if time.monotonic() >= next_sample:
                    samples.append(sample(time.monotonic() - started, trim))
                    next_sample += 30
                    if types and first_types is None and time.monotonic() - started > 60:
                        first_types = live_types()
                    if trace and baseline is None and time.monotonic() - started > 60:
                        baseline = tracemalloc.take_snapshot()
                if not faults:
                    await pilot.pause(1.0)
                    continue
                host = rng.choice(bed.hosts)
                what = rng.choice(["sshd", "supervisord"])
                await asyncio.to_thread(host.stop_sshd if what == "sshd" else host.stop_supervisord)
                await pilot.pause(rng.uniform(0.5, 2.0))
                await asyncio.to_thread(
                    host.start_sshd if what == "sshd" else host.start_supervisord
                )
                back = time.monotonic()
                serving = None  # when the host itself had the program RUNNING again
                while not running(host.name):
                    if serving is None and await asyncio.to_thread(host.program_pid, "svc"):
                        serving = time.monotonic()
                    if time.monotonic() - back > 30:
                        print(f"{host.name}: not RUNNING 30 s after {what} came back")
                        break
                    await pilot.pause(0.05)
                seen = time.monotonic()
                recoveries.append(seen - back)
                caught_up.append(seen - (serving if serving is not None else seen))
                await pilot.pause(rng.uniform(0.5, 3.0))
            samples.append(sample(time.monotonic() - started, trim))
            if first_types is not None:
                grown = live_types()
                grown.subtract(first_types)
                print("live objects that grew most since the first minute:")
                for name, count in grown.most_common(15):
                    print(f"  {count:+8d}  {name}")
                print("of which widgets and screens:")
                widgets = [(n, c) for n, c in grown.most_common() if n in WIDGET_TYPES]
                for name, count in widgets[:10]:
                    print(f"  {count:+8d}  {name}")
            if trace and baseline is not None:
                growth = tracemalloc.take_snapshot().compare_to(baseline, "traceback")
                print("largest growth since the first minute:")
                for stat in growth[:8]:
                    print(f"  {stat.size_diff / 1024:8.0f} KiB  {stat.count_diff:+7d} blocks")
                    for frame in stat.traceback.format()[-6:]:
                        print("      " + frame)
        polls = [r / POLL_INTERVAL for r in recoveries]
        print(f"seed {seed}, {n_hosts} hosts, {minutes:g} min, poll_interval {POLL_INTERVAL:g}s")
        print(f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset)')}")
        print(f"restarts: {len(recoveries)}")
        if polls:
            print(
                "recovery after the host was back, in polls: "
                f"median {statistics.median(polls):.2f}, max {max(polls):.2f}, "
                f"within two polls: {sum(p <= 2 for p in polls)}/{len(polls)}"
            )
            view = [c / POLL_INTERVAL for c in caught_up]
            print(
                "from the host serving again (program RUNNING on it) to the view showing "
                f"it, in polls: median {statistics.median(view):.2f}, max {max(view):.2f}, "
                f"within two polls: {sum(p <= 2 for p in view)}/{len(view)}"
            )
        print("t (s)   RSS (MB)  after trim  threads  objects")
        for t, rss, trimmed, threads, objects in samples:
            print(f"{t:6.0f}  {rss:8.1f}  {trimmed:10.1f}  {threads:7d}  {objects:7d}")
    finally:
        bed.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--trace", action="store_true", help="tracemalloc: what grows")
    ap.add_argument("--trim", action="store_true", help="RSS after malloc_trim(0) too")
    ap.add_argument("--no-faults", action="store_true", help="restart nothing: poll only")
    ap.add_argument("--types", action="store_true", help="which live objects grew")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bed starts sshd in mount namespaces")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    faults = not args.no_faults
    asyncio.run(soak(args.minutes, args.hosts, seed, args.trace, args.trim, faults, args.types))


if __name__ == "__main__":
    main()
