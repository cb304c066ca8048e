"""The target hosts of one run: one open connection each, and what is done on all.

:class:`Fleet` runs a step on every host in parallel (:func:`relconsole.fanout.fan_out`:
at most ``max_parallel`` hosts at once, one thread per connection), reports each host's outcome as a
:class:`HostFinished` event as it comes, and keeps the fleet-wide promises: lock all
hosts or none, switch all hosts or none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional, TypeVar

from relconsole import lock as lk
from relconsole import release as rel
from relconsole.config import FileUpload, Host, Service, Settings
from relconsole.errors import Cancelled, StageFailed
from relconsole.events import HostFinished, Output, Sink, Stage
from relconsole.fanout import HostResults, Outcome, describe, fan_out
from relconsole.hosts.base import (
    CommandFailed,
    HostKeyRefused,
    HostUnreachable,
    Result,
    Transport,
    TransportError,
    run_step,
)
from relconsole.hosts.connect import Connector
from relconsole.stages.health import check_health
from relconsole.stages.supervisor import VerifyFailed, restart_and_verify
from relconsole.status.reader import StatusReader, SupervisorUnreachable

T = TypeVar("T")

#: Where the lock command's answer ends and what the host runs begins.
DEPLOYED_MARK = "@@relconsole-deployed"


@dataclass
class Fleet:
    service: Service
    hosts: list[Host]
    settings: Settings
    sink: Sink
    connector: Connector
    transports: dict[str, Transport] = field(default_factory=dict)
    #: The lock this build holds on each host (host name → token).
    locked: dict[str, str] = field(default_factory=dict)
    #: This run's lock token, once it tried to lock.
    token: Optional[str] = None
    #: Hosts whose lock is no longer this run's (said once each).
    _lost_locks: set[str] = field(default_factory=set)
    #: The last stage a step ran in: where the cleanup at the end reports.
    last_stage: Stage = Stage.CHECKOUT
    #: Hosts whose supervisord did not answer at the last :meth:`restart`.
    unreachable_supervisors: set[str] = field(default_factory=set)
    #: Per host, how status is read on its connection (fast helper or supervisorctl).
    readers: dict[str, StatusReader] = field(default_factory=dict)
    #: Per host, (release, sha) that ``current`` named when the lock was taken: read in
    #: the same command, so an upload needs no command of its own to learn its base.
    deployed_at_lock: dict[str, tuple[Optional[str], Optional[str]]] = field(default_factory=dict)
    #: Per host, the releases its switch listed (:meth:`switch`, for :meth:`prune`).
    switched_releases: dict[str, list[str]] = field(default_factory=dict)
    #: Hosts whose lease renewal is still under way (:meth:`heartbeat`).
    _beating: set[str] = field(default_factory=set)
    _beating_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- plumbing ---------------------------------------------------------------
    def say(
        self, stage: Stage, line: str, host: Optional[str] = None, stream: str = "info"
    ) -> None:
        self.sink(Output(stage=stage, line=line, host=host, stream=stream))

    def base(self, t: Transport) -> str:
        return t.path(self.service.path)

    def run(self, t: Transport, command: str, step: str) -> Result:
        """Run a privileged command (through sudo where configured); fail on non-zero."""
        res = run_step(t, command, step, timeout=self.settings.command_timeout, sudo=True)
        if not res.ok:
            raise CommandFailed(t.name, step, res)
        return res

    def each(
        self,
        stage: Stage,
        work: Callable[[Host, Transport], T],
        hosts: Optional[Sequence[Host]] = None,
        report: bool = True,
        housekeeping: bool = False,
    ) -> HostResults[Outcome[T]]:
        """Run ``work`` on every host in parallel and collect outcomes, never raising.

        ``report``: send each host's :class:`HostFinished` as it finishes.
        ``housekeeping``: a clean-up step that does not move :attr:`last_stage`.
        """
        targets = list(self.hosts if hosts is None else hosts)
        if not housekeeping:
            self.last_stage = stage

        def done(outcome: Outcome[T]) -> None:
            self.sink(
                HostFinished(
                    stage=stage,
                    host=outcome.host,
                    ok=outcome.ok,
                    seconds=outcome.seconds,
                    error=outcome.error,
                    cancelled=outcome.cancelled,
                )
            )

        return fan_out(
            targets,
            lambda h: h.name,
            lambda h: work(h, self.transports[h.name]),
            max_parallel=self.settings.max_parallel,
            thread_name=str(stage),
            on_done=done if report else None,
        )

    # -- connections and the lock -------------------------------------------------
    def on_host(self, host: Host, work: Callable[[Transport], T]) -> T:
        """``work`` with the host's connection; if that connection turns out lost, connect
        once more and retry. For what must reach a host after a step lost it (cleaning
        up, unlocking, switching back): one more connection beats a fleet left locked."""
        try:
            return work(self.transports[host.name])
        except HostKeyRefused:
            raise
        except HostUnreachable:
            pass
        fresh = self.connector(host, self.settings)  # HostUnreachable again: the caller says so
        old, self.transports[host.name] = self.transports[host.name], fresh
        try:
            old.close()
        except Exception:  # it is dead already
            pass
        self.say(self.last_stage, f"reconnected to {fresh.label}", host=host.name)
        return work(fresh)

    def clean_up(self, host: Host, command: Callable[[Transport], str], step: str) -> Result:
        """A privileged clean-up command that must reach ``host`` even if a step lost
        its connection (see :meth:`on_host`); fails on a non-zero exit."""
        return self.on_host(host, lambda t: self.run(t, command(t), step))

    def connect(self, stage: Stage) -> None:
        """One connection per host, opened once and reused by every later step."""

        def open_one(host: Host) -> None:
            started = time.monotonic()
            t = self.transports[host.name] = self.connector(host, self.settings)
            self.say(
                stage,
                f"connected to {t.label} in {time.monotonic() - started:.2f}s",
                host=host.name,
            )

        self.last_stage = stage
        failed = fan_out(
            self.hosts,
            lambda h: h.name,
            open_one,
            max_parallel=self.settings.max_parallel,
            thread_name="connect",
        ).failed
        for name, error in failed.items():
            self.sink(HostFinished(stage=stage, host=name, ok=False, seconds=0.0, error=error))
        if failed:
            raise StageFailed(f"cannot reach {describe(failed)} — nothing was changed")

    def lock(
        self,
        stage: Stage,
        info: lk.LockInfo,
        *,
        wait: float = 0.0,
        cancel: Optional[threading.Event] = None,
    ) -> None:
        """Take the lock on every host, or on none: a refusal (or a failure on some
        host) releases, by this run's token, what was taken on every host. Waits up
        to ``wait`` seconds for a held lock to be released or to go stale."""
        self.token = info.token
        deadline = time.monotonic() + wait
        said_waiting = False
        while True:
            held, failed = self._try_lock(stage, info)
            if not held and not failed:
                break
            self.unlock(everywhere=True)
            if failed:
                raise StageFailed(f"cannot take the deploy lock: {describe(failed)}")
            name, (holder, age) = next(iter(held.items()))
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                raise lk.LockHeld(self.service.name, name, holder, age, self.settings.lock_ttl)
            if not said_waiting:
                who = holder.describe() if holder else "an unknown holder"
                self.say(stage, f"waiting up to {wait:.0f}s for the deploy lock held by {who}")
                said_waiting = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self.say(stage, f"locked {self.service.name} on {', '.join(self.locked)}")

    def _try_lock(
        self, stage: Stage, info: lk.LockInfo
    ) -> tuple[dict[str, tuple[Optional[lk.LockInfo], Optional[int]]], dict[str, str]]:
        """One attempt on every host: who holds it where (holder, heartbeat age), and
        the hosts where taking it failed otherwise."""
        held: dict[str, tuple[Optional[lk.LockInfo], Optional[int]]] = {}

        def take(host: Host, t: Transport) -> None:
            base = self.base(t)
            # Once taken, what the host runs is read in the same command (the lock keeps
            # it so until this run ends): the upload needs no command of its own for it.
            command = (
                f"{lk.acquire_command(base, info, self.settings.lock_ttl)} && "
                f"echo {DEPLOYED_MARK} && {{ {rel.deployed_command(base)}; }}"
            )
            res = run_step(
                t,
                command,
                "taking the deploy lock",
                timeout=self.settings.command_timeout,
                sudo=True,
            )
            answer, marked, deployed = res.stdout.partition(DEPLOYED_MARK + "\n")
            if res.ok:
                self.locked[host.name] = info.token
                if marked:
                    self.deployed_at_lock[host.name] = rel.parse_deployed(deployed)
                if answer.startswith("TAKEOVER"):
                    old = lk.parse_holder(answer)
                    who = old.describe() if old else "an unknown holder"
                    self.say(
                        stage,
                        f"took over the deploy lock of {who}: no heartbeat for "
                        f"{lk.lock_age(answer)}s (lock_ttl {self.settings.lock_ttl:g}s)",
                        host=host.name,
                        stream="err",
                    )
            elif res.stdout.startswith("HELD"):
                held[host.name] = (lk.parse_holder(res.stdout), lk.lock_age(res.stdout))
            else:
                raise CommandFailed(t.name, "taking the deploy lock", res)

        return held, self.each(stage, take, report=False).failed

    def heartbeat(self, stage: Stage) -> list[threading.Thread]:
        """Renew the lease on every host this run holds the lock on, each in a thread of
        its own, without waiting for them (the threads started are returned).

        Not a fan-out bounded by max_parallel: there, hosts whose renewal hangs (a
        connection silently gone) would hold every slot for a timeout each while live
        hosts waited in the queue, their leases going stale and open to a takeover. A
        renewal is one short command on a connection already open. A host still busy
        with its last renewal is skipped; a missed renewal is retried next time."""
        started = []
        for host in self.hosts:
            t = self.transports.get(host.name)
            if host.name not in self.locked or t is None:
                continue
            with self._beating_lock:
                if host.name in self._beating:
                    continue
                self._beating.add(host.name)
            beat = threading.Thread(
                target=self._beat, args=(stage, host, t), name=f"heartbeat {host.name}", daemon=True
            )
            beat.start()
            started.append(beat)
        return started

    def _beat(self, stage: Stage, host: Host, t: Transport) -> None:
        try:
            res = t.run(
                lk.heartbeat_command(self.base(t), self.locked[host.name]),
                timeout=self.settings.connect_timeout,
                sudo=True,
            )
        except Exception:  # the host is gone, the run let go meanwhile, ...: retried at
            return  # the next renewal (this thread has nobody to raise to)
        finally:
            with self._beating_lock:
                self._beating.discard(host.name)
        if "LOST" in res.stdout and host.name not in self._lost_locks:
            self._lost_locks.add(host.name)
            self.say(
                stage,
                "this run's deploy lock is gone from this host (removed with --unlock, or "
                "taken over): another run may deploy here now",
                host=host.name,
                stream="err",
            )

    def unlock(self, everywhere: bool = False) -> None:
        """Release the locks this run holds (``everywhere``: on every connected host,
        by this run's token, whatever this object remembers); never raises. A lock that
        stays behind (its host is gone) is reported with the way to remove it later."""
        token = self.token
        if token is None:
            return
        names = set(self.transports) if everywhere else set(self.locked)
        hosts = [h for h in self.hosts if h.name in names and h.name in self.transports]

        def release(host: Host, _t: Transport) -> None:
            self.clean_up(
                host, lambda t: lk.release_command(self.base(t), token), "releasing the lock"
            )

        failed = self.each(
            self.last_stage, release, hosts=hosts, report=False, housekeeping=True
        ).failed
        for name, error in failed.items():
            self.say(
                self.last_stage,
                f"the deploy lock stays on this host ({error}); once it "
                f"is reachable, remove it with: relconsole --unlock "
                f"{self.service.name}",
                host=name,
                stream="err",
            )
        self.locked.clear()

    def status_reader(self, host: Host, t: Transport) -> StatusReader:
        """The host's status reader on its current connection (its helper kept for
        every status of this build: before the restart and while verifying)."""
        reader = self.readers.get(host.name)
        if reader is None or reader.transport is not t:
            if reader is not None:
                reader.close()
            reader = self.readers[host.name] = StatusReader(t, host)
        return reader

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
        for t in self.transports.values():
            try:
                t.close()
            except Exception:  # closing a dead connection must not hide the real outcome
                pass
        self.transports.clear()

    # -- releases ---------------------------------------------------------------
    def staged_files(self, t: Transport) -> list[FileUpload]:
        return [FileUpload(u.src, t.path(u.dest)) for u in self.service.files]

    def listing(self, t: Transport) -> tuple[Optional[str], list[str], Optional[dict[str, str]]]:
        """The host's current release, every release, and their verdicts."""
        res = self.run(t, rel.list_releases_command(self.base(t)), "listing releases")
        return (*rel.parse_releases(res.stdout), rel.parse_verdicts(res.stdout))

    @contextmanager
    def verdict_recorded(
        self, stage: Stage, host: Host, t: Transport, good: bool = True
    ) -> Iterator[None]:
        """Record on the host whether the release ``current`` points at passed verify
        (and its health probes): a rollback only ever goes back to a release that did.
        ``good=False``: only a failure is recorded (the probes that follow decide the
        rest). Failing to record is a warning (the release runs); the verify's own
        outcome stands."""
        try:
            yield
        except VerifyFailed:
            self._mark(stage, host, t, rel.FAILED)
            raise
        if good:
            self._mark(stage, host, t, rel.GOOD)

    def mark_failed(self, stage: Stage, release: str, hosts: Sequence[Host]) -> None:
        """Record ``release`` as failed on ``hosts`` (a rollout that failed on another
        host: none of them may roll back to it later). Best effort, as any verdict."""

        def mark(host: Host, t: Transport) -> None:
            command = rel.mark_release_command(self.base(t), release, rel.FAILED)
            self._mark(stage, host, t, rel.FAILED, command)

        self.each(stage, mark, hosts=hosts, report=False, housekeeping=True)

    def _mark(
        self, stage: Stage, host: Host, t: Transport, verdict: str, command: Optional[str] = None
    ) -> None:
        try:
            res = t.run(
                command or rel.mark_current_command(self.base(t), verdict),
                timeout=self.settings.command_timeout,
                sudo=True,
            )
            why = None if res.ok else (res.tail(2) or f"exit {res.exit_code}")
        except TransportError as exc:
            why = exc.message
        if why:
            message = f"could not record the release as {verdict}: {why}"
            self.say(stage, message, host=host.name, stream="err")

    def revision(self, t: Transport, release: str) -> Optional[str]:
        res = t.run(
            rel.revision_command(self.base(t), release),
            timeout=self.settings.command_timeout,
            sudo=True,
        )
        sha = res.stdout.strip()
        return sha if res.ok and sha else None

    def remove_release(self, stage: Stage, release: str, hosts: Sequence[Host]) -> None:
        """Best effort: take a release that will never be switched to off ``hosts``."""

        def remove(host: Host, _t: Transport) -> None:
            self.clean_up(host, lambda t: rel.remove_release_command(self.base(t), release), "rm")
            self.say(stage, f"removed releases/{release} (never switched to)", host=host.name)

        failed = self.each(stage, remove, hosts=hosts, report=False).failed
        for name, error in failed.items():
            self.say(
                stage,
                f"could not remove the partial release releases/{release} ({error}); "
                "it is never switched to, and the next upload removes it",
                host=name,
                stream="err",
            )

    def switch(
        self, stage: Stage, target: dict[str, str], hosts: Optional[Sequence[Host]] = None
    ) -> dict[str, Optional[str]]:
        """Point the ``current`` of every host (or of ``hosts``: a batch) at
        ``target[host]``, or of none of them.

        Returns each host's previous release. Not interruptible: a cancel is honoured
        after it, so the fleet (or the batch) is never left half-switched.
        """
        previous: dict[str, Optional[str]] = {}

        def switch_one(host: Host, t: Transport) -> None:
            release = target[host.name]
            res = self.run(
                t,
                rel.switch_command(self.base(t), release, self.staged_files(t)),
                "switching current",
            )
            previous[host.name] = rel.parse_previous(res.stdout)
            self.switched_releases[host.name] = rel.parse_releases(res.stdout)[1]
            self.say(
                stage,
                f"current -> releases/{release} (was {previous[host.name] or 'none'})",
                host=host.name,
            )

        failed = self.each(stage, switch_one, hosts=hosts).failed
        if failed:
            switched = [h for h in self.hosts if h.name in previous]
            self.switch_back(stage, {h.name: previous[h.name] for h in switched})
            raise StageFailed(
                f"switch failed on {describe(failed)} — switched {len(switched)} host(s) back"
            )
        return previous

    def switch_back(self, stage: Stage, previous: dict[str, Optional[str]]) -> dict[str, str]:
        """Return hosts to the release they ran before (none: unlink ``current``)."""

        def back(host: Host, _t: Transport) -> None:
            release = previous[host.name]

            def command(t: Transport) -> str:
                if release:
                    return rel.switch_command(self.base(t), release, self.staged_files(t))
                return rel.unlink_current_command(self.base(t), self.staged_files(t))

            self.clean_up(host, command, "switching back")
            self.say(
                stage,
                f"current -> {'releases/' + release if release else 'none'} (switched back)",
                host=host.name,
            )

        hosts = [h for h in self.hosts if h.name in previous]
        return self.each(stage, back, hosts=hosts).failed

    def prune(
        self, stage: Stage, keep: int, previous: dict[str, Optional[str]], target: dict[str, str]
    ) -> None:
        """Housekeeping after every host switched to ``target``: a failure is a warning,
        the release is live. Chooses from the releases each switch listed (the lock was
        held since: no other run made or removed one)."""

        def prune_one(host: Host, t: Transport) -> None:
            releases = self.switched_releases[host.name]
            doomed = rel.releases_to_prune(
                releases, keep, target[host.name], previous.get(host.name)
            )
            command = rel.prune_command(self.base(t), doomed)
            if command is None:
                return
            res = t.run(command, timeout=self.settings.command_timeout, sudo=True)
            if res.ok:
                self.say(stage, f"pruned {len(doomed)} old release(s)", host=host.name)
            else:
                self.say(
                    stage,
                    f"could not prune old releases: {res.tail(2)}",
                    host=host.name,
                    stream="err",
                )

        self.each(stage, prune_one, report=False)

    def restart(
        self,
        stage: Stage,
        cancel,
        hosts: Optional[Sequence[Host]] = None,
        probes_follow: bool = False,
    ) -> dict[str, str]:
        """update, restart and verify the service's programs on every host (or ``hosts``).

        ``probes_follow``: the health probes decide whether a release that passed verify
        is good (:meth:`probe`); only a failed verify is recorded here.
        Hosts where supervisord itself did not answer are also noted in
        :attr:`unreachable_supervisors`: restarting there again cannot help.
        """

        def restart_one(host: Host, t: Transport) -> None:
            reader = self.status_reader(host, t)
            timeout = self.settings.command_timeout
            with self.verdict_recorded(stage, host, t, good=not probes_follow):
                restart_and_verify(
                    t,
                    host,
                    self.service.programs,
                    timeout=timeout,
                    log=lambda line: self.say(stage, line, host=host.name, stream="out"),
                    cancel=cancel,
                    read_rows=lambda: reader.rows(timeout),
                    poke=lambda: reader.poke(timeout),
                    restart_fast=lambda programs: reader.restart(programs, timeout),
                )

        outcomes = self.each(stage, restart_one, hosts=hosts)
        self.unreachable_supervisors = {
            o.host for o in outcomes if isinstance(o.exc, SupervisorUnreachable)
        }
        if outcomes.cancelled:
            raise Cancelled()
        return outcomes.failed

    def probe(self, stage: Stage, cancel, hosts: Sequence[Host]) -> dict[str, str]:
        """Make the service's health probes on ``hosts`` (each from the host itself) and
        record the release ``current`` points at as good or failed there."""

        def probe_one(host: Host, t: Transport) -> None:
            with self.verdict_recorded(stage, host, t):
                check_health(
                    t,
                    [p.on(host) for p in self.service.health],
                    base=self.base(t),
                    stop=cancel,
                    log=lambda line: self.say(stage, line, host=host.name, stream="out"),
                )

        outcomes = self.each(stage, probe_one, hosts=hosts)
        if outcomes.cancelled:
            raise Cancelled()
        return outcomes.failed
