"""Faults, end to end on the real test bed: what relconsole does when hosts, commands,
checks, supervisord, the origin, the disk or the operator misbehave mid-build.

Every build here runs as a real ``relconsole --build … --json`` process in its own
session (so a signal reaches it as a terminal's Ctrl-C would), read event by event,
and every wait is bounded: a build that hangs fails the test instead of the run.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import git
import pytest
from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import cli, current_release, releases
from testbed import SUPERVISORCTL, process_alive

from relconsole.history import History
from relconsole.lock import LOCK_DIR

# -- running relconsole --------------------------------------------------------------


class Run:
    """``relconsole --json …`` in its own session; its events read as they arrive."""

    def __init__(self, config: Path, *args: str, env_extra: Optional[dict] = None):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relconsole", "--config", str(config), *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env_extra or {})},
        )
        self.events: list[dict] = []
        self.stderr = ""
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> Optional[dict]:
        line = self._lines.get(timeout=timeout)
        if line is None:
            return None
        event = json.loads(line)
        self.events.append(event)
        return event

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._next(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event in {timeout}s; saw {self.events}") from None
            if event is None:
                raise AssertionError(f"the run ended first; saw {self.events}")
            if predicate(event):
                return event

    def signal(self, sig: int) -> None:
        """To the whole process group, as a terminal (Ctrl-C) or systemd would."""
        os.killpg(self.proc.pid, sig)

    def finish(self, timeout: float = 60) -> dict:
        """Wait for the run to end (it must, in ``timeout``); its last event."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"relconsole still running after {timeout}s: {self.events}")
        self.seconds = time.monotonic() - self.started
        while self._next(timeout=10) is not None:
            pass
        self.stderr = self.proc.stderr.read()
        assert self.events and self.events[-1]["event"] == "finished", self.stderr
        return self.events[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    @property
    def returncode(self) -> int:
        return self.proc.returncode

    def lines(self, host: Optional[str] = None) -> list[str]:
        return [
            e["line"]
            for e in self.events
            if e["event"] == "output" and (host is None or e["host"] == host)
        ]

    def stage(self, name: str) -> Optional[dict]:
        return next(
            (e for e in self.events if e["event"] == "stage_finished" and e["stage"] == name), None
        )


@pytest.fixture
def run(request):
    """``run(config, *args)`` starts a headless JSON run, killed at teardown if still alive."""
    runs: list[Run] = []

    def start(config: Path, *args: str, env_extra: Optional[dict] = None) -> Run:
        runs.append(Run(config, *args, env_extra=env_extra))
        return runs[-1]

    yield start
    for r in runs:
        r.kill()


def build_ok(run, config: Path, *args: str) -> dict:
    r = run(config, "--build", "svc", *args)
    finished = r.finish()
    assert finished["ok"], (finished["error"], r.stderr)
    return finished


# -- the state a fault must not leave behind --------------------------------------------


def assert_unlocked(hosts, state_dir: Path, path: str = "/srv/svc") -> None:
    for host in hosts:
        assert not (host.path(path) / LOCK_DIR).exists(), f"deploy lock left on {host.name}"
    for lock in (state_dir / "locks").glob("*.lock"):
        assert lock.read_text() == "", f"local lock {lock} still held"


def last_result(state_dir: Path) -> str:
    return History(state_dir).list("svc")[0]["result"]


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.02)


def big_service(origin, megabytes: int, version: str = "v1") -> str:
    """The sample service plus an incompressible blob, so uploads take a moment."""
    for repo in (git.Repo(origin.path), git.Repo(origin.work)):
        with repo.config_writer() as cfg:  # committing random bytes needs no zlib effort
            cfg.set_value("core", "compression", "0")
            cfg.set_value("pack", "compression", "0")
    files = sample_service_files("svc", "/srv/svc", version)
    files["blob.bin"] = os.urandom(megabytes * 1_000_000)
    return origin.commit(files, f"{version} with a {megabytes} MB blob")


# -- processes of a fake host ----------------------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[int(entry)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), comm)
    return found


def descendants(pid: int) -> list[tuple[int, str]]:
    procs = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in procs.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append((p, procs[p][1]))
        todo += children.get(p, [])
    return out


def sshd_listener(host) -> int:
    return int((host.root / "sshd.pid").read_text().split()[0])


def drop_connections(host, listener_too: bool) -> None:
    """Kill the host's per-connection sshd processes (and its listener): the TCP
    connections drop as on a crashed sshd. Programs it started lose their stdin."""
    sessions = [pid for pid, comm in descendants(sshd_listener(host)) if comm.startswith("sshd")]
    if listener_too:  # first, or a reconnect could slip in between
        os.kill(sshd_listener(host), signal.SIGKILL)
    for pid in sessions:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def when_running(
    host, comm: str, then: Callable[[], None], timeout: float = 30
) -> threading.Thread:
    """In the background: as soon as ``comm`` runs under the host's sshd, call ``then``."""
    listener = sshd_listener(host)
    fired = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(c == comm for _, c in descendants(listener)):
                then()
                fired.set()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.fired = fired
    thread.start()
    return thread


# -- 1. sshd dies in the middle of the upload ----------------------------------------------


@pytest.mark.parametrize("listener_too", [False, True], ids=["connections-drop", "sshd-gone"])
def test_sshd_killed_mid_upload_switches_nothing_and_cleans_up(
    bed, origin, tmp_path, run, listener_too
):
    big_service(origin, 16)
    # No programs: restarts have nothing to do with this fault, and cost seconds.
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=[], programs=[])
    state = tmp_path / "state"
    first = build_ok(run, config)
    h1, h2 = bed.hosts[:2]
    big_service(origin, 16, "v2")  # a new blob: the delta from v1 carries 16 MB too

    killer = when_running(h2, "tar", lambda: drop_connections(h2, listener_too))
    r = run(config, "--build", "svc")
    finished = r.finish(timeout=60)
    killer.join(5)

    assert killer.fired.is_set(), "the upload finished before sshd could be killed"
    assert r.returncode == 1 and not finished["ok"]
    assert "h2" in finished["error"] and "connection lost" in finished["error"], finished["error"]
    assert "no host was switched" in finished["error"]
    for host in (h1, h2):
        assert current_release(host) == first["release"], f"{host.name} switched"
    assert releases(h1) == [first["release"]], "h1's partial release must be removed"
    # h2 removes its partial release itself when tar's input ends early.
    eventually(lambda: releases(h2) == [first["release"]], "h2's partial release to go")
    assert r.seconds < 20
    if not listener_too:
        # sshd still listens: relconsole connects once more to release the lock.
        assert "reconnected to root@" in " ".join(r.lines("h2"))
        assert_unlocked([h1, h2], state)
        return
    # h2 is gone for good: the lock left there is said, with what to do.
    h2_lines = " ".join(r.lines("h2"))
    assert "the deploy lock stays on this host" in h2_lines, h2_lines
    assert "Connection refused" in h2_lines and "relconsole --unlock svc" in h2_lines
    assert_unlocked([h1], state)
    # The operator brings sshd back, clears the lock, and the next build just works.
    h2.start_sshd()
    unlocked = cli("--config", str(config), "--unlock", "svc", timeout=30)
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    assert "h2: removed the lock" in unlocked.stdout
    third = build_ok(run, config)
    for host in (h1, h2):
        assert current_release(host) == third["release"]
        assert releases(host) == sorted([first["release"], third["release"]])
    assert_unlocked([h1, h2], state)


# -- 2. a host that accepts TCP and never says a word ------------------------------------


@pytest.fixture
def silent_listener(bed):
    """A TCP port on a loopback address of the bed that accepts and stays silent."""
    address = bed.hosts[0].address.rsplit(".", 1)[0] + ".99"
    server = socket.create_server((address, 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield address, server.getsockname()[1], held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_silent_host_times_out_at_connect_timeout(bed, origin, tmp_path, run, silent_listener):
    address, port, held = silent_listener
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    silent = {
        "address": address,
        "port": port,
        "user": "root",
        "key": str(bed.client_key),
        "supervisorctl": SUPERVISORCTL,
        "sudo": False,
    }
    config = write_config(
        tmp_path,
        bed,
        origin.url,
        hosts=["h1", "h4"],
        checks=[],
        settings={"connect_timeout": 2},
        extra_hosts={"h4": silent},
    )

    r = run(config, "--build", "svc")
    finished = r.finish(timeout=30)

    assert r.returncode == 1 and held, "the silent host was never reached"
    assert "h4" in finished["error"] and "timed out after 2s" in finished["error"]
    assert f"{address}:{port}" in finished["error"] and "nothing was changed" in finished["error"]
    assert r.seconds < 2 + 7, f"took {r.seconds:.1f}s"  # not the default 10 s
    failed = [e for e in r.events if e["event"] == "host_finished" and not e["ok"]]
    assert [e["host"] for e in failed] == ["h4"]
    assert current_release(bed.hosts[0]) is None
    assert_unlocked([bed.hosts[0]], tmp_path / "state")


# -- 3. a remote command that never returns ------------------------------------------------


def slow_start_conf(startsecs: int) -> str:
    conf = sample_service_files("svc", "/srv/svc")["deploy/supervisor/svc.conf"]
    return conf.replace("startsecs=1", f"startsecs={startsecs}")


def last_started(host) -> str:
    log = host.path("/etc/supervisor/log/svc.out.log").read_text()
    return [ln for ln in log.splitlines() if "started version=" in ln][-1]


def test_hanging_supervisorctl_restart_times_out_and_rolls_back(bed, origin, tmp_path, run):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=[], settings={"command_timeout": 3}
    )
    first = build_ok(run, config)
    time.sleep(1.01)  # release ids have one-second resolution
    # supervisorctl restart waits startsecs for the program to count as started.
    origin.commit(
        {"VERSION": "v2\n", "deploy/supervisor/svc.conf": slow_start_conf(3600)}, "v2 starts slowly"
    )

    r = run(config, "--build", "svc")
    r.wait_for(lambda e: e["event"] == "stage_started" and e["stage"] == "supervisor")
    supervisor_started = time.monotonic()
    r.wait_for(lambda e: e["event"] == "stage_finished" and e["stage"] == "supervisor", timeout=15)
    stage_seconds = time.monotonic() - supervisor_started
    finished = r.finish(timeout=60)

    assert r.returncode == 1
    error = r.stage("supervisor")["error"]
    for host in ("h1", "h2"):
        assert f"{host}: supervisorctl restart timed out after 3s" in error, error
    assert stage_seconds < 3 + 9, f"the supervisor stage took {stage_seconds:.1f}s"
    assert f"rolled back to release {first['release']}" in finished["error"]
    for host in bed.hosts[:2]:
        assert current_release(host) == first["release"]
        assert "version=v1" in last_started(host)
        assert host.program_pid("svc") is not None
    assert_unlocked(bed.hosts[:2], tmp_path / "state")


# -- 4. a check that hangs ------------------------------------------------------------------


def test_hanging_check_is_killed_with_its_children(bed, origin, tmp_path, run):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    pid_file = tmp_path / "child.pid"
    hang = {
        "name": "hang",
        "timeout": 1,
        "run": f"sh -c 'echo $$ > {pid_file}; exec sleep 300' & echo started; sleep 300",
    }
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[hang])

    r = run(config, "--build", "svc")
    r.wait_for(lambda e: e["event"] == "output" and e["line"] == "started")
    finished = r.finish(timeout=30)

    assert r.returncode == 1
    assert finished["error"] == "check 'hang' timed out after 1s and was killed"
    assert r.seconds < 1 + 9  # not the check's 300 s
    child = int(pid_file.read_text())
    eventually(lambda: not process_alive(child), "the check's child to be killed")
    assert r.stage("upload") is None
    assert sorted(p.name for p in bed.hosts[0].path("/srv/svc").iterdir()) == []
    assert_unlocked([bed.hosts[0]], tmp_path / "state")


# -- 5. supervisord down on one host -----------------------------------------------------


def test_supervisord_down_on_one_host_rolls_the_others_back(bed, origin, tmp_path, run):
    first_sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[])
    first = build_ok(run, config)
    time.sleep(1.01)
    origin.commit({"VERSION": "v2\n"}, "v2")
    h1, h2, h3 = bed.hosts
    pids = {h.name: h.program_pid("svc") for h in (h1, h3)}
    h2.stop_supervisord()

    r = run(config, "--build", "svc")
    finished = r.finish(timeout=60)

    assert r.returncode == 1
    error = r.stage("supervisor")["error"]
    # supervisorctl's own words, for h2 only.
    assert error.startswith("h2: supervisord is not answering: ") and "; " not in error, error
    assert "supervisor.sock no such file" in error, error
    # The automatic rollback: every host points at the release it ran before, and
    # where supervisord answers, that code runs again.
    assert r.stage("rollback") is not None
    for host in (h1, h3):
        assert current_release(host) == first["release"]
        assert host.program_pid("svc") not in (None, pids[host.name])
        assert f"version=v1 revision={first_sha}" in last_started(host)
    assert current_release(h2) == first["release"]
    assert_unlocked(bed.hosts, tmp_path / "state")
    rollback = r.stage("rollback")
    assert rollback["ok"], rollback
    assert finished["error"].endswith(f"rolled back to release {first['release']}")
    assert "supervisord is not answering" in " ".join(r.lines("h2"))
    assert last_result(tmp_path / "state") == "rolled back"


# -- 6. the origin is gone, or the branch is ------------------------------------------------


def workspace_state(tmp_path: Path) -> tuple[str, list[str], str]:
    ws = git.Repo(tmp_path / "state" / "workspaces" / "svc")
    return ws.head.commit.hexsha, sorted(ws.git.ls_files().split()), ws.git.status("--porcelain")


@pytest.mark.parametrize("fault", ["origin-gone", "branch-deleted"])
def test_unreachable_origin_or_deleted_branch_keeps_the_workspace(
    bed, origin, tmp_path, run, fault
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    feature = origin.commit({"VERSION": "feature\n"}, "feature", branch="feature")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[], programs=[])
    first = build_ok(run, config, "--branch", "feature")
    assert first["sha"] == feature
    before = workspace_state(tmp_path)
    moved = origin.path.with_name("moved.git")
    if fault == "origin-gone":
        origin.path.rename(moved)
    else:
        origin.delete_branch("feature")

    r = run(config, "--build", "svc", "--branch", "feature")
    finished = r.finish(timeout=30)

    assert r.returncode == 1
    assert r.stage("checkout")["ok"] is False
    if fault == "origin-gone":
        assert finished["error"].startswith(f"cannot fetch from {origin.url}: ")
        assert "does not appear to be a git repository" in finished["error"]
    else:
        assert finished["error"] == (f"branch 'feature' not found in {origin.url} (branches: main)")
    assert workspace_state(tmp_path) == before
    assert current_release(bed.hosts[0]) == first["release"]
    assert_unlocked([bed.hosts[0]], tmp_path / "state")
    # The origin is back (or the operator builds main): the next build works.
    if fault == "origin-gone":
        moved.rename(origin.path)
        again = build_ok(run, config, "--branch", "feature")
        assert again["sha"] == feature
    else:
        again = build_ok(run, config)
        assert again["sha"] == origin.sha("main")
    assert current_release(bed.hosts[0]) == again["release"]


# -- 7. the remote path refuses the files ---------------------------------------------------


def deploy_user_on(bed, name: str) -> dict:
    host = bed.host(name)
    return {
        "address": host.address,
        "port": host.port,
        "user": "deploy",
        "key": str(bed.client_key),
        "supervisorctl": SUPERVISORCTL,
        "sudo": False,
    }


@pytest.mark.parametrize("fault", ["root-owned-path", "root-owned-releases", "disk-full"])
def test_remote_write_refused_fails_that_host_and_switches_nothing(
    bed, origin, tmp_path, run, fault
):
    big_service(origin, 2)
    h1, h2 = bed.hosts[:2]
    extra = {}
    srv = h2.path("/srv/svc")
    if fault == "disk-full":
        h2.ssh("mkdir -p /srv/svc/releases && mount -t tmpfs -o size=512k tmpfs /srv/svc/releases")
    else:
        # h2 deploys as "deploy" without sudo; what it may write depends on the fault.
        extra = {"h2": deploy_user_on(bed, "h2")}
        (srv / "releases").mkdir(parents=True)
        if fault == "root-owned-releases":
            shutil.chown(srv, "deploy")
    config = write_config(
        tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=[], extra_hosts=extra
    )
    try:
        r = run(config, "--build", "svc")
        finished = r.finish(timeout=30)
    finally:
        if fault == "disk-full":
            h2.ssh("umount /srv/svc/releases")

    assert r.returncode == 1
    error = finished["error"]
    assert "h1" not in error and "h2: " in error, error
    if fault == "root-owned-path":
        # Refused before anything else happens: the deploy lock cannot be made.
        assert r.stage("checkout")["ok"] is False and r.stage("upload") is None
        assert "taking the deploy lock failed" in error and "Permission denied" in error
    else:
        assert r.stage("upload")["ok"] is False
        assert "unpacking the release failed" in error and "no host was switched" in error
        words = "No space left on device" if fault == "disk-full" else "Permission denied"
        assert words in error, error
        assert "(never switched to)" in " ".join(r.lines("h1"))
    for host in (h1, h2):
        assert current_release(host) is None
        assert releases(host) == []
    assert_unlocked([h1, h2], tmp_path / "state")


# -- 8. the operator stops a build at checkout or upload ---------------------------------------


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
@pytest.mark.parametrize("stage", ["checkout", "upload"])
def test_signal_at_checkout_or_upload_cancels_cleanly(bed, origin, tmp_path, run, stage, sig, code):
    big_service(origin, 16)
    config = write_config(tmp_path, bed, origin.url, checks=[])

    r = run(config, "--build", "svc")
    r.wait_for(lambda e: e["event"] == "stage_started" and e["stage"] == stage)
    if stage == "checkout":  # while git fetches, so that git gets the signal too
        deadline = time.monotonic() + 10
        while not any(c.startswith("git") for _, c in descendants(r.proc.pid)):
            assert time.monotonic() < deadline, "git never ran"
            time.sleep(0.002)
    r.signal(sig)
    assert_cancelled_cleanly(r, stage, code, bed, tmp_path)


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_while_gitpython_is_imported_cancels_cleanly(bed, origin, tmp_path, run, sig, code):
    # GitPython's import runs `git version`, which the signal to the process group kills
    # too: the build ended as "internal error: ImportError" in CI. A `git` that waits on
    # `version` holds the run at that moment.
    started = tmp_path / "git-version-started"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    real_git = shutil.which("git")
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = version ]; then touch {started}; sleep 10; fi\n'
        f'exec {real_git} "$@"\n'
    )
    wrapper.chmod(0o755)
    big_service(origin, 2)
    config = write_config(tmp_path, bed, origin.url, checks=[])

    path = f"{wrapper.parent}:{os.environ['PATH']}"
    r = run(config, "--build", "svc", env_extra={"PATH": path})
    r.wait_for(lambda e: e["event"] == "stage_started" and e["stage"] == "checkout")
    deadline = time.monotonic() + 10
    while not started.exists():
        assert time.monotonic() < deadline, "GitPython's `git version` never ran"
        time.sleep(0.005)
    r.signal(sig)
    assert_cancelled_cleanly(r, "checkout", code, bed, tmp_path)


def assert_cancelled_cleanly(r, stage: str, code: int, bed, tmp_path: Path) -> None:
    """The run ended cancelled in ``stage``: no host switched or given a release, every
    lock released, and the history saying so."""
    finished = r.finish(timeout=30)
    assert r.returncode == code, (finished, r.stderr)
    assert finished["cancelled"] and r.stage(stage)["error"] == "cancelled"
    for host in bed.hosts:
        assert current_release(host) is None, "a host was switched"
        assert releases(host) == []
    assert_unlocked(bed.hosts, tmp_path / "state")
    assert last_result(tmp_path / "state") == "cancelled"


# -- 9. no listening socket, ever --------------------------------------------------------------


def listening_sockets(pid: int) -> set[str]:
    """TCP sockets in LISTEN and bound UDP sockets held by ``pid`` or its children."""
    inodes = set()
    for p in [pid] + [child for child, _ in descendants(pid)]:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                target = os.readlink(f"/proc/{p}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # gone meanwhile
            continue
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if inode in inodes and (table.startswith("udp") or state == "0A"):
                found.add(f"{table} {local}")
    return found


def watch_sockets(r: Run, timeout: float = 60) -> tuple[set[str], int]:
    seen: set[str] = set()
    samples = 0
    deadline = time.monotonic() + timeout
    while r.proc.poll() is None and time.monotonic() < deadline:
        seen |= listening_sockets(r.proc.pid)
        samples += 1
        time.sleep(0.01)
    return seen, samples


def test_relconsole_never_listens(bed, origin, tmp_path, run):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    # The probe does see a listener when there is one.
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time; s = socket.create_server(('127.0.0.1', 0)); time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 5
        while not listening_sockets(probe.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert listening_sockets(probe.pid)
    finally:
        probe.kill()
        probe.wait()

    r = run(config, "--build", "svc")
    seen, samples = watch_sockets(r)
    assert r.finish()["ok"]
    assert samples > 20 and seen == set(), seen

    status = run(config, "--status", "svc")
    seen, _ = watch_sockets(status)
    status.proc.wait(30)
    assert status.returncode == 0 and seen == set(), seen


def test_git_origin_that_never_answers_times_out(bed, tmp_path, run, silent_listener):
    address, port, held = silent_listener
    config = write_config(
        tmp_path,
        bed,
        f"ssh://git@{address}:{port}/svc.git",
        hosts=["h1"],
        checks=[],
        settings={"command_timeout": 2},
    )
    started = time.monotonic()

    r = run(
        config,
        "--build",
        "svc",
        env_extra={
            "GIT_SSH_COMMAND": "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null"
        },
    )
    finished = r.finish(timeout=30)

    assert r.returncode == 1 and held, "the silent origin was never reached"
    assert "git timed out after 2s" in finished["error"], finished["error"]
    assert time.monotonic() - started < 15
    assert_unlocked(bed.hosts[:1], tmp_path / "state")
