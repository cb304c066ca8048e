"""Issue 13 figures: --plan and --run on N hosts, and the log pane following a program
that writes fast.

Run as root from the repo root:
    python3 -m bench.operate [--runs 5] [--hosts 10] [--rate 10000] [--seconds 10]
Brings up its own loopback bed (tests/testbed.py) and touches nothing else.

Metrics (medians; A/B runs alternate which goes first):
  plan      ``relconsole --plan svc`` on N hosts, wall time of the command (start-up
            included), after a build of v1 and with v2 pending (a program conf changed).
  run       ``relconsole --run svc -- true`` on N hosts vs one ``ssh host true``
            (OpenSSH's client, the same key and known_hosts), wall times; and on one
            host (what start-up and one connection cost alone).
  log pane  a program writing RATE lines/s for SECONDS s under the host's supervisord;
            the process view (the Textual screen, headless, 120×40) follows its stdout
            log from before it starts. Lines lost: numbers 0..N-1 never received (any
            repeat or disorder is reported too). Stall: how late a 10 ms timer fires on
            the event loop while the lines arrive (p50, p99, max).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import alternate, median, pct, print_table, row

FLOOD = """\
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
total, n, w = int(rate * seconds), 0, sys.stdout.write
start = time.monotonic()
while n < total:
    due = min(total, int((time.monotonic() - start) * rate) + 1)
    while n < due:
        w("line %d\\n" % n)
        n += 1
    sys.stdout.flush()
    time.sleep(0.002)
print("done", flush=True)
time.sleep(3600)
"""
PROBE = 0.010


def cli(config: Path, *args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "relconsole", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"relconsole {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return wall


def ssh_true(host) -> float:
    started = time.perf_counter()
    subprocess.run([*host.ssh_argv(), "true"], check=True, timeout=60)
    return time.perf_counter() - started


def plan_and_run(bed, tmp: Path, runs: int) -> list[list[str]]:
    from deployconfig import write_config
    from gitorigin import make_origin, sample_service_files

    origin = make_origin(tmp / "git")
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp / "fleet", bed, origin.url, checks=[])
    cli(config, "--build", "svc")
    files = sample_service_files("svc", "/srv/svc", "v2")
    conf = "deploy/supervisor/svc.conf"
    files[conf] = files[conf].replace("startsecs=1", "startsecs=2")
    origin.commit(files, "v2")
    plans = [cli(config, "--plan", "svc") for _ in range(runs)]
    ran, ssh = alternate(
        lambda: cli(config, "--run", "svc", "--", "true"), lambda: ssh_true(bed.hosts[0]), runs
    )
    one = [cli(config, "--run", "svc", "--hosts", "h1", "--", "true") for _ in range(runs)]
    n = len(bed.hosts)
    print("plan:", [f"{p:.2f}" for p in plans], flush=True)
    print("run:", [f"{r:.2f}" for r in ran], "ssh:", [f"{s:.2f}" for s in ssh], flush=True)
    print("run on one host:", [f"{r:.2f}" for r in one], flush=True)
    return [
        [f"relconsole --plan svc, {n} hosts", f"{median(plans):.2f} s", "-", "-", "<= 1.5 s"],
        row(
            f"relconsole --run svc -- true, {n} hosts",
            median(ran),
            median(ssh),
            "one ssh host true",
            target="<= 1.5x",
        ),
        row("relconsole --run svc --hosts h1 -- true", median(one), median(ssh), "the same ssh"),
    ]


async def follow(config, poller, rate: int, seconds: float, host) -> tuple[list, list[int]]:
    from textual.app import App

    from relconsole.ui.process_screen import ProcessScreen
    from relconsole.ui.program_tail import ProgramTail

    class Harness(App):
        def on_mount(self) -> None:
            self.push_screen(ProcessScreen(config, poller))

    got: list[int] = []
    show = ProgramTail._show

    def counting(self, tail, lines):  # every line the pane is given, in order
        got.extend(int(line[5:]) for line in lines if line.startswith("line "))
        return show(self, tail, lines)

    ProgramTail._show = counting  # type: ignore[method-assign]
    stalls: list[float] = []
    total = int(rate * seconds)
    try:
        app = Harness()
        async with app.run_test(headless=True, size=(120, 40)) as pilot:
            screen = app.screen
            while "h1:flood" not in {r.key for r in screen.table.rows_known}:
                await pilot.pause(0.05)
            keys = [r.key for r in screen.table.visible_rows]
            screen.table.move_cursor(row=keys.index("h1:flood"))
            await pilot.pause(0.1)
            screen.action_tail("stdout")
            await pilot.pause(0.5)  # the first read: an empty log
            last = [time.perf_counter()]

            def probe() -> None:
                now = time.perf_counter()
                stalls.append(max(0.0, now - last[0] - PROBE))
                last[0] = now

            timer = app.set_interval(PROBE, probe)
            host.supervisor_rpc().startProcess("flood", False)
            deadline = time.monotonic() + seconds + 30
            while (not got or got[-1] < total - 1) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            timer.stop()
    finally:
        ProgramTail._show = show  # type: ignore[method-assign]
    return stalls, got


def log_pane(bed, tmp: Path, rate: int, seconds: float) -> list[list[str]]:
    from deployconfig import write_config

    from relconsole.config import load_config
    from relconsole.status.poller import StatusPoller

    host = bed.hosts[0]
    host.path("/srv/flood.py").write_text(FLOOD)
    host.path("/etc/supervisor/conf.d/flood.conf").write_text(
        f"[program:flood]\ncommand=/usr/bin/python3 -u /srv/flood.py {rate} {seconds}\n"
        "autostart=false\nautorestart=false\nstartsecs=0\n"
        "stdout_logfile=/etc/supervisor/log/flood.out.log\n"
    )
    host.supervisorctl("update")
    config = load_config(
        write_config(tmp / "log", bed, "/nonexistent", hosts=["h1"], settings={"poll_interval": 1})
    )
    poller = StatusPoller([config.hosts["h1"]], config.settings)
    try:
        stalls, got = asyncio.run(follow(config, poller, rate, seconds, host))
    finally:
        poller.close()
        try:
            host.supervisor_rpc().stopProcess("flood", False)
        except Exception:
            pass
    total = int(rate * seconds)
    seen = set(got)
    lost = total - len(seen & set(range(total)))
    repeats = len(got) - len(seen)
    disorder = sum(1 for a, b in itertools.pairwise(got) if b <= a)
    ms = sorted(s * 1000 for s in stalls)  # sorted: its last is the max

    print(
        f"log pane: {total:,} lines written, {len(got):,} received ({repeats} repeated, "
        f"{disorder} out of order), {len(ms)} probe ticks",
        flush=True,
    )
    what = f"log pane following {rate:,} lines/s for {seconds:g} s"
    return [
        [f"{what}: lines lost", str(lost), "-", "-", "0"],
        [f"{what}: UI stall p50", f"{pct(ms, 50):.1f} ms", "-", "-", ""],
        [f"{what}: UI stall p99", f"{pct(ms, 99):.1f} ms", "-", "-", "<= 50 ms"],
        [f"{what}: UI stall max", f"{ms[-1]:.1f} ms", "-", "-", ""],
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-log", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from testbed import start_testbed

    with tempfile.TemporaryDirectory() as tmp:
        bed = start_testbed(args.hosts, Path(tmp) / "bed")
        try:
            rows = plan_and_run(bed, Path(tmp), args.runs)
            if not args.skip_log:
                rows += log_pane(bed, Path(tmp), args.rate, args.seconds)
        finally:
            bed.close()
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
