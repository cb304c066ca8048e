"""Issue 14 item 10 in the console: a closed terminal (SIGHUP) or SIGTERM while a build
runs cancels it on the same clean-up path as Cancel — no lock left, no host switched,
the history says cancelled — and the console exits with 128 + the signal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import current_release
from test_faults_e2e import assert_unlocked, last_result

from relconsole.lock import LOCK_DIR


def drain(fd: int) -> None:
    """Read what the console drew so far (its pty must not fill up)."""
    while select.select([fd], [], [], 0)[0]:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_signal_during_a_build_in_the_console_cancels_it_cleanly(bed, origin, tmp_path, sig):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    slow = [{"name": "slow", "run": "echo started; sleep 60"}]
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=slow)
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relconsole", "--config", str(config)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    lock = bed.host("h1").path("/srv/svc") / LOCK_DIR
    try:
        deadline = time.monotonic() + 30
        while not lock.exists():  # press b until the build has taken its lock
            assert time.monotonic() < deadline and proc.poll() is None, "no build started"
            drain(master)
            os.write(master, b"b")
            time.sleep(0.5)
        time.sleep(1)  # into the slow check
        proc.send_signal(sig)
        if sig == signal.SIGHUP:
            os.close(master)  # and the terminal is gone, as when a window closes
            master = -1
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the console did not end"
            if master >= 0:
                drain(master)
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        if master >= 0:
            os.close(master)

    assert proc.returncode == 128 + sig
    for host in bed.hosts[:2]:
        assert current_release(host) is None
    assert_unlocked(bed.hosts[:2], tmp_path / "state")
    assert last_result(tmp_path / "state") == "cancelled"
