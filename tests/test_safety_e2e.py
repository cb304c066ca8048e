"""Release safety against the real test bed: rollback, automatic rollback, the deploy
lock, history, and builds killed mid-way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import build, cli, current_release, releases, wait_for_log

from relconsole.history import History
from relconsole.lock import LOCK_DIR, LockInfo


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "relconsole", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 30) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return seen
        assert time.monotonic() < deadline, f"{text!r} not seen in time: {''.join(seen)}"
    raise AssertionError(f"{text!r} never printed: {''.join(seen)}")


def deploy_two_versions(bed, origin, tmp_path, **kwargs):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, **kwargs)
    first, _ = build(config)
    assert first.ok, first.error
    time.sleep(1.01)  # release ids have one-second resolution
    origin.commit({"VERSION": "v2\n"}, "v2")
    second, _ = build(config)
    assert second.ok, second.error
    return config, first, second


def test_rollback_returns_every_host_to_the_previous_code(bed, origin, tmp_path):
    config, first, second = deploy_two_versions(bed, origin, tmp_path)
    pids = {h.name: h.program_pid("svc") for h in bed.hosts}

    proc = cli("--config", str(config), "--rollback", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ROLLBACK OK: svc runs release {first.release}" in proc.stdout
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert host.program_pid("svc") not in (None, pids[host.name])
        wait_for_log(host, f"version=v1 revision={first.sha}")
    # --to goes forward again, to a named release.
    proc = cli("--config", str(config), "--rollback", "svc", "--to", second.release)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(current_release(h) == second.release for h in bed.hosts)
    rows = History(tmp_path / "state").list("svc")
    assert [(r["action"], r["result"]) for r in rows[:2]] == [("rollback", "success")] * 2


def test_rollback_to_a_release_missing_on_one_host_switches_none(bed, origin, tmp_path):
    config, first, second = deploy_two_versions(bed, origin, tmp_path)
    (bed.hosts[1].path("/srv/svc/releases") / first.release / "REVISION").unlink()
    subprocess.run(
        ["rm", "-rf", str(bed.hosts[1].path("/srv/svc/releases") / first.release)], check=True
    )

    proc = cli("--config", str(config), "--rollback", "svc", "--to", first.release)

    assert proc.returncode == 1
    assert "h2" in proc.stdout and "nothing was switched" in proc.stdout
    assert all(current_release(h) == second.release for h in bed.hosts)


def test_release_that_crashes_at_start_is_rolled_back_automatically(bed, origin, tmp_path):
    first_sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    first, _ = build(config)
    assert first.ok, first.error
    time.sleep(1.01)
    origin.commit(sample_service_files("svc", "/srv/svc", "v2", crash=True), "v2 crashes")

    proc = cli("--config", str(config), "--build", "svc")

    assert proc.returncode == 1, proc.stdout
    assert f"rolled back to release {first.release} (sha {first_sha[:12]})" in proc.stdout
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert host.program_pid("svc") is not None
    wait_for_log(bed.hosts[0], "version=v1")
    rows = History(tmp_path / "state").list("svc")
    assert rows[0]["result"] == "rolled back" and rows[0]["action"] == "build"


def test_second_concurrent_build_is_refused_quickly_while_the_first_completes(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    # Long enough that both refusals (each < 5 s) come while the first build holds the locks.
    slow = [{"name": "slow", "run": "echo started; sleep 8"}]
    config = write_config(tmp_path, bed, origin.url, checks=slow, hosts=["h1", "h2"])
    # A second machine: its own state_dir, so only the hosts' locks can stop it.
    other = tmp_path / "other"
    other.mkdir()
    other_config = write_config(other, bed, origin.url, checks=slow, hosts=["h1", "h2"])

    first = start_cli("--config", str(config), "--build", "svc")
    wait_for_line(first, "[check] started")

    started = time.monotonic()
    same_machine = cli("--config", str(config), "--build", "svc")
    assert time.monotonic() - started < 5
    assert same_machine.returncode == 75  # issue 14: a refusal has its own exit code
    assert "svc is locked on this machine by" in same_machine.stdout
    assert "build of main" in same_machine.stdout

    started = time.monotonic()
    other_machine = cli("--config", str(other_config), "--build", "svc")
    assert time.monotonic() - started < 5
    assert other_machine.returncode == 75
    assert (
        "svc is locked on h1 by" in other_machine.stdout or "locked on h2" in other_machine.stdout
    )

    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert all(not (h.path("/srv/svc") / LOCK_DIR).exists() for h in bed.hosts[:2])


def test_stale_lock_is_reported_and_unlock_clears_it(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = LockInfo.mine("main")
    stale = LockInfo(stale.user, stale.machine, dead.pid, time.time() - 600, "main")
    lock = bed.hosts[0].path("/srv/svc") / LOCK_DIR
    lock.mkdir(parents=True)
    (lock / "info").write_text(stale.to_json() + "\n")

    refused = cli("--config", str(config), "--build", "svc")
    assert refused.returncode == 75
    assert "STALE" in refused.stdout and "relconsole --unlock svc" in refused.stdout
    assert "for 10m" in refused.stdout

    unlocked = cli("--config", str(config), "--unlock", "svc")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    assert "h1: removed the lock held by" in unlocked.stdout
    assert not lock.exists()
    assert cli("--config", str(config), "--build", "svc").returncode == 0

    history = cli("--config", str(config), "--history", "svc", "--json")
    rows = json.loads(history.stdout)
    assert [(r["action"], r["result"]) for r in rows] == [
        ("build", "success"),
        ("unlock", "success"),
        ("build", "locked"),  # issue 14: a refusal is its own result
    ]


def test_history_lists_every_build_with_its_result(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    ok = cli("--config", str(config), "--build", "svc")
    assert ok.returncode == 0
    origin.commit(sample_service_files("svc", "/srv/svc", "v2", check_fails=True), "v2 broken")
    assert cli("--config", str(config), "--build", "svc").returncode == 1

    proc = cli("--config", str(config), "--history", "--json")

    rows = json.loads(proc.stdout)
    assert [(r["number"], r["result"]) for r in rows] == [(2, "failed"), (1, "success")]
    for row in rows:
        assert {"number", "service", "branch", "sha", "result", "started", "duration"} <= set(row)
        assert row["service"] == "svc" and row["branch"] == "main" and len(row["sha"]) == 40
        assert row["trigger"] == "headless" and "@" in row["who"]
    log = History(tmp_path / "state").get("svc", 2)["log"]
    assert "check failed on purpose" in log and "[check]" in log
    table = cli("--config", str(config), "--history")
    assert "failed" in table.stdout.splitlines()[1] and "success" in table.stdout.splitlines()[2]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("when", ["[check] started", "[supervisor h1]"])
def test_killed_build_leaves_no_lock_and_no_half_switched_fleet(
    bed, origin, tmp_path, sig, code, when
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path, bed, origin.url, checks=[{"name": "slow", "run": "echo started; sleep 1"}]
    )
    proc = start_cli("--config", str(config), "--build", "svc")
    wait_for_line(proc, when)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == code, out + err
    currents = {current_release(h) for h in bed.hosts}
    assert len(currents) == 1, f"half-switched fleet: {currents}"
    for host in bed.hosts:
        assert not (host.path("/srv/svc") / LOCK_DIR).exists()
        assert len(releases(host)) <= 1
    assert not list((tmp_path / "state" / "locks").glob("*.lock")) or all(
        p.read_text() == "" for p in (tmp_path / "state" / "locks").glob("*.lock")
    )
    rows = History(tmp_path / "state").list("svc")
    assert rows[0]["result"] == "cancelled"


def test_status_shows_release_and_sha_per_host_and_flags_drift(bed, origin, tmp_path):
    config, first, second = deploy_two_versions(bed, origin, tmp_path)
    time.sleep(1.01)
    origin.commit({"VERSION": "v3\n"}, "v3 on one host only")
    third = cli("--config", str(config), "--build", "svc", "--hosts", "h1")
    assert third.returncode == 0, third.stdout

    proc = cli("--config", str(config), "--status", "svc", "--json")

    rows = {r["host"]: r for r in json.loads(proc.stdout) if r["program"] == "svc"}
    assert rows["h1"]["drift"] is True and rows["h2"]["drift"] is False
    assert rows["h2"]["release"] == second.release and rows["h2"]["sha"] == second.sha
    assert rows["h1"]["release"] != second.release
    table = cli("--config", str(config), "--status", "svc").stdout
    assert [ln for ln in table.splitlines() if ln.startswith("h1")][0].count("DRIFT") == 1
    assert "DRIFT" not in [ln for ln in table.splitlines() if ln.startswith("h2")][0]


def test_pending_lists_commits_not_deployed(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])
    assert cli("--config", str(config), "--build", "svc").returncode == 0
    origin.commit({"VERSION": "v2\n"}, "second change")
    origin.commit({"VERSION": "v3\n"}, "third change")

    proc = cli("--config", str(config), "--pending", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 commit(s) on main not deployed:" in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines.index(next(ln for ln in lines if "third change" in ln)) < lines.index(
        next(ln for ln in lines if "second change" in ln)
    )


def test_cancel_after_the_switch_puts_the_previous_release_back(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    first, _ = build(config)
    assert first.ok, first.error
    time.sleep(1.01)
    origin.commit({"VERSION": "v2\n"}, "v2")
    proc = start_cli("--config", str(config), "--build", "svc")
    wait_for_line(proc, "batch 1/1 (h1, h2, h3): restarting")  # every host switched
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert f"rolled back to release {first.release}" in out
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert host.program_pid("svc") is not None
        # Whether or not v2 got to start before the cancel, v1 is what runs now.
        log = host.path("/etc/supervisor/log/svc.out.log").read_text()
        started = [ln for ln in log.splitlines() if "svc started" in ln]
        assert len(started) >= 2 and "version=v1" in started[-1], log
    assert History(tmp_path / "state").list("svc")[0]["result"] == "cancelled"
