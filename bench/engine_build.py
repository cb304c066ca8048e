"""Issue 2 figures: SSH connections per host per build, wall time of a 3-host build,
and one extra command on an open connection vs a fresh connection.

Run as root from the repo root: python -m bench.engine_build [--runs 5]
Brings up its own loopback test bed (tests/testbed.py); touches nothing else.
"""

from __future__ import annotations

import argparse
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
from relconsole.hosts.ssh import connect
from relconsole.pipeline import run_build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bed = start_testbed(3, tmp / "bed")
        try:
            origin = make_origin(tmp / "git")
            origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
            config_path = write_config(tmp, bed, origin.url)
            config = load_config(config_path)
            walls, conns = [], []
            for n in range(args.runs):
                origin.commit({"VERSION": f"v{n}\n"}, f"v{n}")
                for h in bed.hosts:
                    h.sshd_log.write_text("")
                started = time.monotonic()
                done = run_build(config, "svc", lambda e: None, threading.Event())
                walls.append(time.monotonic() - started)
                assert done.ok, done.error
                conns.append([h.accepted_connections() for h in bed.hosts])
                time.sleep(1.01)  # release ids have one-second resolution
            host = config.hosts["h1"]
            fresh, reused = [], []
            t = connect(host, config.settings)
            for _ in range(20):
                s = time.monotonic()
                t.run("true", timeout=10)
                reused.append(time.monotonic() - s)
                s = time.monotonic()
                t2 = connect(host, config.settings)
                t2.run("true", timeout=10)
                t2.close()
                fresh.append(time.monotonic() - s)
            t.close()
        finally:
            bed.close()
    med = statistics.median
    print(
        f"3-host build (checkout+check+upload+supervisor), {args.runs} runs: "
        f"median {med(walls):.2f}s, min {min(walls):.2f}s, max {max(walls):.2f}s"
    )
    print(f"SSH connections accepted per host per build: {conns}")
    print(
        f"one extra command: open connection median {med(reused) * 1000:.1f} ms; "
        f"fresh connection (connect+auth+command) median {med(fresh) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
