"""Doing one thing on many hosts at once, and the one result type for it.

Every fan-out of relconsole (a build's steps, status polls, what the hosts run, their
locks and releases, unlocking) goes through :func:`fan_out` and answers with a
:class:`HostResults`: per host an :class:`Outcome` (ok or failed, the value or the
error, how long it took), in the hosts' configured order. Partial success is normal
and explicit: callers ask ``.failed`` and ``.succeeded`` (as Fabric's ``GroupResult``).

A host's work runs in one thread at a time, so one thread uses a host's connection at
a time (Fabric connections are not thread-safe). At most ``max_parallel`` hosts (the
``[settings]`` key) are worked on at once, by every fan-out: :func:`fan_out` for one
pass over the hosts, :func:`host_pool` for a pool kept open (the status poller). An
exception from the work becomes that host's error, never the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

from relconsole.errors import Cancelled, RelconsoleError

T = TypeVar("T")
H = TypeVar("H")

#: ``[settings] max_parallel`` when the config leaves it out. Measured (bench/scale.py,
#: 2026-12-01, 50 loopback hosts on 2 shared cores, medians of 3 builds, machine busy):
#: max_parallel 8 → 35.5 s, 62 MB peak RSS, 70 threads; 16 → 24.5 s, 67 MB, 86;
#: 32 → 23.3 s (21.1 s in another pass), 69 MB, 118; 64 (all 50) → 21.1 s, 70 MB, 154.
#: Below 16 a fleet waits on itself; from 32 up the gain is within run-to-run noise
#: while threads (and sessions and remote processes at once) keep growing. 32: near the
#: fastest measured, with what is worked on at once still bounded at an expected number.
DEFAULT_MAX_PARALLEL = 32
#: The largest ``max_parallel`` accepted: each host worked on is a thread.
MAX_PARALLEL = 1024


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened on one host."""

    host: str
    ok: bool
    value: Optional[T] = None
    error: Optional[str] = None
    seconds: float = 0.0
    #: The work stopped because the run was cancelled.
    cancelled: bool = False
    #: The exception behind ``error``, for callers that act on its type.
    exc: Optional[BaseException] = None


OutcomeT = TypeVar("OutcomeT", bound="Outcome[Any]")


class HostResults(Generic[OutcomeT]):
    """Outcomes by host name, in the order the hosts were given. ``OutcomeT`` is the outcome
    type: ``Outcome[T]`` from :func:`fan_out`, a subclass where a fan-out has its own
    (the status poller's ``HostStatus``)."""

    def __init__(self, outcomes: Iterable[OutcomeT] = ()) -> None:
        self.outcomes: dict[str, OutcomeT] = {o.host: o for o in outcomes}

    def __iter__(self) -> Iterator[OutcomeT]:
        return iter(self.outcomes.values())

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, host: str) -> OutcomeT:
        return self.outcomes[host]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self)

    @property
    def cancelled(self) -> bool:
        return any(o.cancelled for o in self)

    @property
    def succeeded(self) -> dict[str, Any]:
        """Host → value, for the hosts where the work succeeded."""
        return {o.host: o.value for o in self if o.ok}

    @property
    def failed(self) -> dict[str, str]:
        """Host → error, for the hosts where it did not."""
        return {o.host: o.error or "failed" for o in self if not o.ok}

    def describe_failures(self) -> str:
        """``h1: why; h2: why`` — how failures read in one line."""
        return describe(self.failed)


def describe(failed: dict[str, str]) -> str:
    return "; ".join(f"{name}: {error}" for name, error in failed.items())


def attempt(host: str, work: Callable[[], T]) -> Outcome[T]:
    """Run ``work`` for ``host`` and say how it went; never raises for an Exception."""
    started = time.monotonic()
    try:
        value = work()
    except Cancelled:
        return Outcome(
            host, False, error="cancelled", cancelled=True, seconds=time.monotonic() - started
        )
    except RelconsoleError as exc:
        error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return Outcome(host, False, error=error, exc=exc, seconds=time.monotonic() - started)
    except Exception as exc:  # a bug must not leave a fleet half-done: report it
        return Outcome(
            host,
            False,
            error=f"internal error: {type(exc).__name__}: {exc}",
            exc=exc,
            seconds=time.monotonic() - started,
        )
    return Outcome(host, True, value=value, seconds=time.monotonic() - started)


def fan_out(
    hosts: Sequence[H],
    name: Callable[[H], str],
    work: Callable[[H], T],
    *,
    max_parallel: int,
    pool: Optional[Executor] = None,
    thread_name: str = "host",
    on_done: Optional[Callable[[Outcome[T]], None]] = None,
) -> HostResults[Outcome[T]]:
    """``work(host)`` for every host in parallel (at most ``max_parallel`` at once, or on
    ``pool``), collected as :class:`HostResults` in the order of ``hosts``.

    ``on_done(outcome)`` is called in the host's thread as soon as that host is done
    (live progress), before the fan-out as a whole returns.
    """
    if not hosts:
        return HostResults()

    def one(host: H) -> Outcome[T]:
        outcome = attempt(name(host), lambda: work(host))
        if on_done is not None:
            on_done(outcome)
        return outcome

    if pool is not None:
        return HostResults(pool.map(one, hosts))
    with host_pool(len(hosts), max_parallel, thread_name) as own:
        return HostResults(own.map(one, hosts))


def host_pool(n_hosts: int, max_parallel: int, thread_name: str) -> ThreadPoolExecutor:
    """Threads for work on ``n_hosts`` hosts: one per host, at most ``max_parallel``.
    Hosts beyond the bound wait for a thread (in the order they were given)."""
    workers = max(1, min(n_hosts, max_parallel))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
