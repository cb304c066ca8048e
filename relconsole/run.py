"""What every run of the engine shares: the lock, the stages, the events, the result.

A *run* is a build (:mod:`relconsole.pipeline`) or a rollback
(:mod:`relconsole.rollback`). :class:`Run` takes the deploy lock and connects before its
first stage, runs its stages in order reporting each as events, turns the way it ended
into a :class:`~relconsole.events.RunResult`, and releases the lock however it ended.
Subclasses say which stages they have (:meth:`Run.steps`) and what each does.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from relconsole import lock as lk
from relconsole.config import Config, Host, Service, Settings
from relconsole.errors import Cancelled, RelconsoleError, StageFailed
from relconsole.events import (
    BuildFinished,
    BuildStarted,
    Output,
    RunResult,
    Sink,
    Stage,
    StageFinished,
    StageStarted,
    Switched,
)
from relconsole.fleet import Fleet
from relconsole.hosts.connect import Connector, Dialer
from relconsole.rollout import Rollout
from relconsole.secrets import Masker, SecretError
from relconsole.secrets import resolve as resolve_secret
from relconsole.stages.checkout import Commit
from relconsole.state import describe_os_error, private_dir

Step = tuple[Stage, Callable[[], None]]


@dataclass
class Run:
    """One run of one service. Use ``run_build`` or ``run_rollback`` rather than this."""

    config: Config
    service: Service
    hosts: list[Host]
    branch: str
    sink: Sink
    cancel: threading.Event
    #: None: the run connects through a :class:`Dialer` of its own (jump hosts shared
    #: by its targets, closed when it ends); a given connector is the caller's to close.
    connector: Optional[Connector] = None
    action: ClassVar[str] = "run"
    commit: Optional[Commit] = None
    release: Optional[str] = None
    #: Per host, the release it goes live on (the rollout's targets).
    targets: dict[str, str] = field(default_factory=dict)
    #: Per host that switched, the release ``current`` pointed to before.
    previous: dict[str, Optional[str]] = field(default_factory=dict)
    rolled_back: Optional[str] = None
    masker: Masker = field(default_factory=Masker)
    #: Secret values for the checks' environment, read when the run starts.
    secret_env: dict[str, str] = field(default_factory=dict)
    #: The stage running now: where an unexpected error is reported.
    current_stage: Optional[Stage] = None
    #: Seconds to wait for a deploy lock another run holds (--lock-wait).
    lock_wait: float = 0.0

    def __post_init__(self) -> None:
        self.dialer: Optional[Dialer] = None
        if self.connector is None:
            self.dialer = Dialer(self.settings)
        connector: Connector = self.connector or self.dialer  # type: ignore[assignment]
        self.fleet = Fleet(self.service, self.hosts, self.settings, self.sink, connector)
        self.local_lock = lk.LocalLock(self.settings.state_dir, self.service.name)
        self._heartbeat: Optional[Heartbeat] = None
        self.rollout = Rollout(self.fleet, self.service, Stage.SUPERVISOR, self.sink, self.cancel)

    # -- what a subclass says ---------------------------------------------------
    def steps(self) -> list[Step]:
        """The stages of this run, in order, with the work of each."""
        raise NotImplementedError

    def after_failure(self, cancelled: bool) -> None:
        """A stage failed or was cancelled: undo what must not stay. Once hosts switched
        (:attr:`previous` is set), every one of them goes back to what ran before."""
        if self.previous:
            self.roll_back_automatically(cancelled)

    def roll_back_automatically(self, cancelled: bool) -> None:
        """After a failed batch (verify, probes) or a cancel past the first switch: every
        host that switched back on the release it ran before, restarted, batch by batch
        the last first (:meth:`Rollout.roll_back`). A release that failed is recorded
        as failed on every host that switched to it, so no rollback returns there."""
        missing = [name for name, release in self.previous.items() if not release]
        if missing:
            self.say(
                Stage.SUPERVISOR,
                f"no previous release on {', '.join(missing)}: cannot roll back automatically",
                stream="err",
            )
            return

        def work() -> None:
            reached = [h for h in self.hosts if h.name in self.previous]
            if not cancelled and self.release:
                self.fleet.mark_failed(Stage.ROLLBACK, self.release, reached)
            self.rollout.roll_back(Stage.ROLLBACK, self.previous)
            self.rolled_back = rolled_back_to(self.previous)
            first = reached[0].name
            release = self.previous[first]
            sha = self.fleet.revision(self.fleet.transports[first], release) if release else None
            self.say(
                Stage.ROLLBACK,
                f"rolled back to release {self.rolled_back} (sha {(sha or 'unknown')[:12]})",
            )

        try:
            self.stage(Stage.ROLLBACK, work, cancellable=False)  # a cancel is what got us here
        except StageFailed:
            pass  # reported by the stage; the run has failed either way

    # -- plumbing ---------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.config.settings

    def say(
        self, stage: Stage, line: str, host: Optional[str] = None, stream: str = "info"
    ) -> None:
        self.sink(Output(stage=stage, line=line, host=host, stream=stream))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def stage(self, name: Stage, work: Callable[[], None], cancellable: bool = True) -> None:
        if cancellable:
            self.check_cancel()
        self.current_stage = name
        self.sink(StageStarted(stage=name))
        started = time.monotonic()
        try:
            work()
        except RelconsoleError as exc:  # StageFailed, Cancelled, a state_dir problem...
            self.sink(
                StageFinished(
                    stage=name,
                    ok=False,
                    seconds=time.monotonic() - started,
                    error=str(exc),
                    cancelled=isinstance(exc, Cancelled),
                )
            )
            raise
        self.sink(StageFinished(stage=name, ok=True, seconds=time.monotonic() - started))

    def begin(self, stage: Stage) -> None:
        """Lock this machine, connect to every host, lock every host: in that order, so a
        second run on this machine is refused at once, before any connection."""
        info, started = self.lock_here()
        self.lock_hosts(stage, info, started)

    @contextmanager
    def hosts_locked_meanwhile(self, stage: Stage) -> Iterator[None]:
        """:meth:`begin`, with its connecting and host locking done in a thread while
        the body works on this machine only (a checkout): they overlap instead of
        adding up. Nothing leaves here before that thread ended, whatever the body
        did, so every lock it took is known to :meth:`end`, which releases it; and
        no step that changes a host starts before every host is locked. The hosts'
        failure (unreachable, lock held) is the run's: it would have come first."""
        info, started = self.lock_here()
        failed: list[BaseException] = []

        def connect_and_lock() -> None:
            try:
                self.lock_hosts(stage, info, started)
            except BaseException as exc:  # handed to the run's thread below
                failed.append(exc)

        thread = threading.Thread(target=connect_and_lock, name="connect-lock", daemon=True)
        thread.start()
        try:
            yield
        except Cancelled:
            thread.join()
            raise
        except BaseException:
            thread.join()
            if failed:
                raise failed[0] from None
            raise
        thread.join()
        if failed:
            raise failed[0]

    def lock_here(self) -> tuple[lk.LockInfo, float]:
        """This machine's lock for the service (first: a second run here is refused
        before any connection); the run's lock info and when it began waiting."""
        private_dir(self.settings.state_dir)
        self.read_secrets()
        info = lk.LockInfo.mine(self.branch, self.action)
        started = time.monotonic()
        self.local_lock.acquire(info, wait=self.lock_wait)
        return info, started

    def lock_hosts(self, stage: Stage, info: lk.LockInfo, started: float) -> None:
        """Connect to every host and take its lock (all or none), then keep it alive."""
        self.fleet.connect(stage)
        self.check_cancel()
        waited = time.monotonic() - started
        self.fleet.lock(stage, info, wait=max(0.0, self.lock_wait - waited), cancel=self.cancel)
        self._heartbeat = Heartbeat(self.fleet, self.settings.lock_ttl / 4)
        self._heartbeat.start()

    def read_secrets(self) -> None:
        """Read the secrets this run needs and mask their values from now on."""
        refs: list[tuple[str, Optional[str], str]] = [
            (f"secret {name}", name, ref) for name, ref in self.service.secrets
        ]
        refs += [
            (f"host {h.name} key_passphrase", None, h.key_passphrase)
            for h in self.hosts
            if h.key_passphrase
        ]
        for label, env_name, ref in refs:
            try:
                value = resolve_secret(ref)
            except SecretError as exc:
                raise StageFailed(f"{label}: {exc}") from None
            self.masker.add([value])
            if env_name:
                self.secret_env[env_name] = value

    def end(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.fleet.unlock()
        self.fleet.close()
        if self.dialer is not None:
            self.dialer.close()
        self.local_lock.release()

    def do_supervisor(self) -> None:
        """Every host live on its target: switched, restarted and probed, batch by batch."""
        release = self.release
        assert release is not None

        def switched() -> None:
            self.sink(Switched(release=release))

        self.rollout.go(self.targets, self.previous, on_first_switch=switched)

    # -- the whole run ----------------------------------------------------------
    def run(self) -> BuildFinished:
        started = time.monotonic()
        steps = self.steps()
        self.sink(
            BuildStarted(
                service=self.service.name,
                branch=self.branch,
                hosts=tuple(h.name for h in self.hosts),
                stages=tuple(stage for stage, _ in steps),
                action=self.action,
            )
        )
        error: Optional[str] = None
        result = RunResult.SUCCESS
        holder: Optional[str] = None
        try:
            for name, work in steps:
                try:
                    self.stage(name, work)
                except RelconsoleError as exc:
                    # Once switched, a failed verify or a cancel must not leave the new
                    # release half-started: every host goes back to what ran before.
                    self.after_failure(cancelled=isinstance(exc, Cancelled))
                    raise
        except Cancelled:
            error, result = "cancelled", RunResult.CANCELLED
        except lk.LockHeld as exc:
            error, result = str(exc), RunResult.LOCKED
            holder = exc.holder.describe() if exc.holder else None
        except RelconsoleError as exc:  # a stage failed, or a one-line error of ours
            error, result = str(exc), RunResult.FAILED
        except OSError as exc:  # this machine's disk or permissions: say which file
            error, result = describe_os_error(exc), RunResult.FAILED
        except Exception as exc:  # a bug: still end cleanly (lock released) and say so
            error, result = f"internal error: {type(exc).__name__}: {exc}", RunResult.FAILED
            where = self.current_stage or steps[0][0]
            for line in traceback.format_exc().splitlines():  # kept in the history log
                self.say(where, line, stream="err")
        finally:
            self.end()
        if self.rolled_back:
            error = f"{error} — rolled back to release {self.rolled_back}"
            if result is RunResult.FAILED:
                result = RunResult.ROLLED_BACK
        finished = BuildFinished(
            result=result,
            seconds=time.monotonic() - started,
            service=self.service.name,
            sha=self.commit.sha if self.commit else None,
            release=self.release,
            error=error,
            rolled_back=self.rolled_back,
            holder=holder,
        )
        self.sink(finished)
        return finished


class Heartbeat:
    """Renews the run's deploy lock on every host every ``every`` seconds while the run
    works, so a run that dies (kill -9, a machine lost) leaves a lock that goes stale
    after lock_ttl and is taken over, instead of one only a person can clear."""

    def __init__(self, fleet: Fleet, every: float):
        self._fleet = fleet
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lock-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self._every):
            self._fleet.heartbeat(self._fleet.last_stage)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def rolled_back_to(previous: dict[str, Optional[str]]) -> str:
    """The release(s) an automatic rollback returned the hosts to, for one line."""
    releases = sorted({r for r in previous.values() if r})
    return releases[0] if len(releases) == 1 else ", ".join(releases)
