"""Issue 12 figures: builds through a bastion, and --doctor.

Run as root from the repo root: python3 -m bench.reach [--runs 5] [--hosts 10]
Brings up its own beds and touches nothing else: a bastion bed in network namespaces
(tests/netbed.py, addresses only inside them) and a loopback bed (tests/testbed.py).

Metrics (medians; A/B runs alternate which goes first):
  bastion vs direct  a build (no checks: checkout of a warm workspace, lock, upload,
                     switch, restart, verify) of N hosts through one bastion, run from
                     the client's namespace, vs the same N hosts built directly from the
                     bastion's namespace (where the targets are one veth away).
  bastion conns      connections the bastion's sshd accepted per build through it.
  doctor             ``relconsole --doctor`` on N loopback hosts, wall time of the
                     command (start-up included), and of run_doctor in-process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import alternate, median, print_table, row, service_tree

TREE_FILES = 300  # as bench.deploy: the sample app + a lib/ of this many files


def inner(config: str, service: str) -> None:
    """One build, timed in-process; runs inside a namespace (see :func:`build_in`)."""
    from relconsole.config import load_config
    from relconsole.pipeline import run_build

    cfg = load_config(Path(config))
    started = time.perf_counter()
    done = run_build(cfg, service, lambda e: None, threading.Event())
    wall = time.perf_counter() - started
    print(json.dumps({"ok": done.ok, "error": done.error, "wall": wall}))


def build_in(bed, role: str, config: Path) -> float:
    proc = subprocess.run(
        bed.in_ns(role, sys.executable, "-m", "bench.reach", "--inner", str(config)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    if not result.get("ok"):
        raise SystemExit(f"build in {role} failed: {result or proc.stderr}")
    time.sleep(1.01)  # release ids have one-second resolution
    return result["wall"]


def bastion_vs_direct(tmp: Path, n_hosts: int, runs: int) -> list[list[str]]:
    import tomli_w
    from gitorigin import make_origin
    from netbed import start_netbed
    from testbed import SUPERVISORCTL

    bed = start_netbed(n_hosts, tmp / "netbed")
    try:
        origin = make_origin(tmp / "git")
        origin.commit(service_tree(TREE_FILES), "v0")
        known = tmp / "known_hosts"
        known.write_text("".join(h.host_key_line() + "\n" for h in [bed.bastion, *bed.hosts]))

        def config(name: str, jump: bool) -> Path:
            hosts = {
                h.name: {
                    "address": h.address,
                    "user": "root",
                    "key": str(bed.client_key),
                    "supervisorctl": SUPERVISORCTL,
                    **({"jump": "bastion"} if jump else {}),
                }
                for h in bed.hosts
            }
            hosts["bastion"] = {
                "address": bed.bastion.address,
                "user": "deploy",
                "key": str(bed.client_key),
            }
            doc = {
                "settings": {
                    "state_dir": str(tmp / name / "state"),
                    "known_hosts": str(known),
                    "ssh_config": "",
                },
                "hosts": hosts,
                "services": {
                    "svc": {
                        "repo": origin.url,
                        "hosts": [h.name for h in bed.hosts],
                        "programs": ["svc"],
                        "files": [
                            {"src": "deploy/supervisor/*.conf", "dest": "/etc/supervisor/conf.d"}
                        ],
                    }
                },
            }
            (tmp / name).mkdir()
            path = tmp / name / "config.toml"
            path.write_bytes(tomli_w.dumps(doc).encode())
            return path

        via, direct = config("via", jump=True), config("direct", jump=False)
        for warm in ((via, "client"), (direct, "bastion")):  # workspaces, first releases
            build_in(bed, warm[1], warm[0])
        conns: list[int] = []

        def through_bastion() -> float:
            bed.bastion.sshd_log.write_text("")
            wall = build_in(bed, "client", via)
            conns.append(bed.bastion.accepted_connections())
            return wall

        a, b = alternate(through_bastion, lambda: build_in(bed, "bastion", direct), runs)
        print("via bastion:", a, "direct:", b, "bastion connections:", conns, flush=True)
    finally:
        bed.close()
    return [
        row(
            f"deploy to {n_hosts} hosts through one bastion",
            median(a),
            median(b),
            "the same hosts direct",
            target="<= 1.2x",
        ),
        [
            "bastion connections accepted per build",
            "/".join(map(str, sorted(set(conns)))),
            "-",
            "-",
            "exactly 1",
        ],
    ]


def doctor(tmp: Path, n_hosts: int, runs: int) -> list[list[str]]:
    from deployconfig import write_config
    from test_testbed import start_sample
    from testbed import start_testbed

    from relconsole.config import load_config
    from relconsole.doctor import run_doctor

    bed = start_testbed(n_hosts, tmp / "bed")
    try:
        for host in bed.hosts:
            start_sample(host)
        path = write_config(tmp / "doctor", bed, "/nonexistent")
        cfg = load_config(path)
        cli, engine, failures = [], [], set()
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "relconsole", "--config", str(path), "--doctor", "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            cli.append(time.perf_counter() - started)
            failures |= {(r["host"], r["check"]) for r in json.loads(proc.stdout) if not r["ok"]}
            started = time.perf_counter()
            run_doctor(cfg, list(cfg.services.values()))
            engine.append(time.perf_counter() - started)
        print("doctor cli:", cli, "in-process:", engine, "failing:", failures, flush=True)
    finally:
        bed.close()
    return [
        [f"relconsole --doctor, {n_hosts} hosts", f"{median(cli):.2f} s", "-", "-", "<= 2 s"],
        [f"run_doctor in-process, {n_hosts} hosts", f"{median(engine):.2f} s", "-", "-", ""],
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--inner", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.inner, "svc")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    with tempfile.TemporaryDirectory() as tmp:
        rows = bastion_vs_direct(Path(tmp) / "reach", args.hosts, args.runs)
        rows += doctor(Path(tmp) / "doctor", args.hosts, args.runs)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
