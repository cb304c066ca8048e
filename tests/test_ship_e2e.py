"""Shipping a real web service on the bed (issue 11): shared files, setup on the hosts,
health probes made from the hosts, rolling restarts.

Every bed host runs the sample HTTP app (tests/gitorigin.py web_service_files) under
its own supervisord, listening on the host's own loopback address, with its `.env`
(address, port, tag) and `logs/` kept in the host's shared folder.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from balancer import Balancer, get
from deployconfig import PORT, update_service, write_ship_config
from gitorigin import web_service_files
from test_build_e2e import build, current_release, output_of, releases
from test_safety_e2e import start_cli, wait_for_line

from relconsole.config import load_config
from relconsole.events import BatchChanged, BatchPhase, Event, HostFinished, RunResult, Stage
from relconsole.pipeline import run_build

PATH = "/srv/svc"
HEALTH = [
    {"name": "http", "url": "http://${ADDRESS}:${PORT}/healthz", "expect": "ok", "timeout": 4}
]


def ship_config(tmp_path: Path, bed, origin, **options):
    return write_ship_config(tmp_path, bed, origin.url, **options)


def v1_live(tmp_path: Path, bed, origin, then: str, **service):
    """v1 built and live on every host, then version ``then`` committed: the config,
    the first build and each host's program pid."""
    origin.commit(web_service_files("svc", PATH, "v1"), "v1")
    config = ship_config(tmp_path, bed, origin, **service)
    first, _ = build(config)
    assert first.ok, first.error
    before = pids(bed)
    origin.commit({"VERSION": then + "\n"}, then)
    return config, first, before


def batches(events: list[Event]) -> list[tuple[int, BatchPhase]]:
    return [(e.batch, e.phase) for e in events if isinstance(e, BatchChanged)]


def pids(bed) -> dict[str, int | None]:
    return {h.name: h.program_pid("svc") for h in bed.hosts}


SHIPPED = {
    "shared": ["logs/", ".env"],
    "setup": [
        {"name": "stamp", "run": 'echo "built $RELCONSOLE_SHA" > BUILD_STAMP'},
        {
            "name": "record",
            # printenv: exported, as the command's own children see them
            "run": "for v in PREVIOUS RELEASE SERVICE SHA; do "
            'echo "RELCONSOLE_$v=$(printenv RELCONSOLE_$v)"; done > setup.env; '
            "pwd > setup.pwd; id -un >> setup.pwd",
        },
    ],
    "health": HEALTH,
    "rolling": 1,
}


# --------------------------------------------------------------------------- it ships


def test_a_web_service_ships_with_its_shared_files_setup_probes_and_batches(bed, origin, tmp_path):
    sha = origin.commit(web_service_files("svc", PATH, "v1"), "v1")
    config = ship_config(
        tmp_path, bed, origin, host_settings={"user": "deploy", "sudo": True}, **SHIPPED
    )

    finished, events = build(config)

    assert finished.ok, finished.error
    for host in bed.hosts:
        assert current_release(host) == finished.release
        release = host.path(f"{PATH}/releases/{finished.release}")
        shared = f"{PATH}/shared"
        assert os.readlink(release / ".env") == f"{shared}/.env"
        assert os.readlink(release / "logs") == f"{shared}/logs"
        assert get(host, PORT) == (200, f"{host.name} v1 {sha} built {sha}")
        assert get(host, PORT, "/healthz") == (200, "ok")
        log = host.path(f"{shared}/logs/access.log").read_text()
        assert "/healthz 200" in log  # the probe, made from the host, reached the app
        # setup ran in the new release, with its environment, through sudo
        assert (release / "setup.pwd").read_text().split() == [
            f"{PATH}/releases/{finished.release}",
            "root",
        ]
        assert (release / "setup.env").read_text().splitlines() == [
            "RELCONSOLE_PREVIOUS=",
            f"RELCONSOLE_RELEASE={PATH}/releases/{finished.release}",
            "RELCONSOLE_SERVICE=svc",
            f"RELCONSOLE_SHA={sha}",
        ]
        assert any("http passed" in line for line in output_of(events, "supervisor", host.name))
        setup = output_of(events, "setup", host.name)
        assert any(line.startswith("stamp done in") for line in setup), setup
    assert batches(events) == [
        (n, phase)
        for n in (1, 2, 3)
        for phase in (
            BatchPhase.SWITCHING,
            BatchPhase.RESTARTING,
            BatchPhase.PROBING,
            BatchPhase.DONE,
        )
    ]

    previous = finished.release
    origin.commit({"VERSION": "v2\n"}, "v2")
    second, _ = build(config)
    assert second.ok, second.error
    for host in bed.hosts:
        env = host.path(f"{PATH}/releases/{second.release}/setup.env").read_text()
        assert f"RELCONSOLE_PREVIOUS={PATH}/releases/{previous}" in env
        assert get(host, PORT)[1].startswith(f"{host.name} v2 ")


def test_a_missing_shared_folder_is_made_empty(bed, origin, tmp_path):
    origin.commit({**web_service_files("svc", PATH), "logs/old.log": "from git\n"}, "v1")
    config = ship_config(tmp_path, bed, origin, shared=["logs/", ".env"])

    finished, _ = build(config)

    assert finished.ok, finished.error
    for host in bed.hosts:
        folder = host.path(f"{PATH}/shared/logs")
        assert folder.is_dir() and list(folder.iterdir()) == []  # made, empty
        link = host.path(f"{PATH}/releases/{finished.release}/logs")
        assert os.readlink(link) == f"{PATH}/shared/logs"  # it replaced the repository's logs/
        assert not (folder / "old.log").exists()


def test_a_missing_shared_file_on_one_host_switches_and_restarts_nothing(bed, origin, tmp_path):
    config, first, before = v1_live(tmp_path, bed, origin, "v2", shared=["logs/", ".env"])
    bed.host("h2").path(f"{PATH}/shared/.env").unlink()

    finished, events = build(config)

    assert finished.result is RunResult.FAILED
    assert f"h2: linking shared failed (exit 3): missing shared file {PATH}/shared/.env" in (
        finished.error
    )
    assert "no host was switched" in finished.error
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert releases(host) == [first.release]
    assert pids(bed) == before
    assert not bed.host("h2").path(f"{PATH}/shared/.env").exists()  # never written


# --------------------------------------------------------------------------- setup


def test_setup_failing_on_one_host_switches_none_restarts_none_and_kills_the_rest(
    bed, origin, tmp_path
):
    config, first, before = v1_live(tmp_path, bed, origin, "v2", shared=[".env"])
    update_service(
        config,
        setup=[
            {
                "name": "migrate",
                "run": 'if [ "$ADDRESS" = "'
                + bed.host("h2").address
                + '" ]; then sleep 0.5; echo "migration 7 failed" >&2; exit 5; fi; '
                f"echo $$ > {PATH}/shared/setup.pid; exec sleep 120",
            }
        ],
    )

    finished, events = build(config)

    assert finished.result is RunResult.FAILED
    assert finished.error == (
        "setup failed on h2: setup 'migrate' failed with exit code 5 — no host was switched"
    )
    assert "migration 7 failed" in output_of(events, "setup", "h2")
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert releases(host) == [first.release]  # the new one is gone everywhere
    assert pids(bed) == before  # nothing restarted
    stopped = {
        e.host: e.cancelled for e in events if isinstance(e, HostFinished) and e.stage == "setup"
    }
    assert stopped == {"h1": True, "h2": False, "h3": True}  # stopped, not waited for
    for name in ("h1", "h3"):  # their setup was still running: it was killed on the host
        pid = int(bed.host(name).path(f"{PATH}/shared/setup.pid").read_text())
        assert not alive(pid), name


def test_ctrl_c_during_setup_kills_it_on_every_host_and_exits_130(bed, origin, tmp_path):
    config, first, before = v1_live(tmp_path, bed, origin, "v2", shared=[".env"])
    update_service(
        config,
        setup=[
            {
                "name": "assets",
                "run": f"echo $$ > {PATH}/shared/setup.pid; echo building; exec sleep 120",
            }
        ],
    )
    proc = start_cli("--config", str(config), "--build", "svc")
    building: set[str] = set()
    while building != {"h1", "h2", "h3"}:  # every host's setup is running
        line = wait_for_line(proc, "] building")[-1]
        building.add(line.split()[1].rstrip("]"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert "BUILD CANCELLED" in out
    for host in bed.hosts:
        assert not alive(int(host.path(f"{PATH}/shared/setup.pid").read_text())), host.name
        assert current_release(host) == first.release
        assert releases(host) == [first.release]
    assert pids(bed) == before


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --------------------------------------------------------------------------- health


def test_an_unhealthy_release_is_rolled_back_everywhere_showing_the_last_answer(
    bed, origin, tmp_path
):
    config, first, _ = v1_live(
        tmp_path, bed, origin, "sick", shared=["logs/", ".env"], health=HEALTH
    )

    finished, events = build(config)

    assert finished.result is RunResult.ROLLED_BACK and finished.rolled_back == first.release
    assert "health probe 'http' never passed" in finished.error
    assert "last answer: HTTP 503: sick" in finished.error
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert get(host, PORT)[1].startswith(f"{host.name} v1 ")  # restarted on v1, answering
    assert [e for e in events if getattr(e, "stage", None) == Stage.ROLLBACK]


def test_a_canary_failing_on_h2_rolls_h1_back_and_never_restarts_h3(bed, origin, tmp_path):
    config, first, before = v1_live(
        tmp_path, bed, origin, "sick-on-h2", shared=["logs/", ".env"], health=HEALTH, rolling=1
    )

    finished, events = build(config)

    assert finished.result is RunResult.ROLLED_BACK, finished.error
    assert "h2: health probe 'http' never passed" in finished.error
    assert bed.host("h3").program_pid("svc") == before["h3"]  # never restarted
    assert current_release(bed.host("h3")) == first.release
    assert releases(bed.host("h3")) == [first.release]
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert get(host, PORT)[1].startswith(f"{host.name} v1 ")
    for name in ("h1", "h2"):
        assert bed.host(name).program_pid("svc") not in (None, before[name])
    assert (3, BatchPhase.SWITCHING) not in batches(events)


def test_a_cancel_between_batches_rolls_back_the_switched_hosts_only(bed, origin, tmp_path):
    config, first, before = v1_live(
        tmp_path, bed, origin, "v2", shared=["logs/", ".env"], rolling=1
    )
    update_service(config, pause=60)
    cancel = threading.Event()
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, BatchChanged) and event.phase is BatchPhase.PAUSING:
            cancel.set()

    finished = run_build(load_config(config), "svc", sink, cancel)

    assert finished.result is RunResult.CANCELLED and finished.rolled_back == first.release
    for host in bed.hosts:
        assert current_release(host) == first.release
        assert get(host, PORT)[1].startswith(f"{host.name} v1 ")
    assert bed.host("h1").program_pid("svc") not in (None, before["h1"])  # there and back
    for name in ("h2", "h3"):
        assert bed.host(name).program_pid("svc") == before[name]
    assert batches(events)[-2:] == [(2, BatchPhase.CANCELLED), (1, BatchPhase.ROLLED_BACK)]


# --------------------------------------------------------------------------- no downtime


def test_a_balanced_client_always_finds_a_host_answering_during_a_rolling_build(
    bed, origin, tmp_path
):
    # The app takes 0.5 s to listen once started: restarting every host at once leaves
    # the client with no host for a while, and the client notices (the last build).
    config, _, before = v1_live(
        tmp_path, bed, origin, "v2", shared=[".env"], health=HEALTH, rolling=1, start_delay=0.5
    )

    with Balancer(bed.hosts, PORT) as client:
        finished, _ = build(config)

    assert finished.ok, finished.error
    assert all(pids(bed)[h] not in (None, before[h]) for h in before)  # every host restarted
    assert client.rounds > 20 and client.missed == []
    assert client.seen == {"v1", "v2"}

    origin.commit({"VERSION": "v3\n"}, "v3")
    update_service(config, rolling=None)
    with Balancer(bed.hosts, PORT) as all_at_once:
        finished, _ = build(config)
    assert finished.ok, finished.error
    assert all_at_once.missed, "all hosts restarted at once: some rounds found none answering"
