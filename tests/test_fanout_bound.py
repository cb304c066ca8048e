"""``[settings] max_parallel`` bounds every fan-out over hosts: with it at 2, no more
than 2 of 4 scripted hosts (tests/fakehost.py) are worked on at once by a build, a
status poll, a rollback, --doctor, --run, --plan, --unlock, or reading locks, releases
and what the hosts run; and still 2 at once (the bound is not a serialisation)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from fakehost import FakeHost, connector, fake_config, fake_hosts
from gitorigin import make_origin, sample_service_files

from relconsole.adhoc import run_adhoc
from relconsole.config import Config
from relconsole.deployed import read_deployed
from relconsole.doctor import run_doctor
from relconsole.hosts.connect import Connector
from relconsole.lock import remote_locks
from relconsole.pipeline import force_unlock, run_build, run_rollback
from relconsole.plan import read_plan
from relconsole.rollback import read_releases
from relconsole.status.poller import StatusPoller

HOSTS = ("h1", "h2", "h3", "h4")
BOUND = 2
#: How long each command and connection is held: long enough for hosts worked on at
#: the same time to overlap, short enough for a fast test.
HOLD = 0.01


class Gauge:
    """Counts the hosts with a command (or a connection being opened) in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self.peak = 0

    def hold(self, host: str) -> None:
        with self._lock:
            self._active[host] = self._active.get(host, 0) + 1
            self.peak = max(self.peak, sum(1 for n in self._active.values() if n))
        time.sleep(HOLD)
        with self._lock:
            self._active[host] -= 1

    def watch(self, fake: FakeHost) -> None:
        fake.on(r"", lambda call, _t: self.hold(fake.name))  # None: then run as usual

    def connector(self, hosts: dict[str, FakeHost]) -> Connector:
        inner = connector(hosts)

        def connect(host, settings):
            self.hold(host.name)
            return inner(host, settings)

        return connect


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Four scripted hosts that ran two builds (a release to roll back to), with
    ``max_parallel = 2``; and the peak of the second build."""
    tmp = tmp_path_factory.mktemp("bound")
    origin = make_origin(tmp / "origin")
    origin.commit(sample_service_files("svc", "/srv/svc"), "v1")
    hosts = fake_hosts(tmp / "hosts", *HOSTS, programs=["svc"])
    config = fake_config(tmp, hosts, origin.url)
    config = replace(config, settings=replace(config.settings, max_parallel=BOUND))
    assert run_build(config, "svc", lambda e: None, connector=connector(hosts)).ok
    gauge = Gauge()
    for fake in hosts.values():
        gauge.watch(fake)
    origin.commit({"VERSION": "v2\n"}, "v2")
    finished = run_build(config, "svc", lambda e: None, connector=gauge.connector(hosts))
    assert finished.ok, finished.error
    return config, hosts, gauge


def peak_of(fleet, work: Callable[[Config, Connector], object]) -> int:
    config, hosts, gauge = fleet
    gauge.peak = 0
    work(config, gauge.connector(hosts))
    return gauge.peak


def test_a_build_works_on_at_most_max_parallel_hosts_and_deploys_all(fleet):
    config, hosts, gauge = fleet
    assert gauge.peak == BOUND
    releases = {fake.current("/srv/svc") for fake in hosts.values()}
    assert len(releases) == 1 and None not in releases


def poll(config: Config, through: Connector) -> None:
    poller = StatusPoller(list(config.hosts.values()), config.settings, through)
    try:
        assert poller.poll().ok
    finally:
        poller.close()


def on_poller(read: Callable[[Config, list, StatusPoller], object]):
    """``read(config, hosts, poller)`` over a poller's kept connections, opened first
    (one at a time, so only the reading is measured)."""

    def work(config: Config, through: Connector) -> None:
        hosts = list(config.hosts.values())
        poller = StatusPoller(hosts, config.settings, through)
        try:
            for host in hosts:
                poller.on_host(host, lambda t: None)
            read(config, hosts, poller)
        finally:
            poller.close()

    work.__name__ = read.__name__
    return work


def locks(config: Config, hosts: list, poller: StatusPoller) -> None:
    remote_locks(config, hosts, poller.on_host, 5.0)


def deployed(config: Config, hosts: list, poller: StatusPoller) -> None:
    service = config.services["svc"]
    found = read_deployed(service, hosts, poller.on_host, config.settings)
    assert all(d.error is None for d in found)


def releases(config: Config, hosts: list, poller: StatusPoller) -> None:
    service = config.services["svc"]
    found = read_releases(service, hosts, poller.on_host, config.settings)
    assert all(r.error is None for r in found)


def rollback_and_forward(config: Config, through: Connector) -> None:
    assert run_rollback(config, "svc", lambda e: None, connector=through).ok
    assert run_build(config, "svc", lambda e: None, connector=through).ok


def doctor(config: Config, through: Connector) -> None:
    assert run_doctor(config, [config.services["svc"]], connector=through)


def adhoc(config: Config, through: Connector) -> None:
    assert run_adhoc(config, "svc", ["true"], lambda e: None, connector=through).ok


def plan(config: Config, through: Connector) -> None:
    assert not read_plan(config, "svc", connector=through).problems


def unlock(config: Config, through: Connector) -> None:
    assert force_unlock(config, "svc", connector=through)[0]


@pytest.mark.parametrize(
    "work",
    [
        poll,
        on_poller(locks),
        on_poller(deployed),
        on_poller(releases),
        rollback_and_forward,
        doctor,
        adhoc,
        plan,
        unlock,
    ],
    ids=lambda w: w.__name__,
)
def test_every_fan_out_works_on_at_most_max_parallel_hosts(fleet, work):
    assert peak_of(fleet, work) == BOUND


async def test_the_process_view_polls_at_most_max_parallel_hosts_at_once(fleet):
    # Its polls have a pool of their own (actions and the log tail have another, so they
    # never queue behind slow hosts): that pool is bounded too.
    from textual.app import App

    from relconsole.ui.process_screen import ProcessScreen

    config, hosts, gauge = fleet
    poller = StatusPoller(list(config.hosts.values()), config.settings, gauge.connector(hosts))

    class Harness(App):
        def on_mount(self) -> None:
            self.push_screen(ProcessScreen(config, poller))

    gauge.peak = 0
    try:
        async with Harness().run_test(size=(120, 30)) as pilot:
            screen = pilot.app.screen
            deadline = time.monotonic() + 20
            while set(screen._statuses) != set(HOSTS):
                assert time.monotonic() < deadline, f"polled only {sorted(screen._statuses)}"
                await pilot.pause(0.02)
            assert all(screen._statuses[h].ok for h in HOSTS)
    finally:
        poller.close()
    assert gauge.peak == BOUND
