"""Issue 14's crash soak: relconsole killed with SIGKILL at seeded random moments of
builds. After every round no host is without a complete ``current`` (once one was
deployed), ``--unlock`` recovers the lock, and a normal build then leaves every host
on the same release. The seed is printed; RELCONSOLE_SOAK_SEED replays a run's draws
(the moments scale with the first build's duration, printed too) and
RELCONSOLE_SOAK_ROUNDS makes it longer.

Two services: a plain one, and one shipped as issue 11 ships a web service (shared
files, a setup command, health probes made from the hosts, restarts in two batches)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from balancer import get
from deployconfig import PORT, write_config, write_ship_config
from gitorigin import sample_service_files, web_service_files
from test_build_e2e import build, cli, current_release

ROUNDS = int(os.environ.get("RELCONSOLE_SOAK_ROUNDS", "8"))
PATH = "/srv/svc"


def complete(host, release: str, made: tuple[str, ...]) -> bool:
    """Whether the release holds what relconsole and setup write (``made``) and the
    tree's app.py."""
    folder = host.path(PATH) / "releases" / release
    return all((folder / name).is_file() for name in ("REVISION", "app.py", *made))


def soak(
    bed,
    origin,
    config: Path,
    checks: Callable[[str, int], None],
    made: tuple[str, ...] = (),
) -> None:
    """A first build, then ROUNDS builds each killed at a random moment of it (the first
    build's duration sets the window, so a loaded machine moves it along); after each,
    every ``current`` is complete (:func:`complete`), ``--unlock`` and a normal build
    succeed, every host is on that build's release, and ``checks(where, round)``."""
    seed = int(os.environ.get("RELCONSOLE_SOAK_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    started = time.monotonic()
    first = cli("--config", str(config), "--build", "svc")
    assert first.returncode == 0, first.stdout + first.stderr
    longest = time.monotonic() - started
    print(f"soak seed {seed} ({ROUNDS} rounds, killed within {longest:.1f}s)")
    for n in range(1, ROUNDS + 1):
        origin.commit({"VERSION": f"v{n}\n"}, f"v{n}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relconsole", "--config", str(config), "--build", "svc"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.0, longest))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        where = f"round {n} (seed {seed})"
        for host in bed.hosts:
            release = current_release(host)
            assert release is not None and complete(host, release, made), f"{where}: {host.name}"
        unlocked = cli("--config", str(config), "--unlock", "svc")
        assert unlocked.returncode == 0, f"{where}: {unlocked.stdout}{unlocked.stderr}"
        again, _ = build(config)  # in this process: an interpreter start less per round
        assert again.ok, f"{where}: {again.error}"
        assert {current_release(h) for h in bed.hosts} == {again.release}, where
        checks(where, n)


def test_builds_killed_at_random_moments_never_leave_a_broken_fleet(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", PATH, "v0"), "v0")
    config = write_config(tmp_path, bed, origin.url, checks=[])

    def running(where: str, _round: int) -> None:
        for host in bed.hosts:
            assert host.program_pid("svc") is not None, f"{where}: svc down on {host.name}"

    soak(bed, origin, config, running)


def test_shipping_builds_killed_at_random_moments_never_leave_a_broken_fleet(bed, origin, tmp_path):
    origin.commit(web_service_files("svc", PATH, "v0"), "v0")
    config = write_ship_config(
        tmp_path,
        bed,
        origin.url,
        shared=["logs/", ".env"],
        setup=[{"name": "stamp", "run": 'echo "built $RELCONSOLE_SHA" > BUILD_STAMP'}],
        health=[{"name": "http", "url": "http://${ADDRESS}:${PORT}/healthz", "expect": "ok"}],
        rolling=2,  # two batches: h1 and h2, then h3
    )

    def shipped(where: str, n: int) -> None:
        for host in bed.hosts:
            release = host.path(f"{PATH}/releases/{current_release(host)}")
            # setup ran and the shared files are linked in the live release
            assert (release / "BUILD_STAMP").read_text().startswith("built "), where
            assert os.readlink(release / ".env") == f"{PATH}/shared/.env", where
            assert host.program_pid("svc") is not None, f"{where}: svc down on {host.name}"
            assert get(host, PORT, "/healthz") == (200, "ok"), f"{where}: {host.name}"
            assert get(host, PORT)[1].startswith(f"{host.name} v{n} "), f"{where}: {host.name}"

    soak(bed, origin, config, shipped, made=("BUILD_STAMP",))
