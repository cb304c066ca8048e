"""StatusPoller on scripted hosts: every host answers for itself, a dead or slow host
never stalls the others, lost connections are reopened on the next poll.

The same over real sshd and supervisord: test_fastpoll.py and test_process_view.py
(the bed tier).
"""

from __future__ import annotations

import threading

import pytest
from fakehost import Call, FakeHost, FakeTransport, connector, fake_hosts

from relconsole.config import Settings
from relconsole.hosts.base import HostUnreachable
from relconsole.status.poller import HostStatus, StatusPoller
from relconsole.status.supervisorctl import State

WAIT = 5.0  # a bound on waits between threads, never reached when the code is right


@pytest.fixture
def hosts(tmp_path) -> dict[str, FakeHost]:
    return fake_hosts(tmp_path / "hosts", "h1", "h2", "h3", programs=["api", "workers:w0"])


@pytest.fixture
def make_poller(tmp_path, hosts):
    settings = Settings(
        state_dir=tmp_path / "state", known_hosts=tmp_path / "kh", connect_timeout=WAIT
    )
    made: list[StatusPoller] = []

    def make(**kwargs) -> StatusPoller:
        made.append(
            StatusPoller([h.config for h in hosts.values()], settings, connector(hosts), **kwargs)
        )
        return made[-1]

    yield make
    for poller in made:
        poller.close()


def summary(status: HostStatus) -> list[tuple[str, State, int | None]]:
    return [(r.name, r.state, r.pid) for r in status.rows]


def expected(host: FakeHost) -> list[tuple[str, State, int | None]]:
    return [(p.namespec, State(p.state), p.pid) for p in host.supervisor.programs.values()]


def test_an_unreachable_host_answers_with_its_error_and_the_others_with_their_rows(
    hosts, make_poller
):
    hosts["h2"].reachable = False

    results = make_poller().poll()

    assert [s.host for s in results] == ["h1", "h2", "h3"]
    assert all(isinstance(s, HostStatus) for s in results)
    assert not results["h2"].reachable and "Connection refused" in results["h2"].error
    assert results["h2"].rows == ()
    for name in ("h1", "h3"):
        assert results[name].reachable and summary(results[name]) == expected(hosts[name])
    assert results.failed.keys() == {"h2"}


def test_a_dead_host_is_retried_every_poll_while_the_others_keep_one_connection(hosts, make_poller):
    poller = make_poller()
    hosts["h2"].reachable = False

    for _ in range(3):
        results = poller.poll()
        assert [s.reachable for s in results] == [True, False, True]

    assert hosts["h2"].attempts == 3
    assert (hosts["h1"].connects, hosts["h3"].connects) == (1, 1)
    assert len(hosts["h1"].commands("channel")) == 1  # one status helper, kept

    hosts["h2"].reachable = True
    back = poller.poll()["h2"]
    assert back.reachable and summary(back) == expected(hosts["h2"])

    poller.close()
    assert all(t.closed for h in hosts.values() for t in h.transports)


def test_a_connection_lost_between_polls_is_an_error_then_reopened(hosts, make_poller):
    poller = make_poller()
    assert poller.poll().ok
    hosts["h1"].transports[-1].close()  # the network dropped it

    lost = poller.poll()
    again = poller.poll()

    assert not lost["h1"].reachable and lost["h2"].reachable and lost["h3"].reachable
    assert again["h1"].reachable and summary(again["h1"]) == expected(hosts["h1"])
    assert hosts["h1"].connects == 2 and hosts["h2"].connects == 1


def test_a_slow_host_does_not_hold_back_the_others(hosts, make_poller):
    gate, arrived = threading.Event(), threading.Event()

    def hang(call: Call, t: FakeTransport) -> None:
        arrived.set()
        assert gate.wait(WAIT), "the test never let h2 answer"

    hosts["h2"].on("", hang, kind="channel")  # h2's status helper hangs at its start
    poller = make_poller()
    h1, h2, h3 = (h.config for h in hosts.values())
    slow: list[HostStatus] = []
    waiting = threading.Thread(target=lambda: slow.append(poller.poll_host(h2)))
    waiting.start()
    try:
        assert arrived.wait(WAIT)
        # h2 is stuck in its poll; h1 and h3 answer meanwhile, more than once.
        for _ in range(2):
            assert poller.poll_host(h1).reachable and poller.poll_host(h3).reachable
        assert waiting.is_alive() and not slow
    finally:
        gate.set()
        waiting.join(WAIT)
    assert slow and slow[0].reachable and summary(slow[0]) == expected(hosts["h2"])


def test_supervisord_down_on_one_host_is_that_hosts_error_in_supervisorctls_words(
    hosts, make_poller
):
    hosts["h3"].supervisor.down = True

    results = make_poller().poll()

    assert results["h1"].reachable and results["h2"].reachable
    assert not results["h3"].reachable
    assert "supervisord is not answering" in results["h3"].error
    assert "no such file" in results["h3"].error


def test_without_the_helper_a_host_is_polled_with_supervisorctl_and_says_why(
    tmp_path, make_poller, hosts
):
    hosts["h2"].helper = False
    poller = make_poller()

    for _ in range(2):
        results = poller.poll()

    assert all(summary(results[n]) == expected(hosts[n]) for n in hosts)
    assert poller.via("h1") == "fast" and poller.via("h2") == "supervisorctl"
    assert "python3: not found" in poller.fast_path_off("h2")
    assert poller.fast_path_off("h1") is None
    # h2 tried its helper once on this connection, then stayed with supervisorctl.
    assert len(hosts["h2"].commands("channel")) == 1
    assert len(hosts["h2"].commands("run", r"^supervisorctl status$")) == 2


def test_hosts_are_polled_at_the_same_time(hosts, make_poller):
    # h1's helper starts only once h3's has: a poll that asked one host after the
    # other would never get there.
    h3_started = threading.Event()
    hosts["h3"].on("", lambda call, t: h3_started.set(), kind="channel")

    def wait_for_h3(call: Call, t: FakeTransport) -> None:
        if not h3_started.wait(WAIT):
            raise HostUnreachable("h1", "h3 was not polled while h1 was")

    hosts["h1"].on("", wait_for_h3, kind="channel")

    results = make_poller().poll()

    assert results.ok, results.describe_failures()
