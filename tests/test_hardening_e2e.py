"""Issue 14 on the real bed: the defects a hostile review found, each shown fixed
where a user would meet it (sshd + supervisord per host, real git origins)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import build, cli, current_release, releases
from test_faults_e2e import Run, assert_unlocked, big_service, last_result

from relconsole.lock import LOCK_DIR, LockInfo

ESC = "\x1b"
HOSTILE = "\x1b]52;c;ZXZpbA==\x07\x1b[2J"  # an OSC 52 clipboard write and a screen clear


@pytest.fixture
def run():
    runs: list[Run] = []

    def start(config, *args, env_extra=None):
        runs.append(Run(config, *args, env_extra=env_extra))
        return runs[-1]

    yield start
    for r in runs:
        r.kill()


def verdicts(host, path="/srv/svc") -> list[str]:
    found = host.path(path) / ".relconsole" / "verdicts"
    return found.read_text().splitlines() if found.exists() else []


# -- 1. a rollback never goes to a release that failed ------------------------------------


def test_rollback_skips_a_release_that_failed_and_goes_to_the_last_good_one(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"], keep_releases=5)
    v1, _ = build(config)
    assert v1.ok, v1.error
    origin.commit(sample_service_files("svc", "/srv/svc", "v2", crash=True), "v2 crashes")
    v2, _ = build(config)
    assert not v2.ok and v2.rolled_back == v1.release  # automatic rollback to v1
    origin.commit(sample_service_files("svc", "/srv/svc", "v3"), "v3")
    v3, _ = build(config)
    assert v3.ok, v3.error
    h1 = bed.host("h1")
    assert v2.release in releases(h1)  # the failed folder is still there, newest before v3
    assert verdicts(h1)[-1] == f"good {v3.release}"
    assert f"failed {v2.release}" in verdicts(h1)

    proc = cli("--config", str(config), "--rollback", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ROLLBACK OK: svc runs release {v1.release}" in proc.stdout
    for host in (bed.host("h1"), bed.host("h2")):
        assert current_release(host) == v1.release
    # and --to a release that failed is refused, nothing switched
    refused = cli("--config", str(config), "--rollback", "svc", "--to", v2.release)
    assert refused.returncode == 1 and "failed when it went live" in refused.stdout
    assert current_release(h1) == v1.release


def test_rollback_with_no_known_good_release_refuses_clearly(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    first, _ = build(config)
    assert first.ok, first.error

    proc = cli("--config", str(config), "--rollback", "svc")

    assert proc.returncode == 1
    assert "no known-good release before" in proc.stdout
    assert current_release(bed.host("h1")) == first.release


# -- 2. files follow `current` -------------------------------------------------------


BAD_CONF = "[program:broken\ncommand=/bin/true\n"


def test_a_bad_conf_from_a_rolled_back_release_is_removed_and_blocks_nothing(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])
    first, _ = build(config)
    assert first.ok, first.error
    origin.commit({"deploy/supervisor/zz-broken.conf": BAD_CONF, "VERSION": "v2\n"}, "v2")

    second, _ = build(config)

    assert not second.ok and second.rolled_back == first.release, second.error
    for host in (bed.host("h1"), bed.host("h2")):
        assert not (host.path("/etc/supervisor/conf.d") / "zz-broken.conf").exists()
        assert (host.path("/etc/supervisor/conf.d") / "svc.conf").exists()
        assert current_release(host) == first.release
    origin.commit({"deploy/supervisor/zz-broken.conf": None, "VERSION": "v3\n"}, "v3 fixed")
    third, _ = build(config)
    assert third.ok, third.error  # the bad conf of v2 no longer blocks every later deploy


def test_a_rollback_removes_the_files_a_newer_release_added(bed, origin, tmp_path):
    extra = sample_service_files("extra", "/srv/svc")["deploy/supervisor/extra.conf"]
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    first, _ = build(config)
    origin.commit({"deploy/supervisor/extra.conf": extra, "VERSION": "v2\n"}, "v2 adds extra")
    second, _ = build(config)
    assert first.ok and second.ok, (first.error, second.error)
    conf_d = bed.host("h1").path("/etc/supervisor/conf.d")
    assert (conf_d / "extra.conf").exists()

    proc = cli("--config", str(config), "--rollback", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (conf_d / "extra.conf").exists()
    assert (conf_d / "svc.conf").exists()


# -- 3. two builds of one commit right after each other ---------------------------------


def test_two_builds_of_one_commit_in_the_same_second_get_two_folders(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[])
    first, _ = build(config)
    second, _ = build(config)
    assert first.ok and second.ok, (first.error, second.error)
    assert first.release != second.release
    assert {first.release, second.release} <= set(releases(bed.host("h1")))


# -- 4, 5, 6. a repository that should not own the hosts ---------------------------------


def test_a_revision_symlink_and_an_injected_staging_path_in_the_tree_are_ignored(
    bed, origin, tmp_path
):
    files = sample_service_files("svc", "/srv/svc", "v1")
    files[".relconsole/files/0/evil.conf"] = "[program:evil]\ncommand=/bin/sleep 1000\n"
    sha = origin.commit(files, "v1 with a planted staging path")
    (origin.work / "REVISION").symlink_to("/etc/shadow")
    origin._repo.git.add("REVISION")
    sha = origin.commit({}, "plant a REVISION symlink")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])

    finished, _ = build(config)
    status = cli("--config", str(config), "--status", "svc", "--json")

    assert finished.ok, finished.error
    row = next(r for r in json.loads(status.stdout) if r["program"] == "svc")
    assert row["sha"] == sha
    assert "root:" not in status.stdout
    conf_d = bed.host("h1").path("/etc/supervisor/conf.d")
    assert not (conf_d / "evil.conf").exists()
    revision = bed.host("h1").path(f"/srv/svc/releases/{finished.release}") / "REVISION"
    assert not revision.is_symlink() and revision.read_text().strip() == sha


def test_a_files_source_under_a_symlinked_folder_fails_before_any_host_changes(
    bed, origin, tmp_path
):
    private = tmp_path / "private"
    private.mkdir()
    (private / "stolen.conf").write_text("[program:stolen]\ncommand=/bin/true\n")
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    (origin.work / "linked").symlink_to(private)
    origin._repo.git.add("linked")
    origin.commit({}, "a symlinked folder")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    config.write_text(config.read_text().replace('"deploy/supervisor/*.conf"', '"linked/*.conf"'))

    finished, _ = build(config)

    assert not finished.ok
    assert "linked/stolen.conf" in finished.error and "symlink" in finished.error
    assert current_release(bed.host("h1")) is None and releases(bed.host("h1")) == []
    assert not (bed.host("h1").path("/etc/supervisor/conf.d") / "stolen.conf").exists()


# -- 7. escape sequences from repositories and lock files ------------------------------


def test_pending_and_unlock_never_print_raw_escape_sequences(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    assert cli("--config", str(config), "--build", "svc").returncode == 0
    origin.commit({"VERSION": "v2\n"}, f"innocent{HOSTILE} subject")
    holder = LockInfo(f"eve{HOSTILE}", "elsewhere", 1, time.time(), "main")
    lock = bed.host("h1").path("/srv/svc") / LOCK_DIR
    lock.mkdir()
    (lock / "info").write_text(holder.to_json() + "\n")

    pending = cli("--config", str(config), "--pending", "svc")
    refused = cli("--config", str(config), "--build", "svc")
    unlocked = cli("--config", str(config), "--unlock", "svc")

    assert "innocent" in pending.stdout and "subject" in pending.stdout
    assert "eve" in refused.stdout and "eve" in unlocked.stdout
    for proc in (pending, refused, unlocked):
        assert ESC not in proc.stdout + proc.stderr, proc.stdout


# -- 8. a secret with several lines ----------------------------------------------------


def test_every_line_of_a_multi_line_secret_is_masked_in_every_output(bed, origin, tmp_path):
    key = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUA\nUVJTVFVWV1hZWjAxMjM0NQ\n-----END TEST KEY-----\n"
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    secret_file = tmp_path / "key.pem"
    secret_file.write_text(key)
    config = write_config(
        tmp_path,
        bed,
        origin.url,
        hosts=["h1"],
        checks=[{"name": "prints", "run": 'printf "%s\\n" "$KEY"; echo "q=\'$KEY\'"'}],
    )
    config.write_text(
        config.read_text().replace(
            "[services.svc]\n", f'[services.svc]\nsecrets = {{ KEY = "file:{secret_file}" }}\n'
        )
    )

    text = cli("--config", str(config), "--build", "svc")
    as_json = cli("--config", str(config), "--build", "svc", "--json")

    assert text.returncode == 0 and as_json.returncode == 0, text.stdout + text.stderr
    history = cli("--config", str(config), "--history", "svc", "--json").stdout
    for output in (text.stdout, as_json.stdout, history):
        for line in key.splitlines():
            assert line not in output


# -- 10. a closed terminal cancels like Ctrl-C ----------------------------------------


def test_sighup_during_upload_cancels_cleanly_with_129(bed, origin, tmp_path, run):
    big_service(origin, 16)
    config = write_config(tmp_path, bed, origin.url, checks=[])

    r = run(config, "--build", "svc")
    r.wait_for(lambda e: e["event"] == "stage_started" and e["stage"] == "upload")
    r.signal(signal.SIGHUP)
    finished = r.finish(timeout=30)

    assert r.returncode == 129, (finished, r.stderr)
    assert finished["cancelled"]
    for host in bed.hosts:
        assert current_release(host) is None and releases(host) == []
    assert_unlocked(bed.hosts, tmp_path / "state")
    assert last_result(tmp_path / "state") == "cancelled"


# -- 19. a status that lists nothing of the service is not healthy ---------------------


def test_status_fails_naming_a_configured_program_supervisord_does_not_know(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    assert cli("--config", str(config), "--build", "svc").returncode == 0
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], programs=["svc", "worker"])

    proc = cli("--config", str(config), "--status", "svc")

    assert proc.returncode == 1, proc.stdout
    assert "MISSING" in proc.stdout
    assert "h1: worker: supervisord on h1 does not know worker" in proc.stderr


# -- 14. a command that runs out of time leaves nothing running on the host --------------


@pytest.mark.parametrize("user, sudo", [("root", False), ("deploy", True)], ids=["root", "sudo"])
def test_a_timed_out_command_is_killed_on_the_host_with_its_children(
    bed, origin, tmp_path, user, sudo
):
    from relconsole.config import load_config
    from relconsole.hosts.base import CommandTimedOut
    from relconsole.hosts.connect import open_transport

    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = load_config(write_config(tmp_path, bed, origin.url, user=user, sudo=sudo))
    marker = f"sleep 3{os.getpid() % 1000}.25"  # unique on this machine
    t = open_transport(config.hosts["h1"], config.settings)
    lines: list[str] = []
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimedOut):
            t.run(
                f"echo before; sh -c '{marker}; echo never'; echo never",
                timeout=1.0,
                on_line=lambda line, _s: lines.append(line),
                sudo=True,
            )
        took = time.monotonic() - started
        assert took < 8, f"the timeout took {took:.1f}s"  # the command sleeps 300 s
        assert lines == ["before"]  # the group mark is not output
        deadline = time.monotonic() + 5
        while subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, f"{marker} still runs on the host"
            time.sleep(0.1)
        # the connection is still good for the next command
        assert t.run("echo after", timeout=5).stdout.strip() == "after"
    finally:
        t.close()


# -- 11, 12. a run that dies: history and locks -------------------------------------------


def lock_info(host, path="/srv/svc"):
    info = host.path(path) / LOCK_DIR / "info"
    return LockInfo.from_json(info.read_text()) if info.exists() else None


def test_a_killed_build_is_interrupted_in_the_history_and_its_lease_is_taken_over(
    bed, origin, tmp_path, run
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    slow = [{"name": "slow", "run": "echo started; sleep 60"}]
    config = write_config(
        tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=slow, settings={"lock_ttl": 10}
    )
    r = run(config, "--build", "svc")
    r.wait_for(lambda e: e["event"] == "output" and e["line"] == "started")
    r.kill()  # kill -9: no clean-up at all
    for host in bed.hosts[:2]:
        assert lock_info(host) is not None  # the lock stays...

    refused = cli("--config", str(config), "--build", "svc")
    assert refused.returncode == 75, refused.stdout + refused.stderr
    assert "last heartbeat" in refused.stdout and "lock_ttl = 10s" in refused.stdout
    rows = json.loads(cli("--config", str(config), "--history", "svc", "--json").stdout)
    assert rows[-1]["result"] == "interrupted"  # ...but the history knows it ended
    time.sleep(11)  # ...and once its lease runs out, the next build takes it over
    fast = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"], settings={"lock_ttl": 10})
    took = cli("--config", str(fast), "--build", "svc")
    assert took.returncode == 0, took.stdout + took.stderr
    assert "took over the deploy lock of" in took.stdout
    assert "no heartbeat for" in took.stdout
    assert_unlocked(bed.hosts[:2], tmp_path / "state")


def test_the_heartbeat_keeps_a_long_build_locked_past_the_ttl(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    slow = [{"name": "slow", "run": "echo started; sleep 22"}]
    config = write_config(
        tmp_path, bed, origin.url, hosts=["h1"], checks=slow, settings={"lock_ttl": 10}
    )
    other = tmp_path / "other"  # another machine: only the host's lock can stop it
    other_config = write_config(other, bed, origin.url, hosts=["h1"], settings={"lock_ttl": 10})
    first = subprocess.Popen(
        [*cli_argv(), "--config", str(config), "--build", "svc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(12)  # past the ttl: only the heartbeat keeps the lease
        second = cli("--config", str(other_config), "--build", "svc")
        assert second.returncode == 75, second.stdout + second.stderr
        assert "locked on h1" in second.stdout
        waited = cli("--config", str(other_config), "--build", "svc", "--lock-wait", "40")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "waiting up to 40s for the deploy lock" in waited.stdout, waited.stdout[:3000]
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err


def cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "relconsole"]


def test_a_lock_failing_on_one_host_is_released_on_the_others_by_token(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])
    h1, h2 = bed.host("h1"), bed.host("h2")
    h2.path("/srv").mkdir(parents=True, exist_ok=True)
    h2.path("/srv/svc").write_text("a file where the service folder should be\n")
    try:
        finished, _ = build(config)
    finally:
        h2.path("/srv/svc").unlink()
    assert not finished.ok and "cannot take the deploy lock" in finished.error
    assert lock_info(h1) is None  # taken on h1, released again
    assert current_release(h1) is None
