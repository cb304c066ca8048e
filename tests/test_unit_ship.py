"""Shipping a real service (issue 11) on scripted hosts: shared paths, setup, health
probes, batches. Fast and without root; the same promises are proved end to end over
ssh with a real HTTP app in test_ship_e2e.py.

The fake hosts run the engine's own commands in a real sh (tests/fakehost.py), so the
links, the setup commands and the probe script (a `run` probe here) are real; only
supervisord is scripted.
"""

from __future__ import annotations

import io
import itertools
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fakehost import connector, fake_config, fake_hosts
from gitorigin import make_origin, sample_service_files
from test_unit_build import (
    BASE,
    RESTART,
    SWITCH,
    Deploy,
    assert_unlocked,
    releases_a_minute_apart,
)

from relconsole import release as rel
from relconsole.config import Host, Probe, Rolling, SetupCommand, SharedPath
from relconsole.events import (
    BatchChanged,
    BatchPhase,
    BuildFinished,
    BuildStarted,
    Event,
    HostFinished,
    Output,
    RolloutPlanned,
    RunResult,
    Stage,
)
from relconsole.headless.render import TextRenderer
from relconsole.history import History
from relconsole.pipeline import run_build
from relconsole.rollout import plan_batches

HOSTS = ("h1", "h2", "h3")
#: Passes while the release holds HEALTHY (v1 does, later versions may not).
ALIVE = Probe("alive", run="test -f HEALTHY", timeout=0.5)


class Ship(Deploy):
    """A Deploy whose service can be given shared paths, setup, probes and batches."""

    def configure(self, **changes) -> None:
        service = replace(self.config.services["svc"], **changes)
        self.config = replace(self.config, services={"svc": service})

    def host_vars(self, **per_host: dict[str, str]) -> None:
        hosts = {
            name: replace(host, vars=tuple(per_host.get(name, {}).items()))
            for name, host in self.config.hosts.items()
        }
        self.config = replace(self.config, hosts=hosts)

    def shared_file(self, host: str, name: str, text: str) -> Path:
        path = self.hosts[host].path(f"{BASE}/shared/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def release_dir(self, host: str, release: str) -> Path:
        return self.hosts[host].path(f"{BASE}/releases/{release}")

    def batches(self) -> list[tuple[int, BatchPhase]]:
        return [(e.batch, e.phase) for e in self.of(BatchChanged)]


@pytest.fixture
def ship(tmp_path, monkeypatch) -> Ship:
    releases_a_minute_apart(monkeypatch)
    origin = make_origin(tmp_path / "origin")
    origin.commit({**sample_service_files("svc", BASE), "HEALTHY": "yes\n"}, "v1")
    hosts = fake_hosts(tmp_path / "hosts", *HOSTS, programs=["svc"])
    return Ship(hosts, origin, fake_config(tmp_path, hosts, origin.url))


def dead(pid_file: Path) -> bool:
    """Whether the process whose pid a setup command wrote is gone (or a zombie)."""
    pid = int(pid_file.read_text())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def verdicts_on(host) -> dict[str, str]:
    """Each release's latest verdict recorded on a fake host."""
    lines = host.path(rel.verdicts_file(BASE)).read_text().splitlines()
    return rel.parse_verdicts("".join(f"verdict={line}\n" for line in lines)) or {}


# --------------------------------------------------------------------------- shared


def test_shared_paths_are_linked_into_each_release_and_outlive_pruning(ship):
    ship.origin.commit({".env": "from the repository\n", "logs/keep.txt": "repo\n"}, "with env")
    ship.configure(
        shared=(SharedPath("logs", folder=True), SharedPath(".env", folder=False)),
        keep_releases=1,
    )
    for host in HOSTS:
        ship.shared_file(host, ".env", f"TAG={host}\n")

    first = ship.build()

    assert first.ok, first.error
    for name, host in ship.hosts.items():
        release = ship.release_dir(name, first.release)
        shared = host.path(f"{BASE}/shared")
        assert os.readlink(release / ".env") == f"{shared}/.env"
        assert os.readlink(release / "logs") == f"{shared}/logs"
        assert (release / ".env").read_text() == f"TAG={name}\n"  # the repository's is gone
        assert (shared / "logs").is_dir() and list((shared / "logs").iterdir()) == []
        (shared / "logs" / "app.log").write_text("written by the app\n")
    assert any("linked shared logs/, .env" in e.line for e in ship.of(Output))

    for version in ("v2", "v3"):  # keep_releases = 1 prunes old releases, never shared/
        ship.new_version(version)
        assert ship.build().ok
    for name, host in ship.hosts.items():
        assert first.release not in host.releases(BASE)
        assert host.path(f"{BASE}/shared/logs/app.log").read_text() == "written by the app\n"
        assert host.path(f"{BASE}/shared/.env").read_text() == f"TAG={name}\n"


def test_a_missing_shared_file_on_one_host_switches_and_restarts_nothing(ship):
    first = ship.build()
    ship.new_version("v2")
    ship.configure(shared=(SharedPath(".env", folder=False),))
    for host in ("h1", "h3"):
        ship.shared_file(host, ".env", "PORT=1\n")
    ship.forget_calls()

    finished = ship.build()

    assert finished.result is RunResult.FAILED
    assert "upload failed on h2" in finished.error
    assert f"missing shared file {ship.hosts['h2'].path(BASE)}/shared/.env" in finished.error
    assert "no host was switched" in finished.error
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    for host in ship.hosts.values():
        assert not host.ran(SWITCH) and not host.ran(RESTART)
        assert host.releases(BASE) == [first.release]
    assert not ship.hosts["h2"].path(f"{BASE}/shared/.env").exists()  # never written
    assert_unlocked(ship)


def test_a_repository_symlink_on_the_way_to_a_shared_path_is_refused(ship):
    os.symlink("/etc", ship.origin.work / "config")
    ship.origin._repo.git.add("config")
    ship.origin.commit({}, "config -> /etc")
    ship.configure(shared=(SharedPath("config/app.ini", folder=False),))
    for host in HOSTS:
        ship.shared_file(host, "config/app.ini", "x=1\n")

    finished = ship.build()

    assert finished.result is RunResult.FAILED
    assert "config is a symlink in the release" in finished.error
    assert ship.currents() == dict.fromkeys(HOSTS)


# --------------------------------------------------------------------------- setup


SETUP_RECORD = (
    'printf "%s\\n" "service=$RELCONSOLE_SERVICE" "sha=$RELCONSOLE_SHA" '
    '"release=$RELCONSOLE_RELEASE" "previous=$RELCONSOLE_PREVIOUS" "pwd=$(pwd)" '
    '"tag=$TAG" "token=${TOKEN:-none}" > setup.out; echo "set up $TAG"'
)


def test_setup_runs_in_the_new_release_with_its_environment_before_any_switch(ship, monkeypatch):
    monkeypatch.setenv("SHIP_TOKEN", "s3cret")
    ship.configure(
        setup=(SetupCommand("record", SETUP_RECORD),), secrets=(("TOKEN", "env:SHIP_TOKEN"),)
    )
    ship.host_vars(**{name: {"TAG": f"tag-{name}"} for name in HOSTS})

    first = ship.build()
    ship.new_version("v2")
    second = ship.build()

    assert first.ok and second.ok, (first.error, second.error)
    for name in HOSTS:
        for build, previous in ((first, ""), (second, first.release)):
            release = ship.release_dir(name, build.release)
            base = release.parent.parent
            record = dict(
                line.split("=", 1) for line in (release / "setup.out").read_text().splitlines()
            )
            assert record == {
                "service": "svc",
                "sha": build.sha,
                "release": str(release),
                # where current pointed while setup ran: the release it replaces
                "previous": f"{base}/releases/{previous}" if previous else "",
                "pwd": str(release),
                "tag": f"tag-{name}",
                "token": "none",  # secrets only with setup_secrets = true
            }
    said = [e for e in ship.of(Output) if e.stage == Stage.SETUP and e.line.startswith("set up")]
    assert sorted((e.host, e.line) for e in said) == [(h, f"set up tag-{h}") for h in HOSTS]
    # setup ran before the switch: the stage comes first and none of its hosts switched
    (started,) = ship.of(BuildStarted)
    assert started.stages.index(Stage.SETUP) < started.stages.index(Stage.SUPERVISOR)

    ship.configure(setup_secrets=True)
    ship.new_version("v3")
    third = ship.build()
    assert third.ok, third.error
    record = (ship.release_dir("h1", third.release) / "setup.out").read_text()
    assert "token=s3cret" in record
    assert not any("s3cret" in e.line for e in ship.of(Output))  # masked everywhere


def test_setup_failing_on_one_host_stops_the_others_and_switches_nothing(ship, tmp_path):
    first = ship.build()
    ship.new_version("v2")
    pids = tmp_path / "pids"
    pids.mkdir()
    ship.configure(
        setup=(
            SetupCommand(
                "deps",
                f'if [ "$TAG" = h2 ]; then sleep 0.3; echo "no such package" >&2; exit 4; fi; '
                f'echo $$ > {pids}/"$TAG"; exec sleep 60',
            ),
        )
    )
    ship.host_vars(**{name: {"TAG": name} for name in HOSTS})
    ship.forget_calls()

    finished = ship.build()

    assert finished.result is RunResult.FAILED
    assert finished.error == (
        "setup failed on h2: setup 'deps' failed with exit code 4 — no host was switched"
    )
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    for name, host in ship.hosts.items():
        assert not host.ran(SWITCH) and not host.ran(RESTART), name
        assert host.releases(BASE) == [first.release], name  # the new release is gone
    stopped = {e.host: e.cancelled for e in ship.of(HostFinished) if e.stage == Stage.SETUP}
    assert stopped == {"h1": True, "h2": False, "h3": True}  # stopped, not waited for
    for name in ("h1", "h3"):  # their setup was killed, not left running
        assert dead(pids / name), name
    assert any(
        e.line == "no such package" and e.host == "h2" and e.stage == Stage.SETUP
        for e in ship.of(Output)
    )
    assert_unlocked(ship)


def test_a_setup_command_past_its_timeout_is_killed_and_fails_the_build(ship, tmp_path):
    ship.configure(
        setup=(SetupCommand("slow", f"echo $$ > {tmp_path}/pid-$$; exec sleep 60", timeout=0.5),)
    )

    finished = ship.build()

    assert finished.result is RunResult.FAILED
    assert "setup 'slow' timed out after 0.5s and was killed" in finished.error
    assert ship.currents() == dict.fromkeys(HOSTS)
    for pid_file in tmp_path.glob("pid-*"):
        assert dead(pid_file)
    assert all(host.releases(BASE) == [] for host in ship.hosts.values())


def test_a_cancel_during_setup_kills_it_removes_the_release_and_is_cancelled(ship, tmp_path):
    ship.configure(
        setup=(
            SetupCommand("migrate", f"echo $$ > {tmp_path}/pid-$$; echo waiting; exec sleep 60"),
        )
    )
    cancel = threading.Event()
    waiting = itertools.count(1)

    def sink(event: Event) -> None:
        ship.events.append(event)
        if isinstance(event, Output) and event.line == "waiting" and next(waiting) == 3:
            cancel.set()

    finished = run_build(ship.config, "svc", sink, cancel, connector=connector(ship.hosts))

    assert finished.result is RunResult.CANCELLED
    assert list(tmp_path.glob("pid-*")) and all(dead(p) for p in tmp_path.glob("pid-*"))
    assert all(host.releases(BASE) == [] for host in ship.hosts.values())
    assert ship.currents() == dict.fromkeys(HOSTS)
    assert_unlocked(ship)


def test_a_cancel_between_upload_and_setup_removes_the_release(ship):
    cancel = threading.Event()

    def sink(event: Event) -> None:
        ship.events.append(event)
        if getattr(event, "stage", None) == Stage.UPLOAD and type(event).__name__ == (
            "StageFinished"
        ):
            cancel.set()

    finished = run_build(ship.config, "svc", sink, cancel, connector=connector(ship.hosts))

    assert finished.result is RunResult.CANCELLED
    assert all(host.releases(BASE) == [] for host in ship.hosts.values())


# --------------------------------------------------------------------------- health


def test_an_unhealthy_release_is_rolled_back_everywhere_with_the_probes_last_answer(ship):
    ship.configure(health=(ALIVE,))
    first = ship.build()
    assert first.ok, first.error
    ship.origin.commit({"HEALTHY": None}, "v2 lost its health")

    finished = ship.build()

    assert finished.result is RunResult.ROLLED_BACK and finished.rolled_back == first.release
    assert "health probe 'alive' never passed" in finished.error
    assert "last answer: exit 1" in finished.error
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    for host in ship.hosts.values():
        verdicts = verdicts_on(host)
        assert verdicts[finished.release] == rel.FAILED and verdicts[first.release] == rel.GOOD
        assert len(host.commands(matching=RESTART)) == 3  # build 1, build 2, rollback


def test_the_probe_script_runs_on_any_python3_and_travels_shell_quoted():
    import ast

    from relconsole.stages.health import PROBE_SOURCE

    ast.parse(PROBE_SOURCE, feature_version=(3, 6))
    assert "'" not in PROBE_SOURCE
    assert PROBE_SOURCE.isascii()  # Python 3.6 under a C locale reads -c as ASCII


def test_the_probe_script_answers_for_url_tcp_and_run(tmp_path):
    import http.server
    import socket
    import subprocess

    from relconsole.stages.health import parse_answer, probe_command, probe_input

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = (200, b"all ok") if self.path == "/healthz" else (503, b"warming up")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port, refused = server.server_address[1], closed.getsockname()[1]
    (tmp_path / "READY").write_text("")
    probes = [
        Probe("page", url=f"http://127.0.0.1:{port}/healthz", expect="ok"),
        Probe("queue", tcp=f"127.0.0.1:{port}"),
        Probe("ready", run="test -f READY && echo yes"),
        Probe("slow", url=f"http://127.0.0.1:{port}/", timeout=0.6),
    ]
    try:
        done = subprocess.run(
            ["sh", "-c", probe_command()],
            input=probe_input(probes, str(tmp_path), interval=0.2),
            capture_output=True,
            timeout=30,
        )
        gone = subprocess.run(
            ["sh", "-c", probe_command()],
            input=probe_input([Probe("db", tcp=f"127.0.0.1:{refused}", timeout=0.3)], "/"),
            capture_output=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        closed.close()

    answers = [parse_answer(line) for line in done.stdout.decode().splitlines()]
    ended = {a.probe: (a.end, a.answer) for a in answers if a.end}
    assert done.returncode == 1  # the last probe never passed
    assert ended == {
        "page": ("passed", "HTTP 200: all ok"),
        "queue": ("passed", f"connected to 127.0.0.1:{port}"),
        "ready": ("passed", "exit 0: yes"),
        "slow": ("failed", "HTTP 503: warming up"),
    }
    (last,) = [parse_answer(line) for line in gone.stdout.decode().splitlines()]
    assert gone.returncode == 1 and last.answer == "cannot connect: Connection refused"


def test_probes_are_made_per_host_with_its_vars():
    probe = Probe("http", url="http://${ADDR}:${PORT}/healthz", expect="ok")
    host = Host(name="x", address="x", vars=(("ADDR", "127.0.0.9"), ("PORT", "8001")))
    assert probe.on(host).url == "http://127.0.0.9:8001/healthz"


def test_the_doctor_names_a_host_without_its_shared_file(ship):
    from relconsole.doctor import run_doctor

    ship.configure(shared=(SharedPath("logs", folder=True), SharedPath(".env", folder=False)))
    for host in ("h1", "h3"):
        ship.shared_file(host, ".env", "PORT=1\n")

    rows = run_doctor(ship.config, [ship.config.services["svc"]], connector=connector(ship.hosts))

    shared = {r.host: (r.ok, r.detail) for r in rows if r.check == "shared of svc"}
    assert shared["h1"] == (True, "logs/, .env (folders made by a build)")
    assert shared["h2"] == (False, f"missing in {ship.hosts['h2'].path(BASE)}/shared: .env")


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize(
    ("rolling", "sizes"),
    [
        (None, [3]),
        (Rolling(hosts=1), [1, 1, 1]),
        (Rolling(hosts=2), [2, 1]),
        (Rolling(percent=25), [1, 1, 1]),
        (Rolling(percent=50), [2, 1]),
        (Rolling(percent=100), [3]),
    ],
)
def test_batches_follow_the_host_order(ship, rolling, sizes):
    hosts = list(ship.config.hosts.values())
    batches = plan_batches(hosts, rolling)
    assert [len(b) for b in batches] == sizes
    assert [h.name for b in batches for h in b] == list(HOSTS)


def test_a_canary_failing_on_host_2_rolls_host_1_back_and_never_touches_host_3(ship):
    # v2 is healthy everywhere but on h2 (its TAG); v1 is healthy everywhere.
    ship.configure(
        health=(Probe("alive", run="test -f HEALTHY || test ${TAG} != h2", timeout=0.5),),
        rolling=Rolling(hosts=1),
    )
    ship.host_vars(**{name: {"TAG": name} for name in HOSTS})
    first = ship.build()
    assert first.ok, first.error
    ship.origin.commit({"HEALTHY": None}, "v2")
    ship.forget_calls()

    finished = ship.build()

    assert finished.result is RunResult.ROLLED_BACK, finished.error
    assert "h2: health probe 'alive' never passed" in finished.error
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    h1, h2, h3 = ship.hosts.values()
    assert not h3.ran(SWITCH) and not h3.ran(RESTART)  # never reached
    assert h3.releases(BASE) == [first.release]  # its copy of the new release is gone
    for host in (h1, h2):
        assert len(host.commands(matching=SWITCH)) == 2  # to v2, back to v1
        assert len(host.commands(matching=RESTART)) == 2
        assert verdicts_on(host)[finished.release] == rel.FAILED  # never a rollback target
    (planned,) = ship.of(RolloutPlanned)
    assert planned.batches == (("h1",), ("h2",), ("h3",))
    row = History(ship.config.settings.state_dir).get("svc", 2)  # the history keeps it all
    assert list(row["stages"]) == ["checkout", "check", "upload", "setup", "supervisor", "rollback"]
    assert "[supervisor] batch 2/3 (h2): failed in " in row["log"]
    assert "[supervisor] batch 1/3 (h1): rolled back" in row["log"]
    assert ship.batches() == [
        (1, BatchPhase.SWITCHING),
        (1, BatchPhase.RESTARTING),
        (1, BatchPhase.PROBING),
        (1, BatchPhase.DONE),
        (2, BatchPhase.SWITCHING),
        (2, BatchPhase.RESTARTING),
        (2, BatchPhase.PROBING),
        (2, BatchPhase.FAILED),
        (2, BatchPhase.ROLLED_BACK),  # the failing batch goes back first
        (1, BatchPhase.ROLLED_BACK),
    ]
    assert_unlocked(ship)


def test_a_cancel_between_batches_rolls_the_switched_back_and_leaves_the_rest(ship):
    ship.configure(rolling=Rolling(hosts=1))
    first = ship.build()
    ship.new_version("v2")
    ship.configure(pause=30.0)
    ship.forget_calls()
    cancel = threading.Event()

    def sink(event: Event) -> None:
        ship.events.append(event)
        if isinstance(event, BatchChanged) and event.phase is BatchPhase.PAUSING:
            cancel.set()  # during the pause before batch 2

    started = time.monotonic()
    finished = run_build(ship.config, "svc", sink, cancel, connector=connector(ship.hosts))

    assert finished.result is RunResult.CANCELLED and finished.rolled_back == first.release
    assert time.monotonic() - started < 25  # the 30 s pause did not run out
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    h1, h2, h3 = ship.hosts.values()
    assert len(h1.commands(matching=SWITCH)) == 2
    for host in (h2, h3):
        assert not host.ran(SWITCH) and not host.ran(RESTART)
    assert ship.batches()[-3:] == [
        (2, BatchPhase.PAUSING),
        (2, BatchPhase.CANCELLED),
        (1, BatchPhase.ROLLED_BACK),
    ]


def test_a_rollback_goes_live_in_the_same_batches_with_the_same_probes(ship):
    ship.configure(health=(ALIVE,), rolling=Rolling(percent=50))
    first = ship.build()
    ship.new_version("v2")
    assert ship.build().ok

    finished = ship.rollback()

    assert finished.result is RunResult.SUCCESS, finished.error
    assert ship.currents() == dict.fromkeys(HOSTS, first.release)
    (planned,) = ship.of(RolloutPlanned)
    assert planned.batches == (("h1", "h2"), ("h3",))
    assert [b for b, phase in ship.batches() if phase is BatchPhase.DONE] == [1, 2]
    passed = [e.host for e in ship.of(Output) if "alive passed" in e.line]
    assert sorted(passed) == list(HOSTS)


# --------------------------------------------------------------------------- front ends


def test_headless_text_shows_each_batch_as_it_goes():
    out = io.StringIO()
    render = TextRenderer(out)
    render(BuildStarted("svc", "main", HOSTS, (Stage.SUPERVISOR,)))
    render(RolloutPlanned(Stage.SUPERVISOR, (("h1",), ("h2", "h3")), pause=2.0))
    for phase, seconds in ((BatchPhase.PROBING, None), (BatchPhase.DONE, 1.25)):
        render(BatchChanged(Stage.SUPERVISOR, 1, 2, ("h1",), phase, seconds=seconds))
    render(BatchChanged(Stage.SUPERVISOR, 2, 2, ("h2", "h3"), BatchPhase.PAUSING, seconds=2.0))
    render(
        BatchChanged(Stage.SUPERVISOR, 2, 2, ("h2", "h3"), BatchPhase.FAILED, 3.0, "h3: \x1b[2Jx")
    )
    render(BuildFinished(RunResult.FAILED, 5.0, "svc", error="h3: x"))

    lines = out.getvalue().splitlines()
    assert lines[1:5] == [
        "[supervisor] batch 1/2 (h1): probing",
        "[supervisor] batch 1/2 (h1): done in 1.2s",
        "[supervisor] batch 2/2 (h2, h3): pausing 2s",
        "[supervisor] batch 2/2 (h2, h3): failed in 3.0s — h3: x",
    ]


# --------------------------------------------------------------------------- config


CONFIG = """
[hosts.a]
address = "10.0.0.1"
vars = {{ PORT = "8001" }}
[hosts.b]
address = "10.0.0.2"
vars = {{ PORT = "8002" }}
[services.web]
repo = "git@example.com:acme/web.git"
hosts = ["a", "b"]
{keys}
"""


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ('shared = ["/etc/app.env"]', "key 'shared': entry '/etc/app.env' must be relative"),
        ('shared = ["a/../b"]', "key 'shared': entry 'a/../b' must not contain '..'"),
        ('shared = [""]', "key 'shared': entry '' is empty"),
        ('shared = ["logs/", "logs/app.log"]', "key 'shared': entry 'logs/app.log' overlaps"),
        (
            'health = [{ name = "x" }]',
            "key 'health' (entry 1): a probe needs exactly one of 'url', 'tcp' and 'run' "
            "(it has none of them)",
        ),
        (
            'health = [{ name = "x", url = "http://a/", run = "true" }]',
            "(it has 'url', 'run')",
        ),
        (
            'health = [{ name = "x", tcp = "a:1", port = 1 }]',
            "key 'health' (entry 1), key 'port': unknown key",
        ),
        ('health = [{ name = "x", tcp = "a" }]', "key 'tcp': expected host:port, got 'a'"),
        (
            'health = [{ name = "x", url = "http://a:${NOPE}/" }]',
            "${NOPE} has no value on host 'a'",
        ),
        ("rolling = 0", "key 'rolling': hosts per batch must be at least 1, got 0"),
        ("rolling = 3", "key 'rolling': hosts per batch must be 1 to 2"),
        ('rolling = "0%"', "key 'rolling': expected hosts per batch (an integer) or a percentage"),
        ('rolling = "150%"', "key 'rolling'"),
        ("rolling = 1.5", "key 'rolling': expected an integer (hosts per batch)"),
        ("pause = -1", "key 'pause': must be a number of seconds >= 0"),
        ('pause = "1m"', "key 'pause': expected a number"),
    ],
)
def test_each_shipping_config_error_exits_2_naming_the_service_and_key(
    tmp_path, capsys, keys, says
):
    from relconsole.cli import main

    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(keys=keys))

    code = main(["--config", str(path), "--build", "web"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "[services.web]" in err and says in err, err


def test_the_shipping_keys_of_the_documented_sample_load(tmp_path):
    from relconsole.config import load_config

    sample = Path(__file__).parent.parent / "config.toml"
    config = load_config(sample)
    shipping = [s for s in config.services.values() if s.health or s.setup or s.shared]
    assert shipping, "config.toml documents shared, setup, health, rolling and pause"


def test_json_lines_carry_the_batches_as_data():
    import json

    from relconsole.headless.render import JsonRenderer

    out = io.StringIO()
    render = JsonRenderer(out)
    render(RolloutPlanned(Stage.SUPERVISOR, (("h1",), ("h2", "h3")), pause=2.0))
    render(BatchChanged(Stage.SUPERVISOR, 2, 2, ("h2", "h3"), BatchPhase.ROLLED_BACK))

    planned, changed = (json.loads(line) for line in out.getvalue().splitlines())
    assert (planned["event"], planned["batches"], planned["pause"]) == (
        "rollout",
        [["h1"], ["h2", "h3"]],
        2.0,
    )
    assert (changed["event"], changed["batch"], changed["of"], changed["phase"]) == (
        "batch",
        2,
        2,
        "rolled back",
    )


async def test_the_build_view_shows_the_batches_as_they_go():
    from onewidget import OneWidget

    from relconsole.events import StageFinished, StageStarted
    from relconsole.ui.build_view import BuildView

    app = OneWidget(BuildView())
    async with app.run_test(size=(160, 30)) as pilot:
        bv = app.query_one(BuildView)
        bv.begin("svc", "main", list(HOSTS))
        stages = (Stage.UPLOAD, Stage.SETUP, Stage.SUPERVISOR)
        bv.apply([BuildStarted("svc", "main", HOSTS, stages)])
        await pilot.pause()
        assert not bv.rollout.display  # no rollout planned yet
        batch = [(("h1",), 1), (("h2",), 2), (("h3",), 3)]

        def change(n: int, phase: BatchPhase, **kw) -> BatchChanged:
            hosts, number = batch[n - 1]
            return BatchChanged(Stage.SUPERVISOR, number, 3, hosts, phase, **kw)

        bv.apply(
            [
                StageStarted(stage=Stage.SUPERVISOR),
                RolloutPlanned(Stage.SUPERVISOR, (("h1",), ("h2",), ("h3",)), pause=5.0),
                change(1, BatchPhase.SWITCHING),
                change(1, BatchPhase.PROBING),
            ]
        )
        await pilot.pause()
        pane = bv.host_logs(Stage.SUPERVISOR)
        assert bv.rollout.display
        assert [bv.rollout.phase_of(n) for n in (1, 2, 3)] == [
            BatchPhase.PROBING,
            BatchPhase.WAITING,
            BatchPhase.WAITING,
        ]
        text = bv.rollout.content.plain
        assert "rolling, 3 batches, 5s apart" in text
        assert "1 h1 probing" in text and "3 h3 waiting" in text
        assert pane.states == {"h1": "running", "h2": "pending", "h3": "pending"}
        assert pane.logs["h1"].text[-1] == "── batch 1/3 (h1): probing"

        bv.apply(
            [
                HostFinished(Stage.SUPERVISOR, "h1", True, 1.0),
                change(1, BatchPhase.DONE, seconds=1.5),
                change(2, BatchPhase.PAUSING, seconds=5.0),
                change(2, BatchPhase.SWITCHING),
                change(2, BatchPhase.FAILED, seconds=2.0, error="h2: [red]sick[/]"),
                HostFinished(Stage.SUPERVISOR, "h2", False, 1.0, error="[red]sick[/]"),
                StageFinished(Stage.SUPERVISOR, ok=False, seconds=9, error="h2: sick"),
                change(2, BatchPhase.ROLLED_BACK),
                change(1, BatchPhase.ROLLED_BACK),
            ]
        )
        await pilot.pause()
        assert [bv.rollout.phase_of(n) for n in (1, 2, 3)] == [
            BatchPhase.ROLLED_BACK,
            BatchPhase.ROLLED_BACK,
            BatchPhase.WAITING,
        ]
        assert pane.states == {"h1": "ok", "h2": "failed", "h3": "skipped"}  # h3: never reached
        assert "── batch 2/3 (h2): failed in 2.0s — h2: [red]sick[/]" in pane.logs["h2"].text
        assert not any("batch" in line for line in pane.logs["h3"].text)


async def test_the_rollout_bar_never_splits_a_batch_from_its_phase_at_80_columns():
    """Each batch moves to the next line whole; before, an 80-column console showed
    "✔ 2 web-02" with its "done" alone on the line below."""
    from onewidget import OneWidget

    from relconsole.ui.rollout_bar import RolloutBar

    batches = (("web-01",), ("web-02", "web-03"), ("web-04", "web-05"))

    app = OneWidget(RolloutBar())
    async with app.run_test(size=(80, 24)) as pilot:
        bar = app.query_one(RolloutBar)
        bar.plan(RolloutPlanned(Stage.SUPERVISOR, batches, pause=2.0))
        for number in (1, 2, 3):
            bar.change(
                BatchChanged(Stage.SUPERVISOR, number, 3, batches[number - 1], BatchPhase.DONE)
            )
        await pilot.pause()
        lines = [strip.text.strip() for strip in bar.render_lines(bar.content_region.reset_offset)]
        shown = [line for line in lines if line]
        assert len(shown) == 2, shown  # it does wrap at this width
        for number, hosts in enumerate(batches, 1):
            cell = f"✔ {number} {', '.join(hosts)} done"
            assert any(cell in line for line in shown), (cell, shown)

        await pilot.resize_terminal(160, 24)  # wider: one line again
        await pilot.pause()
        lines = [strip.text.strip() for strip in bar.render_lines(bar.content_region.reset_offset)]
        assert len([line for line in lines if line]) == 1
