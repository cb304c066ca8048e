"""fan_out and HostResults: one thread per host, outcomes in the hosts' order, partial
success explicit, a host's exception that host's error. No hosts needed: plain work."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from relconsole.errors import Cancelled, StageFailed
from relconsole.fanout import HostResults, Outcome, fan_out
from relconsole.hosts.base import HostUnreachable

HOSTS = ["h1", "h2", "h3"]
WAIT = 5.0  # a bound on waits between threads, never reached when the code is right


def by_name(work, hosts=HOSTS, **kwargs) -> HostResults:
    kwargs.setdefault("max_parallel", len(hosts))  # these tests need every host at once
    return fan_out(hosts, lambda h: h, work, **kwargs)


def test_outcomes_keep_the_hosts_order_whatever_order_they_finish_in():
    # h3 finishes first, then h2, then h1: each waits for the one after it.
    finished = {h: threading.Event() for h in HOSTS}
    done_order = []

    def work(host):
        after = HOSTS[HOSTS.index(host) + 1 :]
        if after:
            assert finished[after[0]].wait(WAIT)
        return host.upper()

    def on_done(outcome):
        done_order.append(outcome.host)
        finished[outcome.host].set()

    results = by_name(work, on_done=on_done)

    assert done_order == ["h3", "h2", "h1"]
    assert [o.host for o in results] == HOSTS
    assert [o.value for o in results] == ["H1", "H2", "H3"]
    assert results.ok and results.succeeded == {"h1": "H1", "h2": "H2", "h3": "H3"}


def test_partial_failure_is_explicit():
    def work(host):
        if host == "h2":
            raise StageFailed("disk full")
        return len(host)

    results = by_name(work)

    assert not results.ok
    assert results.failed == {"h2": "disk full"}
    assert results.succeeded == {"h1": 2, "h3": 2}
    assert results.describe_failures() == "h2: disk full"
    assert results["h2"].value is None and isinstance(results["h2"].exc, StageFailed)


def test_a_transport_error_is_its_message_without_the_host_name_twice():
    def work(host):
        if host == "h1":
            raise HostUnreachable("h1", "cannot connect: Connection refused")

    results = by_name(work)

    assert results.failed == {"h1": "cannot connect: Connection refused"}
    assert results.describe_failures() == "h1: cannot connect: Connection refused"


def test_an_exception_in_work_becomes_that_hosts_error_not_the_callers():
    def work(host):
        if host == "h3":
            raise ValueError("boom")
        return "fine"

    results = by_name(work)  # does not raise

    assert results.failed == {"h3": "internal error: ValueError: boom"}
    assert isinstance(results["h3"].exc, ValueError)
    assert results.succeeded == {"h1": "fine", "h2": "fine"}


def test_a_cancel_is_a_cancelled_outcome():
    def work(host):
        if host == "h2":
            raise Cancelled()

    results = by_name(work)

    assert results.cancelled and not results.ok
    assert results["h2"].cancelled and results["h2"].error == "cancelled"
    assert not results["h1"].cancelled and results["h1"].ok


def test_on_done_is_called_once_per_host_in_its_thread_before_fan_out_returns():
    calls: list[tuple[str, str, bool]] = []
    work_threads: dict[str, str] = {}

    def work(host):
        work_threads[host] = threading.current_thread().name
        if host == "h2":
            raise StageFailed("no")

    def on_done(outcome: Outcome):
        calls.append((outcome.host, threading.current_thread().name, outcome.ok))

    results = by_name(work, on_done=on_done, thread_name="upload")

    assert sorted(calls) == [
        ("h1", work_threads["h1"], True),
        ("h2", work_threads["h2"], False),
        ("h3", work_threads["h3"], True),
    ]
    assert all(name.startswith("upload") for _, name, _ in calls)
    assert threading.current_thread().name not in {name for _, name, _ in calls}
    assert len(results) == 3


def test_hosts_run_at_the_same_time():
    # Each host waits for all three to arrive: only parallel work gets past it.
    everyone = threading.Barrier(3, timeout=WAIT)
    results = by_name(lambda host: everyone.wait())
    assert results.ok, results.describe_failures()


def test_max_parallel_bounds_the_threads():
    running, peak, lock = 0, 0, threading.Lock()
    pairs = threading.Barrier(2, timeout=WAIT)  # two at a time must meet

    def work(host):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        pairs.wait()
        # Proving that a third never starts takes a moment in which it could have.
        time.sleep(0.05)
        with lock:
            running -= 1

    results = by_name(work, hosts=[f"h{i}" for i in range(6)], max_parallel=2)

    assert results.ok and len(results) == 6, results.describe_failures()
    assert peak == 2


def test_a_given_pool_does_the_work():
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="mine") as pool:
        results = by_name(lambda h: threading.current_thread().name, pool=pool)
    assert all(name.startswith("mine") for name in results.succeeded.values())


@pytest.mark.parametrize("hosts", [[], ()])
def test_no_hosts_is_an_empty_success(hosts):
    results = by_name(lambda h: pytest.fail("work called with no hosts"), hosts=hosts)
    assert len(results) == 0 and results.ok and not results.cancelled
    assert results.failed == {} and results.succeeded == {}
