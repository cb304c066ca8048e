"""Issue 13 headless, end to end on the real bed (sshd + supervisord per host): --plan,
--run, notifications, and the guardrails (confirm, branches, --read-only)."""

from __future__ import annotations

import json
import os
import signal
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from deployconfig import write_config
from gitorigin import sample_service_files
from hook import Hook
from test_build_e2e import build, cli, current_release, releases
from test_safety_e2e import start_cli, wait_for_line
from testbed import process_alive

from relconsole.history import History
from relconsole.lock import LOCK_DIR, LocalLock

CONF = "deploy/supervisor/svc.conf"


def amend(config: Path, *, service: dict | None = None, notify: dict | None = None) -> Path:
    """Add keys to the test config's service ``svc`` and its ``[notify]`` tables."""
    doc = tomllib.loads(config.read_text())
    doc["services"]["svc"].update(service or {})
    if notify:
        doc["notify"] = notify
    config.write_text(tomli_w.dumps(doc))
    return config


def deployed(bed, origin, tmp_path, hosts=("h1", "h2"), **kwargs) -> tuple[Path, object]:
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=list(hosts), checks=[], **kwargs)
    first, _ = build(config)
    assert first.ok, first.error
    return config, first


def layout(bed, hosts=("h1", "h2")) -> dict:
    """What a plan must leave as it was: releases, current, the lock folder."""
    return {
        name: (
            releases(bed.host(name)),
            current_release(bed.host(name)),
            bed.host(name).path(f"/srv/svc/{LOCK_DIR}").exists(),
        )
        for name in hosts
    }


# --------------------------------------------------------------------------- --plan


def test_plan_lists_the_pending_commit_its_files_and_the_conf_diff_and_changes_nothing(
    bed, origin, tmp_path
):
    config, first = deployed(bed, origin, tmp_path)
    files = sample_service_files("svc", "/srv/svc", "v2")
    files[CONF] = files[CONF].replace("startsecs=1", "startsecs=2")
    sha = origin.commit(files, "v2: wait longer for the start")
    before = layout(bed)
    for host in bed.hosts:
        host.sshd_log.write_text("")

    proc = cli("--config", str(config), "--plan", "svc")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"at {sha[:12]}" in out and "v2: wait longer for the start" in out
    assert "1 commit(s) to deploy" in out and "VERSION" in out and "svc.conf" in out
    assert "/etc/supervisor/conf.d/svc.conf: changed on h1, h2" in out
    assert "-startsecs=1" in out and "+startsecs=2" in out
    assert "svc: update: config changed" in out and "svc: restart" in out
    assert "deploy lock: free" in out
    assert layout(bed) == before  # no lock left, nothing switched, no release made
    assert LocalLock(tmp_path / "state", "svc").holder() is None
    assert [h.accepted_connections() for h in bed.hosts[:2]] == [1, 1]
    assert bed.host("h1").program_pid("svc") is not None

    data = json.loads(cli("--config", str(config), "--plan", "svc", "--json").stdout)
    assert data["sha"] == sha and data["complete"] and data["lock"]["free"]
    assert data["groups"][0]["hosts"] == ["h1", "h2"]
    assert data["groups"][0]["commits"][0]["subject"] == "v2: wait longer for the start"
    assert data["hosts"][0]["release"] == first.release


def test_plan_shows_hosts_on_other_releases_apart_and_names_a_host_it_cannot_read(
    bed, origin, tmp_path
):
    config, first = deployed(bed, origin, tmp_path, hosts=("h1", "h2", "h3"))
    time.sleep(1.01)  # another release id
    origin.commit({"VERSION": "v2\n"}, "v2")
    assert cli("--config", str(config), "--build", "svc", "--hosts", "h1").returncode == 0
    origin.commit({"VERSION": "v3\n"}, "v3")
    bed.host("h3").stop_sshd()
    try:
        proc = cli("--config", str(config), "--plan", "svc")
    finally:
        bed.host("h3").start_sshd()

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "relconsole: cannot read h3: " in proc.stderr
    assert "Connection refused" in proc.stderr
    h1_runs = current_release(bed.host("h1"))
    assert h1_runs != first.release
    assert f"h1 runs {h1_runs}" in proc.stdout and f"h2 runs {first.release}" in proc.stdout
    assert "DIFFERS from the others" in proc.stdout
    assert all(not bed.host(n).path(f"/srv/svc/{LOCK_DIR}").exists() for n in ("h1", "h2"))


# --------------------------------------------------------------------------- --run


def test_run_prefixes_output_with_its_host_names_a_failing_one_and_is_recorded(
    bed, origin, tmp_path
):
    config, first = deployed(bed, origin, tmp_path, hosts=("h1", "h2", "h3"))
    (bed.host("h2").path("/srv/svc/releases") / first.release / "FAIL").write_text("")

    proc = cli(
        "--config", str(config), "--run", "svc", "--",
        "sh", "-c", 'cat VERSION; echo "in $PWD"; test ! -e FAIL', "--", "not split",
    )  # fmt: skip

    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in ("h1", "h2", "h3"):
        assert f"[{name}] v1" in proc.stdout
        assert f"[{name}] in /srv/svc/current" in proc.stdout
    assert "RUN FAILED on h2:" in proc.stdout
    assert "relconsole: failed on h2: exit 1" in proc.stderr
    rows = json.loads(cli("--config", str(config), "--history", "svc", "--json").stdout)
    assert (rows[0]["action"], rows[0]["result"]) == ("run", "failed")
    assert (
        rows[0]["command"] == "sh -c 'cat VERSION; echo \"in $PWD\"; test ! -e FAIL' -- 'not split'"
    )
    assert rows[0]["hosts"] == ["h1", "h2", "h3"] and "@" in rows[0]["who"]
    detail = History(tmp_path / "state").get("svc", rows[0]["number"])
    assert {h: r["run"]["exit"] for h, r in detail["host_results"].items()} == {
        "h1": 0,
        "h2": 1,
        "h3": 0,
    }
    ok = cli(
        "--config", str(config), "--run", "svc", "--hosts", "h1,h3", "--sudo", "--", "id", "-u"
    )
    assert ok.returncode == 0 and "[h1] 0" in ok.stdout and "RUN OK" in ok.stdout


def test_ctrl_c_kills_the_remote_commands(bed, origin, tmp_path):
    config, first = deployed(bed, origin, tmp_path)
    proc = start_cli(
        "--config", str(config), "--run", "svc", "--",
        "sh", "-c", "echo $$ > run.pid; echo started; exec sleep 600",
    )  # fmt: skip
    seen = "".join(wait_for_line(proc, "] started"))
    other = "[h2] started" if "[h1] started" in seen else "[h1] started"
    wait_for_line(proc, other)
    pids = [
        int((bed.host(n).path("/srv/svc/releases") / first.release / "run.pid").read_text())
        for n in ("h1", "h2")
    ]
    assert all(process_alive(pid) for pid in pids)

    proc.send_signal(signal.SIGINT)
    proc.wait(30)

    assert proc.returncode == 130, proc.stderr.read()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "the remote sleep outlived the Ctrl-C"
        time.sleep(0.05)


# --------------------------------------------------------------------------- notifications


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(mode: str = "ok") -> Hook:
        made.append(Hook(mode))
        return made[-1]

    yield make
    for hook in made:
        hook.close()


def test_a_failed_build_is_announced_once_and_a_success_not_when_on_leaves_it_out(
    bed, origin, tmp_path, hooks
):
    hook = hooks("ok")
    origin.commit(sample_service_files("svc", "/srv/svc", "v1", check_fails=True), "broken")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"])
    amend(config, notify={"team": {"url": "env:TEAM_HOOK", "on": ["failed"]}})
    env = dict(os.environ, TEAM_HOOK=hook.url)

    failed = cli("--config", str(config), "--build", "svc", env=env)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    (post,) = hook.posts  # the process waited for it before exiting: exactly one
    body = post["body"]
    assert body["result"] == "failed" and body["service"] == "svc" and body["branch"] == "main"
    assert body["hosts"] == ["h1", "h2"] and body["sha"] == origin.sha()
    assert "check 'tests' failed" in body["error"] and body["action"] == "build"
    assert body["started"] and body["finished"] and body["duration"] > 0 and "@" in body["user"]
    origin.commit(sample_service_files("svc", "/srv/svc", "v2"), "v2")
    ok = cli("--config", str(config), "--build", "svc", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert hook.results() == ["failed"]  # still that one: success is not in "on"


def test_a_failing_endpoint_changes_nothing_about_the_build_and_never_shows_its_url(
    bed, origin, tmp_path, hooks
):
    five, refused, ok = hooks("fail"), hooks("refuse"), hooks("ok")
    config, _ = deployed(bed, origin, tmp_path, hosts=("h1",))
    amend(
        config,
        notify={
            "five": {"url": "env:FIVE", "on": ["success"]},
            "gone": {"url": "env:GONE", "on": ["success"], "format": "slack"},
            "chat": {"url": "env:CHAT", "on": ["started", "success"], "format": "slack"},
        },
    )
    env = dict(os.environ, FIVE=five.url, GONE=refused.url, CHAT=ok.url)
    origin.commit({"VERSION": "v2\n"}, "v2")

    proc = cli("--config", str(config), "--build", "svc", env=env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BUILD OK" in proc.stdout
    assert len(five.posts) == 3  # three attempts, then given up
    assert [p["body"]["relconsole"]["result"] for p in ok.posts] == ["started", "success"]
    assert ok.posts[1]["body"]["text"].startswith(":white_check_mark: *svc* build of main")
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert any("'five'" in w and "HTTP 500" in w and "3 attempts" in w for w in warnings)
    assert any("'gone'" in w and "connection refused" in w for w in warnings)
    (row,) = [r for r in History(tmp_path / "state").list("svc") if r["number"] == 2]
    went = {(d["target"], d["occasion"]): (d["ok"], d["attempts"]) for d in row["deliveries"]}
    assert went == {
        ("five", "success"): (False, 3),
        ("gone", "success"): (False, 3),
        ("chat", "started"): (True, 1),
        ("chat", "success"): (True, 1),
    }
    # The URLs are secrets: not in any output, the history, or anything under state_dir.
    history = cli("--config", str(config), "--history", "--json").stdout
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    for hook in (five, refused, ok):
        for where in (proc.stdout, proc.stderr, history, state.decode("latin-1")):
            assert hook.secret not in where


def test_an_endpoint_that_never_answers_does_not_hold_the_build(bed, origin, tmp_path, hooks):
    hang = hooks("hang")
    config, _ = deployed(bed, origin, tmp_path, hosts=("h1",))
    origin.commit({"VERSION": "v2\n"}, "v2")
    started = time.monotonic()
    plain = cli("--config", str(config), "--build", "svc")
    normal = time.monotonic() - started
    assert plain.returncode == 0
    amend(config, notify={"slow": {"url": "env:SLOW"}})
    origin.commit({"VERSION": "v3\n"}, "v3")

    started = time.monotonic()
    proc = cli("--config", str(config), "--build", "svc", env=dict(os.environ, SLOW=hang.url))
    took = time.monotonic() - started

    assert proc.returncode == 0 and "BUILD OK" in proc.stdout, proc.stdout + proc.stderr
    assert "no answer within 2s" in proc.stderr
    # Three attempts of 2 s and the backoff beside the process's end; never the
    # 10 s cap (notify.EXIT_WAIT) plus what load may add.
    assert took < normal + 10 + 5, (took, normal)
    row = History(tmp_path / "state").list("svc", limit=1)[0]
    assert {(d["occasion"], d["ok"]) for d in row["deliveries"]} == {
        ("started", False),
        ("success", False),
    }


# --------------------------------------------------------------------------- guardrails


def test_confirm_refuses_build_rollback_and_run_without_yes_and_changes_nothing(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = amend(write_config(tmp_path, bed, origin.url, hosts=["h1"]), service={"confirm": True})

    for mode in (["--build", "svc"], ["--rollback", "svc"], ["--run", "svc", "--", "true"]):
        proc = cli("--config", str(config), *mode)
        assert proc.returncode == 2, (mode, proc.stdout, proc.stderr)
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1
        assert "svc has confirm = true: nothing was done; add --yes" in proc.stderr

    assert bed.host("h1").accepted_connections() == 0
    assert not bed.host("h1").path("/srv/svc").exists()
    assert (
        not (tmp_path / "state" / "history.sqlite3").exists()
        or not History(tmp_path / "state").list()
    )
    proc = cli("--config", str(config), "--build", "svc", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_branch_patterns_limit_what_may_be_built(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    origin.commit({"VERSION": "feature\n"}, "feature", branch="feature")
    release_sha = origin.commit({"VERSION": "r1\n"}, "r1", branch="release/1.0")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[])
    amend(config, service={"branches": ["main", "release/*"]})

    for mode in ("--build", "--plan"):
        proc = cli("--config", str(config), mode, "svc", "--branch", "feature")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "svc may not deploy branch 'feature'" in proc.stderr
    assert bed.host("h1").accepted_connections() == 0

    proc = cli("--config", str(config), "--build", "svc", "--branch", "release/1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert release_sha[:12] in proc.stdout


def test_read_only_is_for_the_console_only(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    proc = cli("--config", str(config), "--read-only", "--build", "svc")
    assert proc.returncode == 2 and "--read-only is for the console" in proc.stderr
    assert bed.host("h1").accepted_connections() == 0
