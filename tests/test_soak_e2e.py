"""Issue 14's crash soak: relconsole killed with SIGKILL at seeded random moments of
builds. After every round no host is without a complete ``current`` (once one was
deployed), ``--unlock`` recovers the lock, and a normal build then leaves every host
on the same release. The seed is printed; RELCONSOLE_SOAK_SEED replays a run and
RELCONSOLE_SOAK_ROUNDS makes it longer."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import cli, current_release

ROUNDS = int(os.environ.get("RELCONSOLE_SOAK_ROUNDS", "8"))


def complete(host, release: str, path: str = "/srv/svc") -> bool:
    folder = host.path(path) / "releases" / release
    return (folder / "REVISION").is_file() and (folder / "app.py").is_file()


def test_builds_killed_at_random_moments_never_leave_a_broken_fleet(bed, origin, tmp_path):
    seed = int(os.environ.get("RELCONSOLE_SOAK_SEED", random.randrange(1 << 30)))
    print(f"soak seed {seed} ({ROUNDS} rounds)")
    rng = random.Random(seed)
    origin.commit(sample_service_files("svc", "/srv/svc", "v0"), "v0")
    config = write_config(tmp_path, bed, origin.url, checks=[])
    first = cli("--config", str(config), "--build", "svc")
    assert first.returncode == 0, first.stdout + first.stderr
    for n in range(1, ROUNDS + 1):
        origin.commit({"VERSION": f"v{n}\n"}, f"v{n}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relconsole", "--config", str(config), "--build", "svc"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.0, 2.5))  # a build here takes ~1.5-3 s: any moment of it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        where = f"round {n} (seed {seed})"
        for host in bed.hosts:
            release = current_release(host)
            assert release is not None and complete(host, release), f"{where}: {host.name}"
        unlocked = cli("--config", str(config), "--unlock", "svc")
        assert unlocked.returncode == 0, f"{where}: {unlocked.stdout}{unlocked.stderr}"
        again = cli("--config", str(config), "--build", "svc")
        assert again.returncode == 0, f"{where}: {again.stdout}{again.stderr}"
        assert len({current_release(h) for h in bed.hosts}) == 1, where
        for host in bed.hosts:
            assert host.program_pid("svc") is not None, f"{where}: svc down on {host.name}"
