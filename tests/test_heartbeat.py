"""The lease heartbeat: hosts whose renewal hangs never delay the others' renewals.

With ``max_parallel = 1`` and the renewals run as a bounded fan-out, three hung hosts
held the one slot for a timeout each while the live host waited, its lease going
stale (and open to a takeover) while its build still ran."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from fakehost import connector, fake_config, fake_hosts
from gitorigin import make_origin, sample_service_files

from relconsole.events import Stage
from relconsole.fleet import Fleet
from relconsole.hosts.base import Result

HUNG = ("h1", "h2", "h3")
HANG = 1.0


def test_hung_renewals_do_not_hold_up_a_live_hosts_renewal(tmp_path):
    origin = make_origin(tmp_path / "origin")
    origin.commit(sample_service_files("svc", "/srv/svc"), "v1")
    fakes = fake_hosts(tmp_path / "hosts", *HUNG, "h4", programs=["svc"])
    config = fake_config(tmp_path, fakes, origin.url)
    settings = replace(config.settings, max_parallel=1)
    service = config.services["svc"]
    hosts = config.hosts_of(service)
    fleet = Fleet(service, hosts, settings, lambda e: None, connector(fakes))
    through = connector(fakes)
    fleet.transports = {h.name: through(h, settings) for h in hosts}
    fleet.locked = {h.name: "token-of-this-run" for h in hosts}

    calls: dict[str, list[float]] = {h.name: [] for h in hosts}
    release = threading.Event()

    def renew(name: str):
        def answer(call, _t):
            calls[name].append(time.monotonic())
            if name in HUNG:
                release.wait(HANG)
            return Result(call.command, 0, "", "")

        return answer

    for name, fake in fakes.items():
        fake.on(r"/heartbeat", renew(name))

    began = time.monotonic()
    first = fleet.heartbeat(Stage.SUPERVISOR)
    assert time.monotonic() - began < 0.3  # started, not waited for
    deadline = time.monotonic() + 5
    while not calls["h4"]:
        assert time.monotonic() < deadline, "h4 never renewed"
        time.sleep(0.01)
    assert calls["h4"][0] - began < 0.5, "h4 waited behind the hung hosts"

    for beat in first:
        if beat.name == "heartbeat h4":
            beat.join(5)
    again = fleet.heartbeat(Stage.SUPERVISOR)  # the hung hosts are still at their last one
    assert [b.name for b in again] == ["heartbeat h4"]
    release.set()
    for beat in first + again:
        beat.join(5)
    assert {name: len(c) for name, c in calls.items()} == {"h1": 1, "h2": 1, "h3": 1, "h4": 2}
    last = fleet.heartbeat(Stage.SUPERVISOR)
    assert len(last) == 4  # all free again
    for beat in last:
        beat.join(5)
