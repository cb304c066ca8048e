"""relconsole's build against the plain Fabric script it replaces (issue 15, target 1).

Run as root from the repo root:

    python3 -m bench.vs_fabric [--runs 3] [--sizes 3,10] [--timeline]

Brings up its own loopback bed (tests/testbed.py: real sshd + supervisord per host) and
deploys the same 300-file service tree with both, as the processes a person starts:
``python3 -m relconsole --build svc`` (no checks; it locks, verifies every program
RUNNING past startsecs and records history) and ``bench/fabric_baseline.py`` (upload a
tar, extract, install the conf, switch, ``supervisorctl update`` + ``restart``). Each
side deploys its own service (svc, fab) on the same hosts; each run deploys a new
commit. Per fleet size: one warm-up of each, then ``--runs`` of each, alternating which
goes first; medians.

Columns:
  wall         spawn to exit of the process.
  host CPU     what the hosts spent on the run: the CPU time of every bed host's sshd
               (with the sessions, shells and supervisorctl it reaped) and supervisord
               (with the programs it reaped), before vs after. Beside it, as the issue
               asks, the machine's CPU time from /proc/stat during the run minus the
               client process's own (children included): that one also counts what
               other users of the machine did meanwhile.
``--timeline``: one more relconsole build per size, printed as a timeline per stage and
per host (bench/timeline.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deployconfig import write_config
from gitorigin import make_origin
from testbed import SUPERVISORCTL, start_testbed

from bench.common import bed_cpu, machine_busy, median, service_tree
from bench.startup import compile_package
from bench.timeline import print_timeline, timed_build

TREE_FILES = 300
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    wall: float
    host_cpu: float  # the bed's sshd + supervisord trees
    machine_cpu: float  # /proc/stat busy time minus the client's own


def measure(bed, argv: list[str]) -> Sample:
    busy0, host0 = machine_busy(), bed_cpu(bed)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    busy1 = machine_busy()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])}... failed ({proc.returncode}):\n{out.decode()[-3000:]}")
    time.sleep(0.3)  # the hosts' sshd reap the session that just closed
    own = usage.ru_utime + usage.ru_stime
    return Sample(wall, bed_cpu(bed) - host0, busy1 - busy0 - own)


def compare(bed, tmp: Path, size: int, runs: int, timeline: bool) -> list[list[str]]:
    hosts = bed.hosts[:size]
    ours_origin = make_origin(tmp / f"git-svc-{size}")
    ours_origin.commit(service_tree(TREE_FILES), "v0")
    theirs_origin = make_origin(tmp / f"git-fab-{size}")
    theirs_origin.commit(
        {
            k.replace("svc", "fab"): v.replace("/srv/svc", "/srv/fab").replace("svc", "fab")
            for k, v in service_tree(TREE_FILES).items()
        },
        "v0",
    )
    config = write_config(
        tmp / f"cfg-{size}", bed, ours_origin.url, checks=[], hosts=[h.name for h in hosts]
    )
    for h in hosts:  # the script uploads into its service's folder
        h.path("/srv/fab").mkdir(parents=True, exist_ok=True)
    clone = tmp / f"fab-clone-{size}"
    subprocess.run(["git", "clone", "-q", theirs_origin.url, str(clone)], check=True)
    n = [0]

    def ours() -> Sample:
        n[0] += 1
        ours_origin.commit({"VERSION": f"v{n[0]}\n"}, f"v{n[0]}")
        argv = [sys.executable, "-m", "relconsole", "--config", str(config), "--build", "svc"]
        return measure(bed, argv)

    def theirs() -> Sample:
        n[0] += 1
        theirs_origin.commit({"VERSION": f"v{n[0]}\n"}, f"v{n[0]}")
        argv = [
            *(sys.executable, str(ROOT / "bench" / "fabric_baseline.py")),
            *("--repo", str(clone), "--service", "fab", "--path", "/srv/fab"),
            *("--key", str(bed.client_key), "--supervisorctl", SUPERVISORCTL),
            *(f"root@{h.address}:{h.port}" for h in hosts),
        ]
        return measure(bed, argv)

    ours()  # warm-up: first releases, workspaces, page cache
    theirs()
    a: list[Sample] = []
    b: list[Sample] = []
    for i in range(runs):
        for fn, out in ((ours, a), (theirs, b)) if i % 2 == 0 else ((theirs, b), (ours, a)):
            out.append(fn())
            print(f"  {size} hosts {'relconsole' if out is a else 'fabric'}: {out[-1]}", flush=True)
    if timeline:
        n[0] += 1
        ours_origin.commit({"VERSION": f"v{n[0]}\n"}, f"v{n[0]}")
        print(f"\ntimeline of one relconsole build, {size} hosts:")
        print_timeline(timed_build(config, "svc"))
    rows = []
    for what, pick in (
        ("wall", lambda s: s.wall),
        ("host CPU", lambda s: s.host_cpu),
        ("machine CPU - client", lambda s: s.machine_cpu),
    ):
        x, y = median([pick(s) for s in a]), median([pick(s) for s in b])
        rows.append([f"{size} hosts: {what}", f"{x:.2f} s", f"{y:.2f} s", f"{x / y:.2f}x"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="3,10")
    ap.add_argument("--timeline", action="store_true", help="also a timeline per size")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    compile_package()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bed = start_testbed(max(sizes), Path(tmp) / "bed")
        try:
            for size in sizes:
                rows += compare(bed, Path(tmp), size, args.runs, args.timeline)
        finally:
            bed.close()
    print()
    print_table_plain(rows)
    print(f"load average before: {load_before}, after: {os.getloadavg()}")


def print_table_plain(rows: list[list[str]]) -> None:
    from relconsole.text import format_table

    print(format_table([["metric (median)", "relconsole", "fabric script", "ratio"], *rows]))


if __name__ == "__main__":
    main()
