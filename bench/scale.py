"""How a build scales with the fleet (issue 15, target 2), and what max_parallel costs.

Run as root from the repo root:

    python3 -m bench.scale [--runs 3] [--sizes 1,10,50] [--sweep 8,16,32,64]
                           [--fabric PATH/fabric_baseline.py]

Brings up its own loopback bed (tests/testbed.py: a real sshd + supervisord per host)
with max(sizes) hosts and deploys a 300-file service tree with ``python3 -m relconsole
--build svc`` (no checks: lock, upload, switch, update + restart, verify, history), as
the process a person starts. With ``--fabric``, the plain Fabric script
(bench/fabric_baseline.py: upload a tar, extract, switch, ``supervisorctl update`` +
``restart``) deploys its own service (fab) on the same hosts, alternating with
relconsole run by run. Per size: a warm-up of each, then ``--runs`` of each; medians.
``--sweep``: relconsole alone at the largest size with each ``max_parallel``.

Columns:
  wall         spawn to exit of the process.
  RSS          the process's peak resident set (ru_maxrss of wait4).
  threads      the most threads the process had at once (/proc/PID/status, every 5 ms).
  host CPU     what the hosts spent on the run: every bed host's sshd (with the
               sessions, shells and supervisorctl it reaped) and supervisord (with the
               programs it reaped), before vs after.
  machine-own  the machine's CPU from /proc/stat during the run minus the process's
               own (children included): the issue's measure; it also counts whatever
               else the machine did meanwhile (other users, this script's sampler).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deployconfig import write_config
from gitorigin import make_origin
from testbed import SUPERVISORCTL, start_testbed

from bench.common import bed_cpu, machine_busy, median, service_tree
from relconsole.text import format_table

TREE_FILES = 300
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    wall: float
    rss_mb: float
    threads: int
    host_cpu: float
    machine_cpu: float


class ThreadPeak:
    """Samples a process's thread count until stopped; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._done.wait(0.005):
            try:
                text = status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            for line in text.splitlines():
                if line.startswith("Threads:"):
                    self.peak = max(self.peak, int(line.split()[1]))
                    break

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def measure(bed, argv: list[str]) -> Sample:
    busy0, host0 = machine_busy(), bed_cpu(bed)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    threads = ThreadPeak(proc.pid)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    busy1 = machine_busy()
    peak = threads.stop()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        sys.exit(f"{' '.join(argv[:5])}... failed ({code}):\n{out.decode()[-3000:]}")
    time.sleep(0.3)  # the hosts' sshd reap the sessions that just closed
    own = usage.ru_utime + usage.ru_stime
    return Sample(wall, usage.ru_maxrss / 1024, peak, bed_cpu(bed) - host0, busy1 - busy0 - own)


class Deployer:
    """One side's service on the first ``size`` hosts: each call deploys a new commit."""

    def __init__(self, bed, tmp: Path, size: int, name: str, tag: str = "") -> None:
        self.bed, self.hosts, self.name = bed, bed.hosts[:size], name
        self.origin = make_origin(tmp / f"git-{name}-{size}{tag}")
        self.origin.commit(
            {
                k.replace("svc", name): v.replace("svc", name)
                for k, v in service_tree(TREE_FILES).items()
            },
            "v0",
        )
        self.tmp, self.size, self.n = tmp, size, 0

    def commit(self) -> None:
        self.n += 1
        self.origin.commit({"VERSION": f"v{self.n}\n"}, f"v{self.n}")


class Relconsole(Deployer):
    def __init__(self, bed, tmp: Path, size: int, max_parallel: Optional[int] = None) -> None:
        super().__init__(bed, tmp, size, "svc", f"-{max_parallel}")
        settings = {} if max_parallel is None else {"max_parallel": max_parallel}
        self.config = write_config(
            tmp / f"cfg-{size}-{max_parallel}",
            bed,
            self.origin.url,
            checks=[],
            hosts=[h.name for h in self.hosts],
            settings=settings,
        )

    def __call__(self) -> Sample:
        self.commit()
        argv = [sys.executable, "-m", "relconsole", "--config", str(self.config)]
        return measure(self.bed, [*argv, "--build", "svc"])


class FabricScript(Deployer):
    def __init__(self, bed, tmp: Path, size: int, script: Path) -> None:
        super().__init__(bed, tmp, size, "fab")
        self.script = script
        for h in self.hosts:  # the script uploads into its service's folder
            h.path("/srv/fab").mkdir(parents=True, exist_ok=True)
        self.clone = tmp / f"fab-clone-{size}"
        subprocess.run(["git", "clone", "-q", self.origin.url, str(self.clone)], check=True)

    def __call__(self) -> Sample:
        self.commit()
        argv = [
            *(sys.executable, str(self.script)),
            *("--repo", str(self.clone), "--service", "fab", "--path", "/srv/fab"),
            *("--key", str(self.bed.client_key), "--supervisorctl", SUPERVISORCTL),
            *(f"root@{h.address}:{h.port}" for h in self.hosts),
        ]
        return measure(self.bed, argv)


def runs_of(sides: dict[str, Deployer], runs: int, label: str) -> dict[str, list[Sample]]:
    """A warm-up of each side, then ``runs`` of each, alternating which goes first."""
    for side in sides.values():
        side()
    out: dict[str, list[Sample]] = {name: [] for name in sides}
    order = list(sides)
    for i in range(runs):
        for name in order if i % 2 == 0 else order[::-1]:
            out[name].append(sides[name]())
            print(f"  {label} {name}: {out[name][-1]}", flush=True)
    return out


def medians(samples: list[Sample]) -> Sample:
    return Sample(
        median([s.wall for s in samples]),
        median([s.rss_mb for s in samples]),
        int(median([s.threads for s in samples])),
        median([s.host_cpu for s in samples]),
        median([s.machine_cpu for s in samples]),
    )


def cells(s: Sample) -> list[str]:
    return [
        f"{s.wall:.2f} s",
        f"{s.rss_mb:.0f} MB",
        str(s.threads),
        f"{s.host_cpu:.2f} s",
        f"{s.machine_cpu:.2f} s",
    ]


HEADER = ["hosts", "tool", "wall", "peak RSS", "threads", "host CPU", "machine-own"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1,10,50")
    ap.add_argument("--sweep", default="", help="max_parallel values at the largest size")
    ap.add_argument("--fabric", type=Path, help="bench/fabric_baseline.py, for the baseline")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sweep = [int(s) for s in args.sweep.split(",") if s]
    load_before = os.getloadavg()
    rows: list[list[str]] = []
    ratio: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.monotonic()
        bed = start_testbed(max(sizes), tmp / "bed")
        print(f"bed of {max(sizes)} hosts up in {time.monotonic() - started:.1f} s", flush=True)
        try:
            for size in sizes:
                sides: dict[str, Deployer] = {"relconsole": Relconsole(bed, tmp, size)}
                if args.fabric:
                    sides["fabric"] = FabricScript(bed, tmp, size, args.fabric)
                for name, samples in runs_of(sides, args.runs, f"{size} hosts").items():
                    m = medians(samples)
                    rows.append([str(size), name, *cells(m)])
                    ratio.setdefault(name, {})[size] = m.wall
            for max_parallel in sweep:
                side = Relconsole(bed, tmp, max(sizes), max_parallel)
                samples = runs_of({"relconsole": side}, args.runs, f"max_parallel {max_parallel}")
                tool = f"relconsole, max_parallel {max_parallel}"
                rows.append([str(max(sizes)), tool, *cells(medians(samples["relconsole"]))])
        finally:
            bed.close()
    print()
    print(format_table([HEADER, *rows]))
    for name, walls in ratio.items():
        if 1 in walls:
            scaled = ", ".join(f"{n}/1 hosts {w / walls[1]:.2f}x" for n, w in walls.items())
            print(f"{name}: {scaled}")
    print(f"load average before: {load_before}, after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
