"""The promises of a build and a rollback, on scripted hosts (tests/fakehost.py).

Fast and without root: the hosts' files are real (the engine's own shell commands run
against a folder per host), their supervisord and their faults are scripted. The same
promises are proved end to end over ssh in test_build_e2e.py, test_faults_e2e.py and
test_safety_e2e.py (the bed tier).
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Optional

import pytest
from fakehost import Call, FakeHost, FakeTransport, connector, fake_config, fake_hosts
from gitorigin import Origin, make_origin, sample_service_files

from relconsole import lock as lk
from relconsole import release as rel
from relconsole.config import Check, Config
from relconsole.events import (
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    HostFinished,
    Output,
    RunResult,
    Stage,
    StageFinished,
    StageStarted,
)
from relconsole.hosts.base import CommandTimedOut, HostUnreachable, Result
from relconsole.pipeline import force_unlock, run_build, run_rollback

BASE = "/srv/svc"
LOCK = f"{BASE}/{lk.LOCK_DIR}"
CONF = "/etc/supervisor/conf.d/svc.conf"
SWITCH = r"^set -e\nold=\$\(readlink "  # the first lines of release.switch_command
RESTART = r"^supervisorctl restart "
RELEASE_IN = re.compile(r"\d{8}-\d{6}(\.\d{3})?-[0-9a-f]{7,40}")

#: the upload's command (release.extract_command): it starts by making releases/.
UNPACK = r"^\{ \[ -d \S*/releases"
#: the lock given back (lock.release_command): removed only if it still holds our token.
UNLOCK = r"^if \{ held=.*; then rm -rf "


@dataclass
class Deploy:
    """Three fake hosts, an origin with v1 of the sample service, and a config."""

    hosts: dict[str, FakeHost]
    origin: Origin
    config: Config
    events: list[Event] = field(default_factory=list)

    def build(self, cancel: Optional[threading.Event] = None, **kwargs) -> BuildFinished:
        self.events.clear()
        return run_build(
            self.config,
            "svc",
            self.events.append,
            cancel,
            connector=connector(self.hosts),
            **kwargs,
        )

    def rollback(self, **kwargs) -> BuildFinished:
        self.events.clear()
        return run_rollback(
            self.config, "svc", self.events.append, connector=connector(self.hosts), **kwargs
        )

    def new_version(self, version: str) -> None:
        self.origin.commit({"VERSION": version + "\n"}, version)

    def forget_calls(self) -> None:
        for host in self.hosts.values():
            host.calls.clear()

    def of(self, kind: type[Event]) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def stage_finished(self, stage: Stage) -> StageFinished:
        (found,) = [e for e in self.of(StageFinished) if e.stage == stage]
        return found

    def currents(self) -> dict[str, Optional[str]]:
        return {name: h.current(BASE) for name, h in self.hosts.items()}


def releases_a_minute_apart(monkeypatch) -> None:
    """A release id names the second it was made in: two builds within one second would
    tie and sort by sha. A clock that moves a minute per release keeps them in order."""
    minutes = itertools.count()
    make_id = rel.new_release_id
    start = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(
        rel, "new_release_id", lambda sha: make_id(sha, start + timedelta(minutes=next(minutes)))
    )


@pytest.fixture
def deploy(tmp_path, monkeypatch) -> Deploy:
    releases_a_minute_apart(monkeypatch)
    origin = make_origin(tmp_path / "origin")
    origin.commit(sample_service_files("svc", BASE), "v1")
    hosts = fake_hosts(tmp_path / "hosts", "h1", "h2", "h3", programs=["svc"])
    return Deploy(hosts, origin, fake_config(tmp_path, hosts, origin.url))


def foreign_lock(host: FakeHost) -> lk.LockInfo:
    """A deploy lock on ``host`` held by someone else, as their relconsole writes it."""
    info = lk.LockInfo(user="alice", machine="laptop-7", pid=4242, started=1.0e9, branch="hotfix")
    host.path(LOCK).mkdir(parents=True)
    host.path(LOCK + "/info").write_text(info.to_json() + "\n")
    return info


def assert_unlocked(d: Deploy) -> None:
    for name, host in d.hosts.items():
        assert not host.path(LOCK).exists(), f"deploy lock left on {name}"


def release_of(command: str) -> str:
    return RELEASE_IN.search(command).group(0)


# --------------------------------------------------------------------------- success


def test_a_build_switches_every_host_and_reports_every_stage_and_host(deploy):
    finished = deploy.build()

    assert finished.result is RunResult.SUCCESS, finished.error
    (started,) = deploy.of(BuildStarted)
    assert started.stages == (
        Stage.CHECKOUT,
        Stage.CHECK,
        Stage.UPLOAD,
        Stage.SETUP,
        Stage.SUPERVISOR,
    )
    assert (started.hosts, started.action) == (("h1", "h2", "h3"), "build")
    assert [(e.stage, e.ok, e.cancelled) for e in deploy.of(StageFinished)] == [
        (stage, True, False) for stage in started.stages
    ]
    for stage in (Stage.UPLOAD, Stage.SUPERVISOR):
        done = [e for e in deploy.of(HostFinished) if e.stage == stage]
        assert {e.host for e in done} == {"h1", "h2", "h3"} and all(e.ok for e in done)
    assert deploy.events[-1] is finished
    assert finished.sha == deploy.origin.sha() and finished.release.endswith(finished.sha[:7])

    assert deploy.currents() == dict.fromkeys(deploy.hosts, finished.release)
    for host in deploy.hosts.values():
        assert host.path(f"{BASE}/current/REVISION").read_text() == finished.sha + "\n"
        assert host.path(CONF).is_file()  # the staged files, installed at the switch
        assert host.supervisor.pid("svc") != 1000  # restarted: a new pid
        assert host.connects == 1  # one connection per host for the whole build
        # Every command on a host asks for root (through sudo where configured).
        assert host.calls and all(c.sudo for c in host.calls)
        assert len(host.puts) == 1
    assert_unlocked(deploy)


# --------------------------------------------------------------------------- the lock


def test_a_lock_held_on_one_host_releases_the_others_and_uploads_nothing(deploy):
    h1, h2, h3 = deploy.hosts.values()
    theirs = foreign_lock(h2)

    finished = deploy.build()

    assert finished.result is RunResult.LOCKED
    assert "locked on h2" in finished.error and "alice@laptop-7" in finished.holder
    # h1 and h3 took the lock, then gave it back; h2's holder keeps theirs.
    for host in (h1, h3):
        assert host.ran(r"mkdir .*\.relconsole-lock") and host.ran(UNLOCK)
    assert [n for n, h in deploy.hosts.items() if h.path(LOCK).exists()] == ["h2"]
    assert lk.parse_holder(h2.path(LOCK + "/info").read_text()) == theirs
    assert all(not h.puts and not h.releases(BASE) for h in deploy.hosts.values())
    assert not deploy.of(CommitResolved)  # refused before the checkout
    assert deploy.stage_finished(Stage.CHECKOUT).ok is False


def test_a_lock_that_cannot_be_taken_on_one_host_releases_the_others(deploy):
    deploy.hosts["h3"].fail(r"\.relconsole-lock", exit=1, stderr="mkdir: Permission denied")

    finished = deploy.build()

    assert finished.result is RunResult.FAILED
    assert "cannot take the deploy lock" in finished.error and "Permission denied" in finished.error
    assert deploy.hosts["h1"].ran(UNLOCK)  # released after taking it
    assert_unlocked(deploy)
    assert all(not h.puts for h in deploy.hosts.values())


def test_an_unreachable_host_stops_the_build_before_any_lock(deploy):
    deploy.hosts["h2"].reachable = False

    finished = deploy.build()

    assert finished.result is RunResult.FAILED
    assert "cannot reach h2" in finished.error and "nothing was changed" in finished.error
    assert [e.host for e in deploy.of(HostFinished) if not e.ok] == ["h2"]
    assert not any(h.calls for h in deploy.hosts.values())  # not even a lock was taken


# --------------------------------------------------------------------------- the switch


def test_a_switch_failing_on_one_host_switches_the_switched_ones_back(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    deploy.forget_calls()
    deploy.hosts["h2"].fail(SWITCH, exit=1, stderr="mv: cannot move: Read-only file system")

    finished = deploy.build()

    assert finished.result is RunResult.FAILED
    assert "switch failed on h2" in finished.error and "switched 2 host(s) back" in finished.error
    assert deploy.currents() == dict.fromkeys(deploy.hosts, first.release)
    for name in ("h1", "h3"):
        switches = deploy.hosts[name].commands(matching=SWITCH)
        assert [release_of(c) for c in switches] == [finished.release, first.release]
    assert all(not h.ran(RESTART) for h in deploy.hosts.values())
    assert_unlocked(deploy)


def test_a_first_switch_failing_on_one_host_leaves_no_current_anywhere(deploy):
    deploy.hosts["h3"].fail(SWITCH, exit=1)

    finished = deploy.build()

    assert finished.result is RunResult.FAILED and "switch failed on h3" in finished.error
    assert deploy.currents() == dict.fromkeys(deploy.hosts)  # h1, h2 unlinked again
    assert deploy.hosts["h1"].ran(r"(?m)^rm -f .*/current$")


# --------------------------------------------------------------------------- the upload


def test_an_upload_failing_on_one_host_removes_the_release_everywhere_and_switches_none(deploy):
    h1, h2, h3 = deploy.hosts.values()

    def killed_mid_tar(call: Call, t: FakeTransport) -> Result:
        # The shell was killed before its own clean-up: a partial directory stays.
        partial = h2.path(BASE) / "releases" / f".partial-{release_of(call.command)}"
        (partial / "app.py").parent.mkdir(parents=True)
        (partial / "app.py").write_text("half")
        return Result(call.command, 2, "", "tar: No space left on device")

    def unpacked_then_lost(call: Call, t: FakeTransport) -> Result:
        # The release arrived whole, then the connection dropped before the answer.
        t.proceed(call)
        t.closed = True
        raise HostUnreachable("h3", "connection lost (scripted)")

    h2.on(UNPACK, killed_mid_tar, kind="put")
    h3.on(UNPACK, unpacked_then_lost, kind="put")

    finished = deploy.build()

    assert finished.result is RunResult.FAILED
    assert "upload failed on h2" in finished.error and "No space left" in finished.error
    assert "h3: connection lost" in finished.error and "no host was switched" in finished.error
    for host in (h1, h2, h3):
        assert host.releases(BASE) == [], host.name  # h1's whole one, h2's partial, h3's
        assert host.current(BASE) is None and not host.path(CONF).exists()
        assert not host.ran(SWITCH) and not host.ran(RESTART)
    assert h3.connects == 2  # the release on h3 was removed over a new connection
    assert_unlocked(deploy)
    failed = {e.host: e.error for e in deploy.of(HostFinished) if not e.ok}
    assert set(failed) == {"h2", "h3"}


# --------------------------------------------------------------------------- cancel


def test_a_cancel_during_one_upload_switches_nothing_and_removes_the_release(deploy):
    cancel = threading.Event()

    def cancel_now(call: Call, t: FakeTransport) -> None:
        cancel.set()  # the operator pressed Cancel as h1's upload began

    deploy.hosts["h1"].on(UNPACK, cancel_now, kind="put")

    finished = deploy.build(cancel)

    assert finished.result is RunResult.CANCELLED and finished.cancelled
    upload = deploy.stage_finished(Stage.UPLOAD)
    assert (upload.ok, upload.cancelled) == (False, True)
    assert [e.stage for e in deploy.of(StageStarted)] == [Stage.CHECKOUT, Stage.CHECK, Stage.UPLOAD]
    (h1_upload,) = [e for e in deploy.of(HostFinished) if e.host == "h1"]
    assert h1_upload.cancelled and not h1_upload.ok
    for host in deploy.hosts.values():
        assert host.releases(BASE) == [] and host.current(BASE) is None
        assert not host.ran(SWITCH) and not host.ran(RESTART)
    assert_unlocked(deploy)


def test_a_cancel_after_every_upload_finished_still_switches_nothing(deploy):
    cancel = threading.Event()
    done = itertools.count(1)

    def unpack_then_maybe_cancel(call: Call, t: FakeTransport) -> Result:
        res = t.proceed(call)
        if next(done) == len(deploy.hosts):
            cancel.set()  # as the last host finished: no upload saw it
        return res

    for host in deploy.hosts.values():
        host.on(UNPACK, unpack_then_maybe_cancel, kind="put")

    finished = deploy.build(cancel)

    assert finished.result is RunResult.CANCELLED
    assert all(e.ok for e in deploy.of(HostFinished))  # every upload itself succeeded
    assert deploy.stage_finished(Stage.UPLOAD).cancelled
    for host in deploy.hosts.values():
        assert host.releases(BASE) == [] and host.current(BASE) is None
        assert not host.ran(SWITCH)
    assert_unlocked(deploy)


def test_a_cancel_between_stages_uploads_nothing(deploy):
    cancel = threading.Event()

    def sink(event: Event) -> None:
        deploy.events.append(event)
        if isinstance(event, CommitResolved):
            cancel.set()

    finished = run_build(deploy.config, "svc", sink, cancel, connector=connector(deploy.hosts))

    assert finished.result is RunResult.CANCELLED and finished.error == "cancelled"
    assert [e.stage for e in deploy.of(StageStarted)] == [Stage.CHECKOUT]
    assert all(not h.puts for h in deploy.hosts.values())
    assert_unlocked(deploy)


def test_a_cancel_after_the_switch_puts_the_previous_release_back(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    cancel = threading.Event()
    # Cancel while supervisorctl update runs on h1: the switch is done everywhere.
    deploy.hosts["h1"].on(r"^supervisorctl update$", lambda c, t: cancel.set(), times=1)

    finished = deploy.build(cancel)

    assert finished.result is RunResult.CANCELLED
    assert finished.rolled_back == first.release and finished.release != first.release
    assert deploy.currents() == dict.fromkeys(deploy.hosts, first.release)
    rollback = deploy.stage_finished(Stage.ROLLBACK)
    assert rollback.ok


# --------------------------------------------------------------------------- failures


def test_a_failing_check_fails_the_build_and_uploads_nothing(tmp_path, deploy):
    config = fake_config(
        tmp_path, deploy.hosts, deploy.origin.url, checks=[Check("tests", "echo no >&2; exit 3")]
    )

    finished = run_build(config, "svc", deploy.events.append, connector=connector(deploy.hosts))

    assert finished.result is RunResult.FAILED and not finished.ok
    assert "check 'tests' failed with exit code 3" in finished.error
    check = deploy.stage_finished(Stage.CHECK)
    assert (check.ok, check.cancelled) == (False, False)
    assert any(e.line == "no" for e in deploy.of(Output) if e.stage == Stage.CHECK)
    assert all(not h.puts for h in deploy.hosts.values())
    assert_unlocked(deploy)


def test_a_program_that_dies_at_start_is_rolled_back_automatically(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    deploy.hosts["h2"].supervisor.fail_next_start("svc", "FATAL", log="svc crashing\n")

    finished = deploy.build()

    assert finished.result is RunResult.ROLLED_BACK and not finished.ok
    assert finished.rolled_back == first.release
    assert "svc is FATAL" in finished.error and "rolled back to release" in finished.error
    assert deploy.currents() == dict.fromkeys(deploy.hosts, first.release)
    supervisor = deploy.stage_finished(Stage.SUPERVISOR)
    assert not supervisor.ok and not supervisor.cancelled
    assert deploy.stage_finished(Stage.ROLLBACK).ok
    crashed = [e.line for e in deploy.of(Output) if e.host == "h2" and "crashing" in e.line]
    assert crashed, "the program's log tail is shown"
    for host in deploy.hosts.values():  # restarted on the old release, running again
        assert host.supervisor.programs["svc"].state == "RUNNING"
        assert len(host.commands(matching=RESTART)) == 3  # build 1, build 2, rollback


def test_a_restart_that_times_out_on_one_host_rolls_every_host_back(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    hung = CommandTimedOut("h3", "timed out after 30s (scripted)")
    deploy.hosts["h3"].on(RESTART, hung, times=1)  # the rollback's restart works

    finished = deploy.build()

    assert finished.result is RunResult.ROLLED_BACK and finished.rolled_back == first.release
    assert "h3: supervisorctl restart timed out" in finished.error
    assert deploy.currents() == dict.fromkeys(deploy.hosts, first.release)
    failed = [e for e in deploy.of(HostFinished) if e.stage == Stage.SUPERVISOR and not e.ok]
    assert [e.host for e in failed] == ["h3"]


def test_a_first_release_that_dies_cannot_be_rolled_back_and_fails(deploy):
    deploy.hosts["h1"].supervisor.fail_next_start("svc", "BACKOFF")

    finished = deploy.build()

    assert finished.result is RunResult.FAILED and finished.rolled_back is None
    assert "svc is BACKOFF" in finished.error
    assert Stage.ROLLBACK not in [e.stage for e in deploy.of(StageStarted)]


# --------------------------------------------------------------------------- rollback


def test_rollback_switches_every_host_to_the_previous_release(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    second = deploy.build()
    assert deploy.currents() == dict.fromkeys(deploy.hosts, second.release)

    finished = deploy.rollback()

    assert finished.result is RunResult.SUCCESS, finished.error
    (started,) = deploy.of(BuildStarted)
    assert (started.stages, started.action) == ((Stage.SWITCH, Stage.SUPERVISOR), "rollback")
    assert finished.release == first.release and finished.sha == first.sha
    assert deploy.currents() == dict.fromkeys(deploy.hosts, first.release)
    assert_unlocked(deploy)


def test_rollback_to_a_release_missing_on_one_host_switches_none(deploy):
    first = deploy.build()
    deploy.new_version("v2")
    second = deploy.build()
    missing = deploy.hosts["h3"].path(f"{BASE}/releases/{first.release}")
    missing.rename(missing.with_name("elsewhere"))

    finished = deploy.rollback(to=first.release)

    assert finished.result is RunResult.FAILED
    assert "h3: release" in finished.error and "nothing was switched" in finished.error
    assert deploy.currents() == dict.fromkeys(deploy.hosts, second.release)


# --------------------------------------------------------------------------- unlock


def test_force_unlock_removes_every_hosts_lock_and_names_the_holder(deploy):
    foreign_lock(deploy.hosts["h1"])
    foreign_lock(deploy.hosts["h3"])

    ok, lines = force_unlock(deploy.config, "svc", connector=connector(deploy.hosts))

    assert ok, lines
    assert_unlocked(deploy)
    for name in ("h1", "h3"):
        assert any(
            ln.startswith(f"{name}: removed the lock held by alice@laptop-7") for ln in lines
        )
    assert "h2: not locked" in lines


def test_force_unlock_with_a_host_unreachable_removes_nothing(deploy):
    foreign_lock(deploy.hosts["h1"])
    deploy.hosts["h2"].reachable = False

    ok, lines = force_unlock(deploy.config, "svc", connector=connector(deploy.hosts))

    assert not ok and any("cannot reach h2" in ln for ln in lines)
    assert deploy.hosts["h1"].path(LOCK).exists()


def test_pruning_chooses_from_the_releases_the_switch_listed(deploy):
    """Old releases beyond keep_releases go, never current or previous; the releases
    come from the switch's own output, not from a listing command of the build's."""
    deploy.config = replace(
        deploy.config,
        services={"svc": replace(deploy.config.services["svc"], keep_releases=2)},
    )
    made = []
    for n in range(4):
        deploy.origin.commit({"VERSION": f"v{n + 2}\n"}, f"v{n + 2}")
        for host in deploy.hosts.values():
            host.calls.clear()
        finished = deploy.build()
        assert finished.ok, finished.error
        made.append(finished.release)
        for host in deploy.hosts.values():
            assert host.releases(BASE) == sorted(made[-2:]), n
            assert not host.ran(r"sed 's/\^/verdict=/'"), "listed the releases again"
    assert any(host.ran(r"^rm -rf \S*/releases/") for host in deploy.hosts.values())


def test_the_upload_learns_what_each_host_runs_from_the_lock_command(deploy):
    """The lock command also says what ``current`` names (the lock keeps it so): the
    upload makes its delta from that, with no command of its own to ask."""
    first = deploy.build()
    assert first.ok, first.error
    deploy.origin.commit({"VERSION": "v2\n"}, "v2")
    for host in deploy.hosts.values():
        host.calls.clear()
    finished = deploy.build()
    assert finished.ok, finished.error
    said = [e.line for e in deploy.of(Output) if e.stage is Stage.UPLOAD and e.host == "h1"]
    assert any(f"delta from {first.release}" in line for line in said), said
    for host in deploy.hosts.values():
        assert host.ran(r"relconsole-lock.*@@relconsole-deployed")
        assert not host.ran(r"^printf 'current=%s"), "read the deployed release again"


def test_a_lock_answer_without_the_deployed_read_makes_a_full_upload(deploy):
    """Should the lock command's output lack what ``current`` names (cut short, a
    changed shell), the upload does not guess a base: it sends the whole tree."""
    assert deploy.build().ok
    deploy.origin.commit({"VERSION": "v2\n"}, "v2")

    def cut(call, t):
        res = t.proceed(call)
        return replace(res, stdout=res.stdout.partition("@@relconsole-deployed")[0])

    deploy.hosts["h1"].on(r"relconsole-lock.*@@relconsole-deployed", cut)
    finished = deploy.build()
    assert finished.ok, finished.error
    said = [e.line for e in deploy.of(Output) if e.stage is Stage.UPLOAD]
    full = "full upload (what the host runs was not read with its lock)"
    assert any(line.startswith(full) for line in said), said
    assert any("delta from" in line for line in said), "h2 still gets a delta"
    for name in ("h1", "h2"):
        host = deploy.hosts[name]
        assert host.path(f"{BASE}/current/VERSION").read_text() == "v2\n", name
