"""Status poll figures: one poll tick over 10 hosts, and the remote CPU one poll costs
a host -- relconsole's fast path (relconsole/fastpoll.py) against spawning supervisorctl.

Run as root from the repo root: python3 -m bench.poll [--runs 15] [--fast-polls 300]
[--ctl-polls 20]. Brings up its own 10-host loopback test bed (tests/testbed.py), gives
every host three programs (one RUNNING, a group of two, one STOPPED), touches nothing
else. Client, hosts and supervisord all share this machine's CPUs, so absolute figures
depend on it; the ratios are the point.

Wall time of one tick, A/B alternating (the order flips every run), medians:
  relconsole   ``StatusPoller.poll()`` over the 10 hosts on persistent connections with
               the helpers already running (one warm-up poll first): what the process
               view pays every couple of seconds.
  alternative  naive: ``ssh host supervisorctl status`` to the 10 hosts at once (OpenSSH
               client, one thread each, a fresh connection each, as the bed's own
               ``FakeHost.ssh`` does it).
  Informative: ``StatusPoller(fast=False)`` (supervisorctl over the same persistent
  connections), ``ssh host true`` (the naive run's connection cost alone) and one
  host's ``poll_host`` on its own (the fast path's round trip without the fan-out).

Remote CPU per poll per host, from /proc (the bed's hosts share this kernel), in
clock ticks (utime+stime, 10 ms each; hence many polls per block):
  relconsole   before and after a block of ticks of the fast poller: every process of
               the host's sshd session for that connection (the ``[priv]`` monitor and
               the user's session process: utime+stime+cutime+cstime), the live helper
               (utime+stime) and the host's supervisord (utime+stime); the sum of the
               differences / ticks, median over hosts.
  alternative  the same over a block of ticks of ``StatusPoller(fast=False)``: each
               poll spawns ``sh -c 'supervisorctl status'`` on the open connection; the
               session process reaps it, so its cutime+cstime carry the shell, Python's
               start and supervisor's imports.
  Informative: the naive run's remote CPU: the listener sshd's cutime+cstime (it reaps
  each connection's sshd processes and, through them, supervisorctl) + supervisord.
  Blocks alternate fast/supervisorctl, ``--runs`` // 3 pairs; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from deployconfig import write_config
from testbed import SUPERVISORCTL, FakeHost, start_testbed

from relconsole.config import load_config
from relconsole.status.fastpath import HELPER_MARK
from relconsole.status.poller import StatusPoller

PROGRAMS = """\
[program:api]
command=sleep 100000
startsecs=0

[program:workers]
command=sleep 100000
process_name=%(program_name)s_%(process_num)02d
numprocs=2
startsecs=0

[program:cron]
command=sleep 100000
autostart=false
"""
EXPECTED = {"api": "RUNNING", "workers_00": "RUNNING", "workers_01": "RUNNING", "cron": "STOPPED"}


# --- /proc ----------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ticks(pid: int, children: bool) -> int:
    """utime+stime (fields 14, 15), plus cutime+cstime (16, 17) of reaped children."""
    f = _stat(pid)
    return int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)


def _pid_file(path: Path) -> int:
    return int(path.read_text().split()[0])


def _descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                kids.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def session_cpu(host: FakeHost) -> dict[str, int]:
    """CPU ticks so far of everything serving this host's open connection(s)."""
    listener = _pid_file(host.root / "sshd.pid")
    sshd = helper = 0
    for pid in _descendants(listener):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmd.startswith(b"sshd: "):
                sshd += _ticks(pid, children=True)
            elif HELPER_MARK.encode() in cmd:
                helper += _ticks(pid, children=False)
        except OSError:
            pass
    supervisord = _ticks(_pid_file(host.root / "etc-supervisor" / "supervisord.pid"), False)
    return {"sshd": sshd, "helper": helper, "supervisord": supervisord}


def listener_cpu(host: FakeHost) -> dict[str, int]:
    listener = _pid_file(host.root / "sshd.pid")
    supervisord = _ticks(_pid_file(host.root / "etc-supervisor" / "supervisord.pid"), False)
    return {
        "sshd+children": _ticks(listener, children=True) - _ticks(listener, children=False),
        "supervisord": supervisord,
    }


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


# --- the two ways ------------------------------------------------------------------------


def naive_tick(hosts: list[FakeHost], pool: ThreadPoolExecutor, command: str) -> None:
    def one(host: FakeHost) -> None:
        proc = subprocess.run(
            [*host.ssh_argv(), command],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if command != "true":
            assert "api" in proc.stdout and "RUNNING" in proc.stdout, proc.stdout + proc.stderr

    list(pool.map(one, hosts))


def poller_tick(poller: StatusPoller) -> None:
    statuses = poller.poll()
    for st in statuses:
        assert (
            st.error is None and {r.name.split(":")[-1]: r.state.value for r in st.rows} == EXPECTED
        ), st


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def cpu_block(hosts, poller: StatusPoller, polls: int) -> tuple[float, dict[str, float]]:
    """Remote CPU ms per poll per host over ``polls`` ticks: median over hosts, and the
    mean split by process kind."""
    before = [session_cpu(h) for h in hosts]
    for _ in range(polls):
        poller_tick(poller)
    after = [session_cpu(h) for h in hosts]
    per_host = [_delta(a, b) for a, b in zip(after, before)]
    ms = lambda ticks: ticks * 1000 / os.sysconf("SC_CLK_TCK") / polls  # noqa: E731
    totals = [ms(sum(d.values())) for d in per_host]
    split = {k: statistics.mean(ms(d[k]) for d in per_host) for k in per_host[0]}
    return statistics.median(totals), split


# --- main ------------------------------------------------------------------------------


def setup_programs(host: FakeHost) -> None:
    host.path("/etc/supervisor/conf.d/bench.conf").write_text(PROGRAMS)
    host.supervisorctl("update")
    rpc = host.supervisor_rpc()
    deadline = time.monotonic() + 20
    while {i["name"]: i["statename"] for i in rpc.getAllProcessInfo()} != EXPECTED:
        assert time.monotonic() < deadline, f"programs of {host.name} did not start"
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--fast-polls", type=int, default=300, help="ticks per fast CPU block")
    ap.add_argument("--ctl-polls", type=int, default=20, help="ticks per supervisorctl CPU block")
    args = ap.parse_args()
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bed = start_testbed(args.hosts, tmp / "bed")
        try:
            with ThreadPoolExecutor(len(bed.hosts)) as pool:
                list(pool.map(setup_programs, bed.hosts))
            for h in bed.hosts:
                h.sshd_log.write_text("")  # count the bench's connections only
            config = load_config(write_config(tmp, bed, "file:///unused"))
            hosts = list(config.hosts.values())
            fast = StatusPoller(hosts, config.settings)
            slow = StatusPoller(hosts, config.settings, fast=False)
            pool = ThreadPoolExecutor(len(bed.hosts))
            try:
                poller_tick(fast)  # connect, start the helpers
                poller_tick(slow)  # connect
                assert all(fast.via(h.name) == "fast" for h in hosts), [
                    fast.fast_path_off(h.name) for h in hosts
                ]
                walls: dict[str, list[float]] = {"fast": [], "naive": [], "slow": [], "true": []}
                naive_cpu: list[float] = []
                for run in range(args.runs):
                    order = ["fast", "naive", "slow", "true"]
                    for way in order if run % 2 == 0 else order[::-1]:
                        if way == "fast":
                            walls[way].append(timed(poller_tick, fast))
                        elif way == "slow":
                            walls[way].append(timed(poller_tick, slow))
                        elif way == "true":
                            walls[way].append(timed(naive_tick, bed.hosts, pool, "true"))
                        else:
                            before = [listener_cpu(h) for h in bed.hosts]
                            walls[way].append(
                                timed(naive_tick, bed.hosts, pool, f"{SUPERVISORCTL} status")
                            )
                            time.sleep(0.2)  # let each listener reap its connection's sshd
                            after = [listener_cpu(h) for h in bed.hosts]
                            naive_cpu.append(
                                med(sum(_delta(a, b).values()) for a, b in zip(after, before))
                                * 1000
                                / os.sysconf("SC_CLK_TCK")
                            )
                one_host = [timed(fast.poll_host, hosts[0]) for _ in range(50)]
                cpu = {"fast": [], "slow": []}
                splits = {"fast": [], "slow": []}
                for pair in range(max(1, args.runs // 3)):
                    for way in ("fast", "slow") if pair % 2 == 0 else ("slow", "fast"):
                        poller, polls = (
                            (fast, args.fast_polls) if way == "fast" else (slow, args.ctl_polls)
                        )
                        total, split = cpu_block(bed.hosts, poller, polls)
                        cpu[way].append(total)
                        splits[way].append(split)
                conns = [h.accepted_connections() for h in bed.hosts]
            finally:
                pool.shutdown()
                fast.close()
                slow.close()
        finally:
            bed.close()

    def row(metric, ours, theirs, unit):
        print(f"{metric:<62} {ours:>10.1f} {theirs:>12.1f} {unit:<3} {ours / theirs:>7.3f}")

    n = len(bed.hosts)
    print(
        f"\n{n} hosts, {args.runs} alternating runs, medians "
        f"(CPU: {max(1, args.runs // 3)} block pairs of {args.fast_polls} fast / "
        f"{args.ctl_polls} supervisorctl ticks)\n"
    )
    print(f"{'metric':<62} {'relconsole':>10} {'alternative':>12} {'':<3} {'ratio':>7}")
    row(
        f"poll tick over {n} hosts: fast path vs naive ssh",
        med(walls["fast"]) * 1e3,
        med(walls["naive"]) * 1e3,
        "ms",
    )
    row(
        "remote CPU per poll per host: helper vs supervisorctl",
        med(cpu["fast"]),
        med(cpu["slow"]),
        "ms",
    )
    print("\ninformative")
    row(
        f"poll tick over {n} hosts: fast vs supervisorctl, open conn.",
        med(walls["fast"]) * 1e3,
        med(walls["slow"]) * 1e3,
        "ms",
    )
    row(
        f"poll tick over {n} hosts: fast vs naive `ssh host true`",
        med(walls["fast"]) * 1e3,
        med(walls["true"]) * 1e3,
        "ms",
    )
    row("remote CPU per poll per host: helper vs naive ssh", med(cpu["fast"]), med(naive_cpu), "ms")
    print(f"  one host alone (poll_host, fast path): median {med(one_host) * 1e3:.2f} ms")
    for way in ("fast", "slow"):
        parts = {k: statistics.mean(s[k] for s in splits[way]) for k in splits[way][0]}
        print(
            f"  remote CPU split, {'fast path' if way == 'fast' else 'supervisorctl on open conn.'}: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in parts.items())
        )
    print(
        f"  walls fast min/max {min(walls['fast']) * 1e3:.1f}/{max(walls['fast']) * 1e3:.1f} ms; "
        f"naive {min(walls['naive']) * 1e3:.0f}/{max(walls['naive']) * 1e3:.0f} ms"
    )
    print(
        f"  ssh connections accepted per host: {sorted(set(conns))} (expected 2 pollers + "
        f"2 naive per run = {2 + 2 * args.runs})"
    )


if __name__ == "__main__":
    main()
