"""End-to-end builds against the real test bed: sshd per host, supervisord per host, git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from clirun import cli
from deployconfig import write_config
from gitorigin import sample_service_files

from relconsole.config import load_config
from relconsole.events import HostFinished, Output, StageFinished
from relconsole.pipeline import run_build


def build(config_path: Path, service: str = "svc", **kwargs):
    events = []
    lock = threading.Lock()

    def sink(event):
        with lock:
            events.append(event)

    finished = run_build(load_config(config_path), service, sink, **kwargs)
    return finished, events


def current_release(host, path="/srv/svc"):
    link = host.path(path) / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def releases(host, path="/srv/svc"):
    folder = host.path(path) / "releases"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def output_of(events, stage=None, host=None):
    return [
        e.line
        for e in events
        if isinstance(e, Output)
        and (stage is None or e.stage == stage)
        and (host is None or e.host == host)
    ]


def wait_for_log(host, text, program="svc", timeout=10.0):
    log = host.path(f"/etc/supervisor/log/{program}.out.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}: {log.read_text() if log.exists() else 'missing'}")


def test_three_host_build_runs_new_code_under_supervisor(bed, origin, tmp_path):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "first release")
    config = write_config(tmp_path, bed, origin.url)

    finished, events = build(config)

    assert finished.ok, finished.error
    assert finished.sha == sha
    for host in bed.hosts:
        assert current_release(host) == finished.release
        release = host.path("/srv/svc") / "releases" / finished.release
        assert (release / "REVISION").read_text().strip() == sha
        assert (release / "VERSION").read_text().strip() == "v1"
        assert host.path("/etc/supervisor/conf.d/svc.conf").exists()
        assert host.program_pid("svc") is not None
        wait_for_log(host, f"version=v1 revision={sha}")
        # One SSH connection per host for the whole build.
        assert host.accepted_connections() == 1
        assert "svc RUNNING pid" in " ".join(output_of(events, "supervisor", host.name))
    stages = [e for e in events if isinstance(e, StageFinished)]
    assert [(s.stage, s.ok) for s in stages] == [
        ("checkout", True),
        ("check", True),
        ("upload", True),
        ("setup", True),
        ("supervisor", True),
    ]
    assert "checks passed" in output_of(events, "check")


def test_second_build_of_another_branch_replaces_the_first(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    feature_sha = origin.commit(
        sample_service_files("svc", "/srv/svc", "v2-feature"), "feature", branch="feature"
    )
    config = write_config(tmp_path, bed, origin.url)
    first, _ = build(config)
    assert first.ok, first.error
    pids = {h.name: h.program_pid("svc") for h in bed.hosts}

    second, events = build(config, branch="feature")

    assert second.ok, second.error
    assert second.sha == feature_sha
    for host in bed.hosts:
        assert current_release(host) == second.release
        assert releases(host) == sorted([first.release, second.release])
        assert host.program_pid("svc") not in (None, pids[host.name])
        wait_for_log(host, "version=v2-feature")
        assert host.accepted_connections() == 2  # one per build


def test_failing_check_uploads_nothing(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1", check_fails=True), "broken")
    config = write_config(tmp_path, bed, origin.url)

    finished, events = build(config)

    assert not finished.ok
    assert "check 'tests' failed with exit code 1" in finished.error
    assert "check failed on purpose" in output_of(events, "check")
    assert not any(isinstance(e, StageFinished) and e.stage == "upload" for e in events)
    for host in bed.hosts:
        # The deploy lock made /srv/svc; nothing else may exist, and the lock is gone.
        assert sorted(p.name for p in host.path("/srv/svc").iterdir()) == []
        assert host.accepted_connections() == 1


def test_program_that_dies_at_start_fails_the_build_naming_its_state(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1", crash=True), "crashes")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])

    finished, events = build(config)

    assert not finished.ok
    assert "svc is BACKOFF" in finished.error or "svc is FATAL" in finished.error
    lines = output_of(events, "supervisor", "h1")
    assert any("svc crashing" in line for line in lines), lines  # the program's own log tail


def test_one_host_down_means_no_host_switched(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    first, _ = build(config)
    assert first.ok
    origin.commit({"VERSION": "v2\n"}, "v2")
    bed.hosts[2].stop_sshd()

    finished, events = build(config)

    assert not finished.ok
    assert "h3" in finished.error and "nothing was changed" in finished.error
    assert "Connection refused" in finished.error
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert releases(host) == [first.release]
    failed = [e for e in events if isinstance(e, HostFinished) and not e.ok]
    assert [e.host for e in failed] == ["h3"]


def test_upload_failure_on_one_host_switches_none_and_cleans_up(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    first, _ = build(config)
    assert first.ok
    origin.commit({"VERSION": "v2\n"}, "v2")
    # h2's releases folder turns read-only (inside h2's own mount namespace).
    ro = "/srv/svc/releases"
    bed.hosts[1].ssh(f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro}")
    try:
        finished, _ = build(config)
    finally:
        bed.hosts[1].ssh(f"umount {ro}")

    assert not finished.ok
    assert "h2" in finished.error and "no host was switched" in finished.error
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert releases(host) == [first.release], "the partial release must be removed"


def test_unknown_host_key_is_refused_with_a_way_to_trust_it(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    partial = tmp_path / "known_hosts"
    lines = bed.known_hosts.read_text().splitlines()
    partial.write_text("\n".join(ln for ln in lines if bed.hosts[1].address not in ln) + "\n")
    config = write_config(tmp_path, bed, origin.url, known_hosts=partial)

    finished, _ = build(config)

    assert not finished.ok
    assert "h2" in finished.error and "not in" in finished.error
    assert "relconsole --trust h2" in finished.error
    assert "SHA256:" in finished.error
    for host in bed.hosts:
        assert current_release(host) is None


def test_changed_host_key_is_refused(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    other_key = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    h1 = bed.hosts[0]
    keytype, key = other_key.with_suffix(".pub").read_text().split()[:2]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[{h1.address}]:{h1.port} {keytype} {key}\n")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], known_hosts=forged)

    finished, _ = build(config)

    assert not finished.ok and "HOST KEY CHANGED" in finished.error
    assert current_release(h1) is None


def test_non_root_user_deploys_through_passwordless_sudo(bed, origin, tmp_path):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, user="deploy", sudo=True, hosts=["h1", "h2"])

    finished, _ = build(config)

    assert finished.ok, finished.error
    for host in bed.hosts[:2]:
        wait_for_log(host, f"revision={sha}")
        owner = (host.path("/srv/svc") / "releases" / finished.release).stat().st_uid
        assert owner == 0  # extracted through sudo
    log = bed.hosts[0].sshd_log.read_text()
    assert "Accepted publickey for deploy" in log and "Accepted publickey for root" not in log


def test_sudo_that_wants_a_password_is_a_clear_error(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, user="nopw", sudo=True, hosts=["h1"])

    started = time.monotonic()
    finished, _ = build(config)

    assert not finished.ok
    assert "wants a password" in finished.error and "h1" in finished.error
    assert time.monotonic() - started < 30


def test_old_releases_are_pruned_but_never_current_or_previous(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path, bed, origin.url, hosts=["h1"], keep_releases=2, programs=[], checks=[]
    )
    made = []
    for n in range(4):
        origin.commit({"VERSION": f"v{n}\n"}, f"v{n}")
        finished, _ = build(config)
        assert finished.ok, finished.error
        made.append(finished.release)
        time.sleep(1.01)  # release ids have one-second resolution
    assert releases(bed.hosts[0]) == made[-2:]
    assert current_release(bed.hosts[0]) == made[-1]


def test_headless_cli_text_output_and_summary(bed, origin, tmp_path):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1 [markup]")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])

    proc = cli("--config", str(config), "--build", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "[check] checks passed" in out
    assert "[upload h2] " in out and "[supervisor h1] " in out
    assert "<-- upload ok" in out
    summary = out[out.index("stage ") :]
    assert "supervisor" in summary and "h1" in summary and "h2" in summary
    assert f"BUILD OK: svc {sha[:12]}" in out and "[markup]" in out


def test_headless_cli_json_lines(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])

    proc = cli("--config", str(config), "--build", "svc", "--json")

    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "started"
    assert events[-1]["event"] == "finished" and events[-1]["ok"] is True
    assert all("ts" in e for e in events)
    upload = [e for e in events if e["event"] == "output" and e["stage"] == "upload"]
    assert {e["host"] for e in upload} == {None, "h1"}  # the engine's own lines have no host
    assert any("unpacked" in e["line"] for e in upload if e["host"] == "h1")


def test_failed_build_exits_1_and_bad_config_exits_2(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1", check_fails=True), "broken")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    assert cli("--config", str(config), "--build", "svc").returncode == 1

    config.write_text(config.read_text().replace("keep_releases", "keep_relases"))
    proc = cli("--config", str(config), "--build", "svc")
    assert proc.returncode == 2
    assert "keep_relases" in proc.stderr and "services.svc" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_service_and_hostile_branch_are_usage_errors(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    assert cli("--config", str(config), "--build", "nope").returncode == 2
    pwned = Path("/tmp/pwned")
    pwned.unlink(missing_ok=True)
    proc = cli("--config", str(config), "--build", "svc", "--branch", "x;touch /tmp/pwned")
    assert proc.returncode == 2 and "--branch" in proc.stderr
    assert not pwned.exists()


def test_sigint_during_checks_exits_130_and_uploads_nothing(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path,
        bed,
        origin.url,
        hosts=["h1"],
        checks=[{"name": "slow", "run": "echo started; sleep 60"}],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "relconsole", "--config", str(config), "--build", "svc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if "[check] started" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "BUILD CANCELLED" in out
    assert list(bed.hosts[0].path("/srv/svc").iterdir()) == []  # no release, no lock left


def test_status_table_and_json(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])
    finished, _ = build(config)
    assert finished.ok, finished.error

    table = cli("--config", str(config), "--status", "svc")
    assert table.returncode == 0, table.stderr
    pid = bed.hosts[0].program_pid("svc")
    assert any(
        line.split()[:4] == ["h1", "svc", "RUNNING", str(pid)] for line in table.stdout.splitlines()
    ), table.stdout

    bed.hosts[1].stop_sshd()
    proc = cli("--config", str(config), "--status", "--json")
    assert proc.returncode == 1
    rows = json.loads(proc.stdout)
    by_host = {r["host"]: r for r in rows if r["program"] == "svc"}
    assert by_host["h1"]["state"] == "RUNNING" and by_host["h1"]["pid"] == pid
    down = [r for r in rows if r["host"] == "h2"]
    assert down and down[0]["state"] == "UNREACHABLE" and down[0]["pid"] is None
    assert {"host", "program", "state", "pid", "description"} <= set(rows[0])


def test_a_bug_on_one_host_fails_the_build_with_a_message(bed, origin, tmp_path):
    """Something unexpected raised in a host step (here: the connector) is a failed build
    with a message, not a traceback, and the local lock is released."""
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])

    def broken_connector(host, settings):
        raise ZeroDivisionError("boom")

    finished, _ = build(config, connector=broken_connector)

    assert not finished.ok and "boom" in finished.error
    assert not list((tmp_path / "state" / "locks").glob("*.lock")) or all(
        p.read_text() == "" for p in (tmp_path / "state" / "locks").glob("*.lock")
    )
