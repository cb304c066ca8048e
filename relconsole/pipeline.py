"""The release engine: checkout → check → upload → supervisor, reported as events.

:func:`run_build` and :func:`run_rollback` are the entry points both front ends use.
They never print and never import a UI; everything reaches the caller through
``sink(event)``, which may be called from several threads at once (one per host)
and must be cheap. Every run is also recorded in the history (``history.py``).

The promises that shape it:
- one build or rollback per service at a time: the deploy lock (``lock.py``) is
  taken before anything else and released however the run ends;
- no host's ``current`` changes until every host holds the new release, and a
  host whose switch fails makes the others switch back (``remote.Fleet``);
- a release whose programs do not stay up is rolled back automatically.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import lock as lk
from . import release as rel
from .checkout import CheckoutError, Commit, checkout, workspace_path, write_release_tar
from .checks import run_check
from .config import Config, Host, Service, Settings
from .errors import Cancelled, StageFailed
from .events import (BuildFinished, BuildStarted, CommitResolved, Event, Output, Sink,
                     StageFinished, StageStarted)
from .history import History, HistoryRecorder
from .remote import Connector, Fleet, describe, failures
from .secrets import Masker, SecretError
from .secrets import resolve as resolve_secret
from .transport import CommandFailed, Transport, open_transport

__all__ = ["Build", "Rollback", "Connector", "run_build", "run_rollback", "force_unlock",
           "ensure_private_dir"]


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` readable by the user only: it holds workspaces and logs."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class Build:
    """One build of one service. Use :func:`run_build` rather than this directly."""

    config: Config
    service: Service
    hosts: list[Host]
    branch: str
    sink: Sink
    cancel: threading.Event
    connector: Connector = open_transport
    action = "build"
    commit: Optional[Commit] = None
    release: Optional[str] = None
    #: Per host, the release ``current`` pointed to before this run switched it.
    previous: dict[str, Optional[str]] = field(default_factory=dict)
    rolled_back: Optional[str] = None
    masker: Masker = field(default_factory=Masker)
    #: Secret values for the checks' environment, read when the build starts.
    secret_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fleet = Fleet(self.service, self.hosts, self.settings, self.sink, self.connector)
        self.local_lock = lk.LocalLock(self.settings.state_dir, self.service.name)

    # -- plumbing ---------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.config.settings

    def say(self, stage: str, line: str, host: Optional[str] = None, stream: str = "info") -> None:
        self.sink(Output(stage=stage, line=line, host=host, stream=stream))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def stage(self, name: str, work: Callable[[], None], cancellable: bool = True) -> None:
        if cancellable:
            self.check_cancel()
        self.sink(StageStarted(stage=name))
        started = time.monotonic()
        try:
            work()
        except (Cancelled, StageFailed) as exc:
            error = "cancelled" if isinstance(exc, Cancelled) else str(exc)
            self.sink(StageFinished(stage=name, ok=False, seconds=time.monotonic() - started,
                                    error=error))
            raise
        self.sink(StageFinished(stage=name, ok=True, seconds=time.monotonic() - started))

    def begin(self, stage: str) -> None:
        """Lock this machine, connect to every host, lock every host: in that order, so a
        second build on this machine is refused at once, before any connection."""
        ensure_private_dir(self.settings.state_dir)
        self.read_secrets()
        info = lk.LockInfo.mine(self.branch, self.action)
        self.local_lock.acquire(info)
        self.fleet.connect(stage)
        self.check_cancel()
        self.fleet.lock(stage, info)

    def read_secrets(self) -> None:
        """Read the secrets this run needs and mask their values from now on."""
        refs = [(f"secret {name}", name, ref) for name, ref in self.service.secrets]
        refs += [(f"host {h.name} key_passphrase", None, h.key_passphrase)
                 for h in self.hosts if h.key_passphrase]
        for label, env_name, ref in refs:
            try:
                value = resolve_secret(ref)
            except SecretError as exc:
                raise StageFailed(f"{label}: {exc}") from None
            self.masker.add([value])
            if env_name:
                self.secret_env[env_name] = value

    def end(self) -> None:
        self.fleet.unlock()
        self.fleet.close()
        self.local_lock.release()

    # -- stages -----------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return workspace_path(self.settings.state_dir, self.service.name)

    def do_checkout(self) -> None:
        self.begin("checkout")
        self.check_cancel()
        try:
            self.commit = checkout(self.workspace, self.service.repo, self.branch,
                                   log=lambda line: self.say("checkout", line),
                                   timeout=self.settings.command_timeout, cancel=self.cancel)
        except CheckoutError as exc:
            raise StageFailed(str(exc)) from None
        self.check_cancel()  # a cancel while git worked cancels this stage, not the next
        self.sink(CommitResolved(branch=self.branch, sha=self.commit.sha,
                                 subject=self.commit.subject, author=self.commit.author))

    def do_checks(self) -> None:
        if not self.service.checks:
            self.say("check", "no checks configured")
            return
        env = dict(os.environ, **self.secret_env, RELCONSOLE_SERVICE=self.service.name,
                   RELCONSOLE_BRANCH=self.branch, RELCONSOLE_SHA=self.commit.sha)
        for check in self.service.checks:
            self.check_cancel()
            self.say("check", f"$ {check.run}  [{check.name}]")
            result = run_check(check, self.workspace, env,
                               emit=lambda line: self.say("check", line, stream="out"),
                               cancel=self.cancel)
            if result.cancelled:
                raise Cancelled()
            if not result.ok:
                raise StageFailed(result.describe())
            self.say("check", f"{check.name} passed in {result.seconds:.1f}s")

    def do_upload(self) -> None:
        self.release = rel.new_release_id(self.commit.sha)
        self.say("upload", f"release {self.release}")
        tmp_dir = ensure_private_dir(self.settings.state_dir / "tmp")
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".tar") as tar:
            try:
                write_release_tar(self.workspace, self.commit.sha, self.service.files, tar)
            except CheckoutError as exc:
                raise StageFailed(str(exc)) from None
            size = tar.seek(0, os.SEEK_END)
            self.say("upload", f"release tar {size / 1e6:.1f} MB to {len(self.hosts)} host(s)")
            outcomes = self.fleet.each("upload", lambda h, t: self.extract(t, Path(tar.name), size))
        failed = failures(outcomes)
        if failed or self.cancel.is_set():
            # Every host: a failed one may have left a partial the remove also clears.
            self.fleet.remove_release("upload", self.release, self.hosts)
            self.check_cancel()
            raise StageFailed(f"upload failed on {describe(failed)} — no host was switched")
        self.previous = self.fleet.switch("upload", {h.name: self.release for h in self.hosts})
        self.fleet.prune("upload", self.service.keep_releases, self.previous)

    def extract(self, t: Transport, tar_path: Path, size: int) -> None:
        self.check_cancel()
        started = time.monotonic()
        with open(tar_path, "rb") as data:
            res = t.run_with_input(rel.extract_command(self.fleet.base(t), self.release),
                                   data, timeout=self.settings.command_timeout, sudo=True,
                                   cancel=self.cancel)
        if not res.ok:
            raise CommandFailed(t.name, "unpacking the release", res)
        self.say("upload", f"unpacked {size / 1e6:.1f} MB into releases/{self.release} "
                           f"in {time.monotonic() - started:.2f}s", host=t.name)

    def do_supervisor(self) -> None:
        failed = self.fleet.restart("supervisor", self.cancel)
        if failed:
            raise StageFailed(describe(failed))

    def roll_back_automatically(self) -> None:
        """After a failed verify or a cancel past the switch: every host back to what ran
        before, restarted, verified."""
        missing = [name for name, release in self.previous.items() if not release]
        if missing or not self.previous:
            self.say("supervisor", f"no previous release on {', '.join(missing) or 'any host'}: "
                                   "cannot roll back automatically", stream="err")
            return

        # Hosts whose supervisord did not answer cannot be restarted by trying again.
        down = set(self.fleet.unreachable_supervisors)

        def work() -> None:
            failed = self.fleet.switch_back("rollback", self.previous)
            if failed:
                raise StageFailed(f"could not switch back: {describe(failed)}")
            failed = self.fleet.restart("rollback", threading.Event(),
                                        hosts=[h for h in self.hosts if h.name not in down])
            if failed:
                raise StageFailed(f"the previous release does not run either: {describe(failed)}")
            for name in sorted(down):
                self.say("rollback", f"current -> releases/{self.previous[name]} again; not "
                                     "restarted: supervisord is not answering", host=name,
                         stream="err")
            self.rolled_back = rolled_back_to(self.previous)
            sha = self.fleet.revision(self.fleet.transports[self.hosts[0].name],
                                      self.previous[self.hosts[0].name])
            self.say("rollback", f"rolled back to release {self.rolled_back} "
                                 f"(sha {(sha or 'unknown')[:12]})")

        try:
            self.stage("rollback", work, cancellable=False)  # a cancel is what got us here
        except StageFailed:
            pass  # reported by the stage; the build has failed either way

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [("checkout", self.do_checkout), ("check", self.do_checks),
                ("upload", self.do_upload), ("supervisor", self.do_supervisor)]

    # -- the whole run ----------------------------------------------------------
    def run(self) -> BuildFinished:
        started = time.monotonic()
        self.sink(BuildStarted(service=self.service.name, branch=self.branch,
                               hosts=tuple(h.name for h in self.hosts), action=self.action))
        error, cancelled = None, False
        try:
            for name, work in self.steps():
                try:
                    self.stage(name, work)
                except (StageFailed, Cancelled):
                    # Once switched, a failed verify or a cancel must not leave the new
                    # release half-started: every host goes back to what ran before.
                    if self.previous:
                        self.roll_back_automatically()
                    raise
        except Cancelled:
            error, cancelled = "cancelled", True
        except StageFailed as exc:
            error = str(exc)
        except Exception as exc:  # a bug: still end cleanly (lock released) and say so
            error = f"internal error: {type(exc).__name__}: {exc}"
            for line in traceback.format_exc().splitlines():  # kept in the history log
                self.say("checkout", line, stream="err")
        finally:
            self.end()
        if self.rolled_back:
            error = f"{error} — rolled back to release {self.rolled_back}"
        finished = BuildFinished(ok=error is None, seconds=time.monotonic() - started,
                                 service=self.service.name,
                                 sha=self.commit.sha if self.commit else None,
                                 release=self.release, error=error, cancelled=cancelled,
                                 rolled_back=self.rolled_back)
        self.sink(finished)
        return finished


def rolled_back_to(previous: dict[str, Optional[str]]) -> str:
    releases = sorted({r for r in previous.values() if r})
    return releases[0] if len(releases) == 1 else ", ".join(releases)


@dataclass
class Rollback(Build):
    """Switch every host back to an earlier release (the previous one, or ``to``)."""

    to: Optional[str] = None
    action = "rollback"

    def do_switch(self) -> None:
        self.begin("switch")
        targets: dict[str, str] = {}

        def find(host: Host, t: Transport) -> None:
            current, releases = self.fleet.list_releases(t)
            if self.to:
                if self.to not in releases:
                    raise StageFailed(f"release {self.to} is not on this host "
                                      f"(it has: {', '.join(releases) or 'none'})")
                targets[host.name] = self.to
                return
            older = [r for r in releases if current and r < current]
            if not older:
                raise StageFailed(f"no release before {current or 'the current one'} to go back to")
            targets[host.name] = older[-1]

        failed = failures(self.fleet.each("switch", find, report=False))
        if failed:
            raise StageFailed(f"cannot roll back: {describe(failed)} — nothing was switched")
        if len(set(targets.values())) > 1:
            listed = ", ".join(f"{h}: {r}" for h, r in targets.items())
            raise StageFailed(f"hosts run different releases, so 'previous' differs ({listed}); "
                              "choose one with --to RELEASE — nothing was switched")
        self.release = next(iter(targets.values()))
        sha = self.fleet.revision(self.fleet.transports[self.hosts[0].name], self.release)
        if sha:
            self.commit = Commit(sha=sha, subject="", author="")
        self.say("switch", f"rolling back to release {self.release} (sha {(sha or 'unknown')[:12]})")
        self.previous = self.fleet.switch("switch", targets)

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [("switch", self.do_switch), ("supervisor", self.do_supervisor)]

    def roll_back_automatically(self) -> None:
        """A rollback whose programs fail is reported, not rolled back again."""


def _recording(config: Config, sink: Sink, trigger: str) -> Sink:
    """The front end's sink plus the history recorder; history trouble never stops a deploy."""
    try:
        recorder = HistoryRecorder(History(config.settings.state_dir), trigger, lk.who())
    except (sqlite3.Error, OSError) as exc:
        sink(Output(stage="checkout", line=f"history not recorded: {exc}", stream="err"))
        return sink
    warned = []

    def both(event: Event) -> None:
        sink(event)
        try:
            recorder(event)
        except sqlite3.Error as exc:
            if not warned:
                warned.append(exc)
                sink(Output(stage=getattr(event, "stage", "checkout"),
                            line=f"history not recorded: {exc}", stream="err"))

    return both


def force_unlock(config: Config, service_name: str, connector: Connector = open_transport,
                 trigger: str = "headless") -> tuple[bool, list[str]]:
    """``--unlock``: remove the service's lock on every host, if no live build holds it.

    Returns (ok, lines to show). Recorded in the history.
    """
    service = config.services[service_name]
    holder = lk.LocalLock(config.settings.state_dir, service.name).holder()
    if holder is not None:
        return False, [f"{service.name} is being deployed from this machine right now by "
                       f"{holder.describe()}; cancel that build instead of unlocking"]
    lines: list[str] = []
    fleet = Fleet(service, config.hosts_of(service), config.settings,
                  lambda e: lines.append(f"{e.host}: {e.line}") if isinstance(e, Output) else None,
                  connector)

    def remove(host: Host, t: Transport) -> None:
        found = lk.parse_holder(t.run(lk.read_command(fleet.base(t)),
                                      timeout=config.settings.command_timeout, sudo=True).stdout)
        if found is None:
            lines.append(f"{host.name}: not locked")
            return
        fleet.run(t, lk.force_release_command(fleet.base(t)), "removing the lock")
        lines.append(f"{host.name}: removed the lock held by {found.describe()}")

    ok = True
    try:
        fleet.connect("unlock")
        failed = failures(fleet.each("unlock", remove, report=False))
    except StageFailed as exc:
        failed, ok = {}, False
        lines.append(str(exc))
    finally:
        fleet.close()
    lines += [f"{name}: {error}" for name, error in failed.items()]
    ok = ok and not failed
    try:
        history = History(config.settings.state_dir)
        row, _ = history.start(service=service.name, action="unlock", who=lk.who(),
                               trigger=trigger, branch=None, hosts=list(service.hosts))
        history.update(row, result="success" if ok else "failed", duration=0.0,
                       log="\n".join(lines))
        history.close()
    except (sqlite3.Error, OSError) as exc:
        lines.append(f"history not recorded: {exc}")
    return ok, lines


def _hosts(config: Config, service: Service, only_hosts: Optional[Sequence[str]]) -> list[Host]:
    hosts = config.hosts_of(service)
    return [h for h in hosts if h.name in set(only_hosts)] if only_hosts else hosts


def run_build(config: Config, service_name: str, sink: Sink,
              cancel: Optional[threading.Event] = None, *, branch: Optional[str] = None,
              only_hosts: Optional[Sequence[str]] = None, trigger: str = "headless",
              connector: Connector = open_transport) -> BuildFinished:
    """Build and deploy ``service_name``; every step is reported through ``sink``.

    Args:
        config: the loaded configuration.
        service_name: a key of ``config.services`` (the caller validated it).
        sink: called with every event, from several threads; must be thread-safe.
        cancel: set it to stop the build between steps (a running check is killed).
        branch: overrides the service's branch (already validated).
        only_hosts: deploy to these of the service's hosts only.
        trigger: who asked, for the history ("tui" or "headless").
        connector: opens a transport to a host (tests and sandboxes swap it).

    Returns:
        The final event, also sent to ``sink``.
    """
    service = config.services[service_name]
    masker = Masker()
    return Build(config=config, service=service, hosts=_hosts(config, service, only_hosts),
                 branch=branch or service.branch,
                 sink=masker.wrap(_recording(config, sink, trigger)), masker=masker,
                 cancel=cancel or threading.Event(), connector=connector).run()


def run_rollback(config: Config, service_name: str, sink: Sink,
                 cancel: Optional[threading.Event] = None, *, to: Optional[str] = None,
                 trigger: str = "headless", connector: Connector = open_transport) -> BuildFinished:
    """Switch every host of ``service_name`` back to the previous release (or ``to``),
    all or none, then restart and verify its programs as a build does."""
    service = config.services[service_name]
    masker = Masker()
    return Rollback(config=config, service=service, hosts=config.hosts_of(service),
                    branch=service.branch, sink=masker.wrap(_recording(config, sink, trigger)),
                    masker=masker, cancel=cancel or threading.Event(), connector=connector,
                    to=to).run()
