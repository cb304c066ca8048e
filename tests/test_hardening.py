"""Issue 14, the parts that need no hosts: bounded durations, services that would
overwrite each other, linear and capped line splitting, masking of multi-line secrets,
the release tar refusing what a hostile tree plants, exit codes of signals."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import git
import pytest
from clirun import cli

from relconsole import release as rel
from relconsole.config import ConfigError, FileUpload, parse_config
from relconsole.headless.exit import Exit
from relconsole.secrets import MASK, Masker
from relconsole.stages.checkout import CheckoutError
from relconsole.stages.upload import write_release_tar
from relconsole.text import LineSplitter

BASE = """
[hosts.h1]
address = "10.0.0.1"
[services.api]
repo = "/srv/git/api"
hosts = ["h1"]
"""


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("/etc/relconsole/config.toml"))
    return str(info.value)


# -- 13. durations ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["command_timeout", "connect_timeout", "poll_interval"])
@pytest.mark.parametrize("value", ["1e308", "86401", "inf"])
def test_a_duration_beyond_a_day_is_a_config_error_naming_the_key(key, value):
    message = config_error(f"[settings]\n{key} = {value}\n" + BASE)
    assert f"[settings] key '{key}'" in message
    assert "at most 86400 seconds" in message or "> 0" in message


def test_a_check_timeout_beyond_a_day_is_refused_too():
    message = config_error(BASE + 'checks = [{ name = "t", run = "true", timeout = 1e308 }]\n')
    assert "key 'timeout'" in message and "at most 86400" in message


def test_a_day_is_still_allowed():
    cfg = parse_config("[settings]\ncommand_timeout = 86400\n" + BASE, Path("/c.toml"))
    assert cfg.settings.command_timeout == 86400


# -- 20. two services on the same path of one host ------------------------------------


def test_two_services_with_the_same_host_and_path_are_refused():
    text = BASE + '\n[services.web]\nrepo = "/srv/git/web"\nhosts = ["h1"]\npath = "/srv/api"\n'
    message = config_error(text)
    assert "[services.web] key 'path'" in message
    assert "'/srv/api' on host 'h1' is already the path of service 'api'" in message


def test_two_services_on_different_paths_are_fine():
    text = BASE + '\n[services.web]\nrepo = "/srv/git/web"\nhosts = ["h1"]\n'
    assert set(parse_config(text, Path("/c.toml")).services) == {"api", "web"}


# -- 16. line splitting ----------------------------------------------------------------


def test_a_long_line_without_newline_costs_linear_time_and_is_cut():
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    chunk = "x" * 4096
    started = time.process_time()
    for _ in range(10 * 1024 * 1024 // len(chunk)):  # 10 MB, no newline
        splitter.write(chunk)
    splitter.write("\nnext\n")
    took = time.process_time() - started
    assert took < 1.0, f"10 MB took {took:.2f}s of CPU"  # was 99 s (quadratic)
    assert lines[1] == "next"
    assert len(lines[0]) < 70 * 1024
    assert lines[0].endswith(f" … [{10 * 1024 * 1024 - 64 * 1024} more characters]")


def test_lines_split_across_chunks_come_out_whole():
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_line=8)
    for piece in ("ab", "c\r\nde", "fghijklmno", "p\nq"):
        splitter.write(piece)
    splitter.flush_partial()
    assert lines == ["abc", "defghijk … [5 more characters]", "q"]


# -- 8. secrets with several lines ----------------------------------------------------


KEY = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG\n9w0BAQEFAASCBKcwggSj\n-----END KEY-----\n"


def test_every_line_of_a_multi_line_secret_is_masked():
    masker = Masker([KEY])
    for line in KEY.splitlines():
        assert masker.mask(f"got {line} here") == f"got {MASK} here"


def test_a_secret_shell_quoted_or_json_escaped_is_masked():
    secret = "it's a $ecret"
    masker = Masker([secret])
    assert MASK in masker.mask(f"+ echo {shlex.quote(secret)}")
    assert secret not in masker.mask(f"+ echo {shlex.quote(secret)}")
    assert "MIIE" not in Masker([KEY]).mask(json.dumps({"k": KEY}))


def test_short_lines_of_a_secret_do_not_blank_other_output():
    masker = Masker(["abc\n}\nlonger-line"])
    assert masker.mask("if x: }") == "if x: }"


# -- 4, 5, 6. what a hostile tree cannot plant ----------------------------------------


def hostile_repo(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "ws"
    repo = git.Repo.init(work, initial_branch="main")
    (work / "app.py").write_text("print('hi')\n")
    (work / "REVISION").symlink_to("/etc/shadow")
    (work / ".relconsole" / "files" / "0").mkdir(parents=True)
    (work / ".relconsole" / "files" / "0" / "evil.conf").write_text("[program:evil]\n")
    (work / "deploy").mkdir()
    (work / "deploy" / "ok.conf").write_text("[program:ok]\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "id_rsa").write_text("PRIVATE\n")
    (work / "linked").symlink_to(tmp_path / "secret")
    repo.git.add("-A")
    repo.git.commit("-m", "hostile", "--author", "t <t@t.invalid>")
    return work, repo.head.commit.hexsha


def tar_names(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_release_tar_takes_revision_and_relconsole_paths_from_relconsole_only(tmp_path):
    work, sha = hostile_repo(tmp_path)
    out = tmp_path / "release.tar"
    with open(out, "w+b") as f:
        write_release_tar(work, sha, (FileUpload("deploy/*.conf", "/etc/x"),), f)
    members = tar_names(out)
    assert [n for n in members if n == "REVISION"] == ["REVISION"]
    assert members["REVISION"].isfile() and not members["REVISION"].issym()
    assert f"{rel.STAGED_FILES}/0/evil.conf" not in members
    assert f"{rel.STAGED_FILES}/0/ok.conf" in members
    with tarfile.open(out) as tar:
        assert tar.extractfile("REVISION").read().decode().strip() == sha


def test_a_files_source_under_a_symlinked_folder_is_refused(tmp_path):
    work, sha = hostile_repo(tmp_path)
    with open(tmp_path / "r.tar", "w+b") as f, pytest.raises(CheckoutError) as info:
        write_release_tar(work, sha, (FileUpload("linked/id_rsa", "/etc/x"),), f)
    assert "linked/id_rsa" in str(info.value) and "symlink" in str(info.value)


def test_reading_revision_on_a_host_never_follows_a_symlink(tmp_path):
    release = tmp_path / "releases" / "20260101-000000-abcdef1"
    release.mkdir(parents=True)
    (tmp_path / "secret").write_text("root:$6$hash\n")
    (release / "REVISION").symlink_to(tmp_path / "secret")
    command = rel.revision_command(str(tmp_path), "20260101-000000-abcdef1")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""
    (release / "REVISION").unlink()
    (release / "REVISION").write_text("abc123\n")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert out.stdout.strip() == "abc123"


# -- 10. signals -----------------------------------------------------------------------


def test_a_hangup_exits_129_like_a_shell_would():
    assert Exit.for_signal(signal.SIGHUP) == 129
    assert Exit.for_signal(signal.SIGTERM) == 143
    assert Exit.for_signal(signal.SIGINT) == 130


IMPORT_GITPYTHON = """
from relconsole.errors import Cancelled
from relconsole.stages.checkout import import_gitpython
try:
    import_gitpython()
except Cancelled:
    print("cancelled")
except ImportError:
    print("import error")
else:
    print("imported")
"""


@pytest.mark.parametrize(
    "git_version, outcome",
    [
        ("kill -TERM $$", "cancelled"),  # the stop signal reached the process group
        ("exit 130", "cancelled"),  # a git that caught SIGINT and exited 128 + 2
        ("exit 3", "import error"),  # a broken git stays an error, not a cancel
    ],
)
def test_a_stop_signal_during_gitpythons_import_is_a_cancel(tmp_path, git_version, outcome):
    # GitPython's import runs `git version`; Ctrl-C or SIGTERM to the process group at
    # that moment used to end a build as "internal error: ImportError".
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{git_version}\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_GITPYTHON], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == outcome, out.stderr


# -- 1. the rollback target --------------------------------------------------------------

A, B, C = "20260101-000000-aaaaaaa", "20260102-000000-bbbbbbb", "20260103-000000-ccccccc"


def test_the_rollback_target_is_the_last_good_release_never_a_failed_one():
    verdicts = rel.parse_verdicts(f"verdict=good {A}\nverdict=failed {B}\nverdict=good {C}\n")
    assert rel.rollback_target(C, [A, B, C], verdicts) == A
    assert rel.rollback_target(C, [B, C], verdicts) is None  # A was pruned
    # a release that was good and later failed (a rollback to it crashed) is not good
    later = rel.parse_verdicts(f"verdict=good {A}\nverdict=good {C}\nverdict=failed {A}\n")
    assert rel.rollback_target(C, [A, B, C], later) is None


def test_hosts_without_a_record_fall_back_to_the_newest_older_release():
    assert rel.parse_verdicts(f"current=x\n{A}\nverdicts=none\n") is None
    assert rel.rollback_target(C, [A, B, C], None) == B


def test_verdicts_are_recorded_for_the_release_current_points_at(tmp_path):
    (tmp_path / "releases" / A).mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / A)
    for verdict in (rel.GOOD, rel.FAILED):
        subprocess.run(["sh", "-c", rel.mark_current_command(str(tmp_path), verdict)], check=True)
    listing = subprocess.run(
        ["sh", "-c", rel.list_releases_command(str(tmp_path))], capture_output=True, text=True
    ).stdout
    assert rel.parse_releases(listing) == (A, [A])
    assert rel.parse_verdicts(listing) == {A: rel.FAILED}


# -- 2. files follow `current` ---------------------------------------------------------


def stage(base: Path, release: str, names: dict[str, str]) -> None:
    staged = base / "releases" / release / rel.STAGED_FILES / "0"
    staged.mkdir(parents=True)
    for name, text in names.items():
        (staged / name).write_text(text)


def switch(base: Path, release: str, dest: Path) -> None:
    command = rel.switch_command(str(base), release, [FileUpload("x", str(dest))])
    subprocess.run(["sh", "-c", command], check=True, capture_output=True)


def test_switching_removes_the_files_the_outgoing_release_shipped_and_the_new_one_does_not(
    tmp_path,
):
    dest = tmp_path / "conf.d"
    dest.mkdir()
    (dest / "someone-elses.conf").write_text("kept\n")
    stage(tmp_path, A, {"svc.conf": "a\n"})
    stage(tmp_path, B, {"svc.conf": "b\n", "extra.conf": "b\n", ".hidden": "b\n"})

    switch(tmp_path, A, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["someone-elses.conf", "svc.conf"]
    switch(tmp_path, B, dest)
    assert sorted(p.name for p in dest.iterdir()) == [
        ".hidden",
        "extra.conf",
        "someone-elses.conf",
        "svc.conf",
    ]
    switch(tmp_path, A, dest)  # a rollback: B's additions go, A's file comes back
    assert sorted(p.name for p in dest.iterdir()) == ["someone-elses.conf", "svc.conf"]
    assert (dest / "svc.conf").read_text() == "a\n"

    undo = rel.unlink_current_command(str(tmp_path), [FileUpload("x", str(dest))])
    subprocess.run(["sh", "-c", undo], check=True)
    assert sorted(p.name for p in dest.iterdir()) == ["someone-elses.conf"]
    assert not (tmp_path / "current").exists()


# -- 18. errors instead of tracebacks ----------------------------------------------------


def minimal_config(tmp_path: Path, state_dir: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[settings]\nstate_dir = "{state_dir}"\n[hosts.h1]\naddress = "local"\n'
        f'root = "{tmp_path / "root"}"\n[services.api]\nrepo = "{tmp_path / "repo"}"\n'
        'hosts = ["h1"]\n'
    )
    return path


def test_a_corrupt_history_is_moved_aside_kept_and_a_new_one_started(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    config = minimal_config(tmp_path, state)

    proc = cli("--config", str(config), "--history")

    assert proc.returncode == 0, proc.stderr
    assert "was damaged" in proc.stderr and "a new history was started" in proc.stderr
    assert "Traceback" not in proc.stderr
    kept = list(state.glob("history.sqlite3.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    again = cli("--config", str(config), "--history")
    assert again.returncode == 0 and again.stderr == ""


def test_processes_opening_a_new_history_at_once_all_get_it(tmp_path):
    """The console reads the history while its first build opens it to record: both
    creating (or migrating) the file at once lost the build's row to "duplicate column
    name" (about one round in twelve before the fix)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(40):
        state = tmp_path / f"state{round_}"
        with context.Pool(3) as pool:
            outcomes = pool.map(open_history, [state] * 3)
        assert outcomes == ["ok"] * 3, (round_, outcomes)


def open_history(state: Path) -> str:
    from relconsole.history import History

    try:
        History(state).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_an_older_history_is_migrated_and_a_current_one_is_not_written(tmp_path):
    """Opening must not write a current file (a read-only state_dir still reads), and
    must add the columns an older file lacks."""
    import sqlite3

    from relconsole.history import History

    state = tmp_path / "state"
    state.mkdir()
    old = sqlite3.connect(state / "history.sqlite3")
    old.execute(
        "CREATE TABLE builds (id INTEGER PRIMARY KEY, service TEXT NOT NULL, number INTEGER "
        "NOT NULL, action TEXT NOT NULL, who TEXT NOT NULL, trigger TEXT NOT NULL, branch TEXT,"
        " sha TEXT, subject TEXT, release TEXT, hosts TEXT NOT NULL DEFAULT '[]', started REAL"
        " NOT NULL, duration REAL, result TEXT NOT NULL, error TEXT, stages TEXT NOT NULL "
        "DEFAULT '{}', host_results TEXT NOT NULL DEFAULT '{}', log TEXT NOT NULL DEFAULT '',"
        " UNIQUE (service, number))"
    )
    old.execute(
        "INSERT INTO builds (service, number, action, who, trigger, started, result) "
        "VALUES ('api', 1, 'build', 'me', 'tui', 1.0, 'success')"
    )
    old.commit()
    old.close()

    History(state).close()
    current = (state / "history.sqlite3").read_bytes()
    history = History(state)

    assert [row["result"] for row in history.list("api")] == ["success"]
    assert (state / "history.sqlite3").read_bytes() == current
    history.start(
        service="api",
        action="run",
        who="me",
        trigger="tui",
        branch=None,
        hosts=[],
        command="uptime",
    )
    assert history.list("api")[0]["command"] == "uptime"


def test_a_state_dir_that_is_a_file_is_one_line_naming_it(tmp_path):
    state = tmp_path / "state"
    state.write_text("oops\n")
    config = minimal_config(tmp_path, state)

    for args in (["--history"], ["--build", "api"]):
        proc = cli("--config", str(config), *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert f"{state} is a file, not a folder" in proc.stdout + proc.stderr


CAP_DAC_OVERRIDE = 1  # linux/capability.h: what lets root ignore file permissions


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold, as for any other user: root
    (CI runs as root) with every capability dropped, as tests/prove_fast_tier.sh runs
    the whole tier; nothing when there is no such power to drop (a user, that cage)."""
    status = Path("/proc/self/status").read_text().splitlines()
    effective = int(next(line for line in status if line.startswith("CapEff:")).split()[1], 16)
    if not effective & (1 << CAP_DAC_OVERRIDE):
        return []
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def cli_without_root_powers(*args: str) -> subprocess.CompletedProcess:
    return cli(*args, prefix=without_root_powers(), timeout=60)


@pytest.fixture
def read_only_state(tmp_path):
    """A config over one local host and a state_dir used once (a history, a workspace,
    the locks folder) that this user can no longer write: ``(config, state_dir)``."""
    from relconsole.history import History

    origin = tmp_path / "repo"
    repo = git.Repo.init(origin, initial_branch="main")
    with repo.config_writer() as writer:
        writer.set_value("user", "name", "tests").set_value("user", "email", "t@example.invalid")
    repo.git.commit("--allow-empty", "-m", "first")
    state = tmp_path / "state"
    History(state).close()
    git.Repo.clone_from(str(origin), state / "workspaces" / "api")
    (state / "locks").mkdir()
    config = minimal_config(tmp_path, state)
    folders = [state, *(p for p in state.rglob("*") if p.is_dir())]
    for p in [*state.rglob("*"), state]:
        p.chmod(p.stat().st_mode & ~0o222)
    yield config, state
    for p in folders:
        p.chmod(0o700)


def test_unlock_in_a_read_only_state_dir_unlocks_and_names_the_history_and_what_to_do(
    read_only_state,
):
    config, state = read_only_state

    proc = cli_without_root_powers("--config", str(config), "--unlock", "api")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"h1: connected to local:{config.parent / 'root'} in 0.00s",
        "h1: not locked",
        f"history not recorded: {state}/history.sqlite3: attempt to write a readonly database;"
        " make it writable for this user, or set [settings] state_dir to a folder that is",
    ]


def test_unlock_in_a_read_only_state_dir_without_a_history_still_unlocks(read_only_state):
    config, state = read_only_state
    (state / "history.sqlite3").chmod(0o600)
    state.chmod(0o700)
    (state / "history.sqlite3").unlink()
    state.chmod(0o500)

    proc = cli_without_root_powers("--config", str(config), "--unlock", "api")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "h1: not locked",
        f"history not recorded: cannot use the history {state}/history.sqlite3: Permission "
        "denied; make it writable for this user, or set [settings] state_dir to a folder that is",
    ]


def test_pending_in_a_read_only_state_dir_is_one_line_naming_the_file_and_what_to_do(
    read_only_state,
):
    config, state = read_only_state

    proc = cli_without_root_powers("--config", str(config), "--pending", "api")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == (
        f"relconsole: {state}/workspaces/.api.lock: Permission denied (on this machine); make"
        " it writable for this user, or set [settings] state_dir to a folder that is\n"
    )


def test_an_os_error_in_a_build_is_the_file_and_reason_not_an_internal_error(read_only_state):
    config, state = read_only_state

    proc = cli_without_root_powers("--config", str(config), "--build", "api")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert (
        f"history not recorded: {state}/history.sqlite3: attempt to write a readonly database;"
        in proc.stdout
    )
    assert proc.stdout.splitlines()[-1].endswith(
        f": {state}/locks/api.lock: Permission denied (on this machine); make it writable for"
        " this user, or set [settings] state_dir to a folder that is"
    )


def test_git_locks_left_by_a_killed_checkout_do_not_stop_the_next(tmp_path):
    """A build killed (kill -9) during its checkout leaves .git/index.lock behind (the
    soak test met it): the next checkout removes git's stale locks and says so."""
    from gitorigin import make_origin

    from relconsole.stages.checkout import checkout

    origin = make_origin(tmp_path / "origin")
    origin.commit({"a.txt": "1\n"}, "one")
    workspace = tmp_path / "state" / "workspaces" / "svc"
    said: list[str] = []
    checkout(workspace, origin.url, "main", said.append)
    git_dir = workspace / ".git"
    (git_dir / "index.lock").write_text("")
    (git_dir / "refs" / "remotes" / "origin").mkdir(parents=True, exist_ok=True)
    (git_dir / "refs" / "remotes" / "origin" / "main.lock").write_text("")
    origin.commit({"a.txt": "2\n"}, "two")
    said.clear()

    commit = checkout(workspace, origin.url, "main", said.append)

    assert commit.subject == "two" and (workspace / "a.txt").read_text() == "2\n"
    assert "removed .git/index.lock, left by a git that was killed" in said
    assert "removed .git/refs/remotes/origin/main.lock, left by a git that was killed" in said
    assert not list(git_dir.rglob("*.lock"))
