"""Issue 13's engine on scripted hosts (tests/fakehost.py): --plan, --run, the
notifications' delivery and the guardrails' config. Fast and without root; the same
behaviours are proved over ssh in test_operate_e2e.py (the bed tier)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fakehost import connector, fake_config, fake_hosts
from gitorigin import make_origin, sample_service_files

from relconsole import lock as lk
from relconsole.adhoc import command_line, run_adhoc
from relconsole.config import ConfigError, parse_config
from relconsole.errors import Cancelled
from relconsole.events import BuildStarted, HostFinished, Occasion, Output, RunResult
from relconsole.history import History
from relconsole.hosts.base import CommandTimedOut
from relconsole.hosts.local_command import run_local
from relconsole.notify import Delivery, Postman, RunFacts, _Refused, body, slack_text
from relconsole.pipeline import BranchRefused, run_build
from relconsole.plan import read_plan
from relconsole.stages.upload import match_tree

BASE = "/srv/svc"
CONF = "deploy/supervisor/svc.conf"


@pytest.fixture
def fleet(tmp_path):
    """Two fake hosts running v1 of the sample service, and its origin."""
    origin = make_origin(tmp_path / "origin")
    origin.commit(sample_service_files("svc", BASE), "v1")
    hosts = fake_hosts(tmp_path / "hosts", "h1", "h2", programs=["svc"])
    config = fake_config(tmp_path, hosts, origin.url)
    finished = run_build(config, "svc", lambda e: None, connector=connector(hosts))
    assert finished.ok, finished.error
    return config, hosts, origin


def snapshot(hosts) -> dict:
    """Every file and link under each host's root: what "changes nothing" compares."""
    found = {}
    for name, host in hosts.items():
        for path in sorted(host.root.rglob("*")):
            key = (name, str(path.relative_to(host.root)))
            found[key] = os.readlink(path) if path.is_symlink() else path.is_dir()
    return found


# --------------------------------------------------------------------------- --plan


def test_match_tree_selects_what_path_glob_selects(tmp_path):
    files = [
        "deploy/supervisor/a.conf",
        "deploy/supervisor/.hidden.conf",
        "deploy/supervisor/sub/b.conf",
        "deploy/other.conf",
        "top.conf",
        "x/y/z/deep.conf",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    for pattern in [
        "deploy/supervisor/*.conf",
        "deploy/**/*.conf",
        "**/*.conf",
        "*.conf",
        "deploy/supervisor/[ab].conf",
        "deploy/*/?.conf",
        "./top.conf",
        "deploy/**",
    ]:
        expected = sorted(
            str(p.relative_to(tmp_path)) for p in tmp_path.glob(pattern) if p.is_file()
        )
        assert match_tree(files, pattern) == expected, pattern


def test_plan_lists_the_pending_commit_its_files_and_the_conf_diff_and_changes_nothing(fleet):
    config, hosts, origin = fleet
    files = sample_service_files("svc", BASE, "v2")
    files[CONF] = files[CONF].replace("startsecs=1", "startsecs=3")
    sha = origin.commit(files, "v2: slower start \x1b]0;pwned\x07")
    before = snapshot(hosts)

    plan = read_plan(config, "svc", connector=connector(hosts))

    assert plan.complete and plan.sha == sha and plan.lock is None
    assert plan.subject == "v2: slower start "  # the escape sequence stripped
    (group,) = plan.groups
    assert group.hosts == ("h1", "h2")
    assert [c.sha for c in group.commits] == [sha]
    assert "VERSION" in group.diffstat and "svc.conf" in group.diffstat
    (conf,) = plan.files
    assert (conf.name, conf.change, conf.hosts) == ("svc.conf", "changed", ("h1", "h2"))
    assert "-startsecs=1\n+startsecs=3\n" in conf.diff
    assert [(p.name, p.action) for p in plan.programs] == [
        ("svc", "update: config changed"),
        ("svc", "restart"),
    ]
    assert snapshot(hosts) == before  # no lock taken, nothing switched or written
    assert all(not h.path(f"{BASE}/{lk.LOCK_DIR}").exists() for h in hosts.values())


def test_plan_shows_hosts_on_other_releases_apart_and_names_who_holds_the_lock(fleet):
    config, hosts, origin = fleet
    origin.commit({"VERSION": "v2\n"}, "v2")
    assert run_build(
        config, "svc", lambda e: None, connector=connector(hosts), only_hosts=["h1"]
    ).ok
    sha3 = origin.commit({"VERSION": "v3\n"}, "v3")
    holder = lk.LockInfo("alice", "laptop", 42, time.time(), "main")
    hosts["h2"].path(f"{BASE}/{lk.LOCK_DIR}").mkdir()
    hosts["h2"].path(f"{BASE}/{lk.LOCK_DIR}/info").write_text(holder.to_json())

    plan = read_plan(config, "svc", connector=connector(hosts))

    assert [g.hosts for g in plan.groups] == [("h1",), ("h2",)]
    h1, h2 = plan.groups
    assert [c.sha for c in h1.commits] == [sha3]
    assert [c.subject for c in h2.commits] == ["v3", "v2"]
    assert plan.lock is not None and "alice@laptop" in plan.lock and "h2" in plan.lock
    assert plan.files[0].change == "unchanged"  # only VERSION moved


def test_plan_names_a_host_it_could_not_read(fleet):
    config, hosts, _ = fleet
    hosts["h2"].reachable = False

    plan = read_plan(config, "svc", connector=connector(hosts))

    assert not plan.complete and plan.unreadable == ["h2"]
    assert any(p.startswith("h2: ") and "Connection refused" in p for p in plan.problems)
    assert [g.hosts for g in plan.groups] == [("h1",)]


def test_a_branch_the_service_may_not_deploy_is_refused_before_anything(fleet, tmp_path):
    config, hosts, _ = fleet
    service = replace(config.services["svc"], branches=("main", "release/*"))
    limited = replace(config, services={"svc": service})
    for h in hosts.values():
        h.calls.clear()
    with pytest.raises(BranchRefused, match="may not deploy branch 'feature'"):
        run_build(limited, "svc", lambda e: None, branch="feature", connector=connector(hosts))
    assert not any(h.calls for h in hosts.values())
    assert limited.services["svc"].allows_branch("release/1.2")


# --------------------------------------------------------------------------- --run


def test_run_streams_each_hosts_lines_and_records_exit_statuses(fleet):
    config, hosts, _ = fleet
    hosts["h2"].path(f"{BASE}/current/FAIL").write_text("")
    events = []

    finished = run_adhoc(
        config,
        "svc",
        ["sh", "-c", 'cat VERSION; test ! -e FAIL || { echo "bad $0" >&2; exit 3; }', "it's"],
        events.append,
        connector=connector(hosts),
    )

    assert finished.result is RunResult.FAILED and finished.error == "h2: exit 3"
    lines = {(e.host, e.stream, e.line) for e in events if isinstance(e, Output)}
    assert {("h1", "out", "v1"), ("h2", "out", "v1"), ("h2", "err", "bad it's")} <= lines
    done = {e.host: (e.ok, e.exit_code) for e in events if isinstance(e, HostFinished)}
    assert done == {"h1": (True, 0), "h2": (False, 3)}
    (started,) = [e for e in events if isinstance(e, BuildStarted)]
    assert started.action == "run" and started.command == command_line(
        ["sh", "-c", 'cat VERSION; test ! -e FAIL || { echo "bad $0" >&2; exit 3; }', "it's"]
    )
    (row,) = History(config.settings.state_dir).list("svc", limit=1)
    assert (row["action"], row["result"], row["command"]) == ("run", "failed", started.command)
    full = History(config.settings.state_dir).get("svc", row["number"])
    assert full["host_results"]["h2"]["run"]["exit"] == 3
    assert full["host_results"]["h1"]["run"]["exit"] == 0


def test_run_on_an_unreachable_host_fails_that_host_and_runs_the_others(fleet):
    config, hosts, _ = fleet
    hosts["h1"].reachable = False
    events = []

    finished = run_adhoc(config, "svc", ["true"], events.append, connector=connector(hosts))

    assert not finished.ok and finished.error.startswith("h1: cannot connect")
    assert {e.host: e.ok for e in events if isinstance(e, HostFinished)} == {
        "h1": False,
        "h2": True,
    }


def test_run_where_nothing_is_deployed_says_so(tmp_path):
    hosts = fake_hosts(tmp_path / "hosts", "h1", programs=["svc"])
    config = fake_config(tmp_path, hosts, str(tmp_path / "nowhere"))

    finished = run_adhoc(config, "svc", ["true"], lambda e: None, connector=connector(hosts))

    assert finished.error == "h1: nothing deployed here (no current release)"


def test_a_cancelled_run_kills_the_commands_on_every_host(fleet):
    config, hosts, _ = fleet
    cancel = threading.Event()
    pids = [h.path(f"{BASE}/current/pid") for h in hosts.values()]
    events = []
    done = []

    def work():
        done.append(
            run_adhoc(
                config,
                "svc",
                ["sh", "-c", "echo $$ > pid; exec sleep 60"],
                events.append,
                cancel,
                connector=connector(hosts),
            )
        )

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 10
    while not all(p.exists() and p.read_text().strip() for p in pids):
        assert time.monotonic() < deadline, "the commands did not start"
        time.sleep(0.02)
    cancel.set()
    worker.join(10)

    assert not worker.is_alive() and done[0].result is RunResult.CANCELLED
    for pid_file in pids:
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
            assert time.monotonic() < deadline, f"{pid} still runs after the cancel"
            time.sleep(0.02)
    assert all(e.cancelled for e in events if isinstance(e, HostFinished))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_local_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    started = time.monotonic()
    with pytest.raises(CommandTimedOut):
        run_local("h", f"sleep 30 & echo $! > {tmp_path}/child; wait", timeout=0.5)
    assert time.monotonic() - started < 10
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and _state(child) != "Z":
        assert time.monotonic() < deadline, "the background child outlived the timeout"
        time.sleep(0.02)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_local("h", "sleep 30", timeout=60, on_line=None, stop=cancel)


# --------------------------------------------------------------------------- notifications


def facts(result=Occasion.FAILED, **kwargs) -> RunFacts:
    base = dict(
        service="svc",
        action="build",
        result=result,
        user="alice@box",
        trigger="headless",
        branch="main",
        hosts=("h1", "h2"),
        sha="1a2b3c4d5e6f",
        started=1_780_000_000.0,
        finished=1_780_000_012.5,
        duration=12.5,
        error="check 'tests' failed <@channel>",
    )
    base.update(kwargs)
    return RunFacts(**base)


def target(fmt="json", on=tuple(Occasion), url="env:HOOK"):
    from relconsole.config import NotifyTarget

    return NotifyTarget(name="team", url=url, on=tuple(on), format=fmt)


def test_the_json_body_says_what_happened_and_slack_escapes_remote_words():
    import json

    data = json.loads(body(target(), facts()))
    assert data["result"] == "failed" and data["service"] == "svc"
    assert data["hosts"] == ["h1", "h2"] and data["user"] == "alice@box"
    assert data["started"] == "2026-05-28T20:26:40+00:00" and data["duration"] == 12.5
    assert data["error"] == "check 'tests' failed <@channel>" and data["sha"] == "1a2b3c4d5e6f"
    slack = json.loads(body(target("slack"), facts()))
    assert "&lt;@channel&gt;" in slack["text"] and "<@channel>" not in slack["text"]
    assert slack_text(facts(Occasion.SUCCESS, error=None)).startswith(":white_check_mark: *svc*")


def postman_with(answers: list, **kwargs) -> tuple[Postman, list, list]:
    """A postman whose attempts answer from ``answers`` (None: delivered, else an
    exception to raise); the URLs it was given, and what it delivered."""
    tried: list[str] = []
    delivered: list[Delivery] = []

    def poster(url: str, data: bytes, timeout: float) -> None:
        tried.append(url)
        answer = answers.pop(0) if answers else None
        if answer is not None:
            raise answer

    postman = Postman(on_delivered=delivered.append, poster=poster, backoff=(0.01, 0.01), **kwargs)
    return postman, tried, delivered


def test_a_failing_endpoint_is_tried_three_times_then_reported_without_the_url(monkeypatch):
    monkeypatch.setenv("HOOK", "https://hooks.example.invalid/services/T0/B0/s3cr3t")
    url = "https://hooks.example.invalid/services/T0/B0/s3cr3t"
    postman, tried, delivered = postman_with([_Refused(f"HTTP 500 at {url}")] * 5)

    postman.send(target(), Occasion.FAILED, "svc", b"{}")

    assert postman.wait(5) == 0
    assert tried == ["https://hooks.example.invalid/services/T0/B0/s3cr3t"] * 3
    (d,) = delivered
    assert (d.ok, d.attempts) == (False, 3)
    assert "s3cr3t" not in d.describe() and "HTTP 500" in d.describe()


def test_a_refusal_that_will_not_pass_is_not_retried_and_a_missing_url_is_said(monkeypatch):
    monkeypatch.setenv("HOOK", "https://hooks.example.invalid/x")
    postman, tried, delivered = postman_with([_Refused("HTTP 404 Not Found", retry=False)])
    postman.send(target(), Occasion.FAILED, "svc", b"{}")
    monkeypatch.delenv("HOOK")
    postman.send(target(), Occasion.FAILED, "svc", b"{}")
    assert postman.wait(5) == 0
    assert len(tried) == 1
    assert sorted(d.error for d in delivered) == [
        "HTTP 404 Not Found",
        "environment variable HOOK is not set",
    ]


def test_a_real_endpoint_that_answers_500_or_refuses_is_described_by_type():
    import http.server
    import socket

    class Five(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Five)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
    delivered: list[Delivery] = []
    postman = Postman(on_delivered=delivered.append, backoff=(0.01, 0.01))
    try:
        postman.send(
            target(url=f"http://127.0.0.1:{server.server_port}/hook"), Occasion.FAILED, "s", b"{}"
        )
        postman.send(
            target(url=f"http://127.0.0.1:{refused_port}/hook"), Occasion.FAILED, "s", b"{}"
        )
        assert postman.wait(10) == 0
    finally:
        server.shutdown()
    assert sorted((d.attempts, d.error) for d in delivered) == [
        (3, "HTTP 500 Internal Server Error"),
        (3, "connection refused"),
    ]


# --------------------------------------------------------------------------- config

HOSTS = '[hosts.web1]\naddress = "10.0.0.11"\n[services.api]\nrepo = "r"\nhosts = ["web1"]\n'


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(HOSTS + text, Path("/etc/rc/config.toml"))
    return str(info.value)


def test_guardrail_and_notify_keys_are_read_strictly():
    config = parse_config(
        HOSTS
        + 'confirm = true\nbranches = ["main", "release/*"]\n'
        + '[notify.team]\nurl = "env:HOOK"\non = ["failed", "rolled_back"]\nformat = "slack"\n'
        + 'services = ["api"]\n',
        Path("/etc/rc/config.toml"),
    )
    api, team = config.services["api"], config.notify["team"]
    assert api.confirm and api.branches == ("main", "release/*")
    assert api.allows_branch("release/2.0") and not api.allows_branch("feature/x")
    assert team.on == (Occasion.FAILED, Occasion.ROLLED_BACK) and team.format == "slack"
    assert team.wants("api", Occasion.FAILED) and not team.wants("api", Occasion.SUCCESS)
    assert config.warnings == ()
    assert parse_config(HOSTS, Path("/x.toml")).notify == {}

    assert "unknown event 'done'" in config_error('[notify.t]\nurl = "env:H"\non = ["done"]\n')
    assert "must be one of json, slack" in config_error('[notify.t]\nurl="env:H"\nformat="xml"\n')
    assert "unknown service 'web'" in config_error('[notify.t]\nurl="env:H"\nservices=["web"]\n')
    assert "[services.api] key 'branches'" in config_error('branches = ["bad branch"]\n')


def test_a_url_in_the_config_is_warned_about_and_never_quoted():
    secret = "https://hooks.slack.invalid/services/T0/B0/s3cr3t"
    config = parse_config(HOSTS + f'[notify.t]\nurl = "{secret}"\n', Path("/x.toml"))
    (warning,) = config.warnings
    assert "[notify.t] key 'url'" in warning and "s3cr3t" not in warning
    message = config_error('[notify.t]\nurl = "ftp://s3cr3t.invalid/"\n')
    assert "[notify.t] key 'url'" in message and "s3cr3t" not in message


# --------------------------------------------------------------------------- the log, by offset


class LogServer:
    """The status helper's ``Server`` with supervisord's own log functions behind it
    (supervisor.options.tailFile / readFile on a real file, decoding as supervisord
    does: bytes that end inside a character make it answer 500)."""

    def __new__(cls, path: Path):
        import importlib.util

        from supervisor.compat import as_string
        from supervisor.options import readFile, tailFile

        spec = importlib.util.spec_from_file_location(
            "helper", Path(__file__).parent.parent / "relconsole/status/remote_helper.py"
        )
        helper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helper)

        class Server(helper.Server):
            def call(self, method, name, offset, length):
                if method.startswith("supervisor.tail"):
                    return tailFile(str(path), offset, length)
                try:
                    return as_string(readFile(str(path), offset, length))
                except UnicodeDecodeError:
                    raise helper.Refused(500, "Internal Server Error") from None

        return Server("unix:///nowhere")


def test_the_helper_reads_a_log_from_an_offset_and_never_loses_a_byte(tmp_path):
    from relconsole.status.fastpath import LogChunk

    log = tmp_path / "prog.out.log"
    log.write_bytes(b"")
    server = LogServer(log)
    first = server.tail("stdout", "prog", -1, 100)
    assert (first["text"], first["offset"], first["size"]) == ("", 0, 0)
    written = "".join(f"line {n} é\n" for n in range(50)).encode()  # 2-byte characters
    log.write_bytes(written)
    got, offset = b"", 0
    while offset < len(written):  # small reads: most end inside a line, some in a character
        chunk = LogChunk(
            **{k: v for k, v in server.tail("stdout", "prog", offset, 7).items() if k != "ok"}
        )
        assert chunk.start == offset and 0 < chunk.offset - offset <= 7
        got += chunk.text.encode()
        offset = chunk.offset
    assert got == written and not chunk.more
    log.write_bytes(b"new\n")  # rotated: shorter than where we were
    again = server.tail("stdout", "prog", offset, 100)
    assert again["rotated"] and again["text"] == "new\n" and again["offset"] == 4
    tail = server.tail("stdout", "prog", -1, 3)  # the last bytes, from mid-line
    assert (tail["start"], tail["text"]) == (1, "ew\n")


def test_the_pane_shows_whole_lines_and_drops_the_first_ones_start():
    from relconsole.status.fastpath import LogChunk
    from relconsole.ui.program_tail import split_chunk

    lines, rest = split_chunk("", LogChunk("ne 1\nline 2\nli", 10, 22, 22), first=True)
    assert (lines, rest) == (["line 2"], "li")  # "ne 1" began before the window
    lines, rest = split_chunk(rest, LogChunk("ne 3\n\x1b[31mred\x1b[0m\n", 22, 40, 40), first=False)
    assert (lines, rest) == (["line 3", "red"], "")
