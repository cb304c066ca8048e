"""The release engine: checkout → check → upload → supervisor, reported as events.

:func:`run_build` is the one entry point both front ends use. It never prints and
never imports a UI; everything it does reaches the caller through ``sink(event)``,
which may be called from several threads at once (one per host) and must be cheap.

The promise that shapes the upload stage: no host's ``current`` changes until every
host holds the new release. Extraction happens in parallel into a fresh release
directory; only when all hosts succeeded does the switch run, and a host whose
switch fails makes the others switch back.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import release as rel
from .checkout import CheckoutError, Commit, checkout, write_release_tar
from .checks import run_check
from .config import Config, FileUpload, Host, Service, Settings
from .errors import Cancelled, StageFailed
from .events import (BuildFinished, BuildStarted, CommitResolved, HostFinished, Output, Sink,
                     StageFinished, StageStarted)
from .supervise import restart_and_verify
from .transport import CommandFailed, Transport, TransportError, open_transport

Connector = Callable[[Host, Settings], Transport]


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` readable by the user only: it holds workspaces and logs."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class _HostOutcome:
    ok: bool
    error: Optional[str] = None
    value: object = None


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
    transports: dict[str, Transport] = field(default_factory=dict)
    commit: Optional[Commit] = None
    release: Optional[str] = None
    #: Per host, the release ``current`` pointed to before this build switched it.
    previous: dict[str, Optional[str]] = field(default_factory=dict)

    # -- plumbing ---------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.config.settings

    def say(self, stage: str, line: str, host: Optional[str] = None, stream: str = "info") -> None:
        self.sink(Output(stage=stage, line=line, host=host, stream=stream))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def stage(self, name: str, work: Callable[[], None]) -> None:
        self.check_cancel()
        self.sink(StageStarted(stage=name))
        started = time.monotonic()
        try:
            work()
        except Cancelled:
            self.sink(StageFinished(stage=name, ok=False, seconds=time.monotonic() - started,
                                    error="cancelled"))
            raise
        except StageFailed as exc:
            self.sink(StageFinished(stage=name, ok=False, seconds=time.monotonic() - started,
                                    error=str(exc)))
            raise
        self.sink(StageFinished(stage=name, ok=True, seconds=time.monotonic() - started))

    def each_host(self, stage: str, work: Callable[[Host, Transport], object],
                  hosts: Optional[Sequence[Host]] = None, report: bool = True) -> dict[str, _HostOutcome]:
        """Run ``work`` on every host in parallel; one thread per host and connection."""
        hosts = list(self.hosts if hosts is None else hosts)

        def one(host: Host) -> _HostOutcome:
            started = time.monotonic()
            try:
                outcome = _HostOutcome(True, value=work(host, self.transports.get(host.name)))
            except Cancelled:
                outcome = _HostOutcome(False, "cancelled")
            except (TransportError, StageFailed, CheckoutError) as exc:
                outcome = _HostOutcome(False, getattr(exc, "message", None) or str(exc))
            except Exception as exc:  # a bug must not leave a fleet half-done: report it
                outcome = _HostOutcome(False, f"internal error: {type(exc).__name__}: {exc}")
            if report:
                self.sink(HostFinished(stage=stage, host=host.name, ok=outcome.ok,
                                       seconds=time.monotonic() - started, error=outcome.error))
            return outcome

        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix=stage) as pool:
            return dict(zip((h.name for h in hosts), pool.map(one, hosts)))

    def host_logger(self, stage: str, host: str) -> Callable[[str], None]:
        return lambda line: self.say(stage, line, host=host, stream="out")

    # -- stages -----------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return self.settings.state_dir / "workspaces" / self.service.name

    def do_checkout(self) -> None:
        ensure_private_dir(self.settings.state_dir)
        try:
            self.commit = checkout(self.workspace, self.service.repo, self.branch,
                                   log=lambda line: self.say("checkout", line))
        except CheckoutError as exc:
            raise StageFailed(str(exc)) from None
        self.sink(CommitResolved(branch=self.branch, sha=self.commit.sha,
                                 subject=self.commit.subject, author=self.commit.author))

    def do_checks(self) -> None:
        if not self.service.checks:
            self.say("check", "no checks configured")
            return
        env = dict(os.environ, RELCONSOLE_SERVICE=self.service.name,
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
        self.connect_all()
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
            outcomes = self.each_host("upload", lambda h, t: self.extract(t, Path(tar.name), size))
        failed = {name: o.error for name, o in outcomes.items() if not o.ok}
        if failed or self.cancel.is_set():
            self.remove_release([h for h in self.hosts if outcomes[h.name].ok])
            self.check_cancel()
            raise StageFailed("upload failed on " + "; ".join(f"{n}: {e}" for n, e in failed.items())
                              + " — no host was switched")
        self.switch_all()
        self.each_host("upload", self.prune, report=False)

    def connect_all(self) -> None:
        """One connection per host, opened up front and reused by every later step."""

        def open_one(host: Host, _unused) -> None:
            started = time.monotonic()
            self.transports[host.name] = self.connector(host, self.settings)
            self.say("upload", f"connected to {host.label} in {time.monotonic() - started:.2f}s",
                     host=host.name)

        outcomes = self.each_host("upload", open_one, report=False)
        failed = {name: o for name, o in outcomes.items() if not o.ok}
        for name, outcome in failed.items():
            self.sink(HostFinished(stage="upload", host=name, ok=False, seconds=0.0,
                                   error=outcome.error))
        if failed:
            raise StageFailed("cannot reach " + "; ".join(
                f"{name}: {o.error}" for name, o in failed.items()) + " — nothing was uploaded")

    def extract(self, t: Transport, tar_path: Path, size: int) -> None:
        self.check_cancel()
        started = time.monotonic()
        with open(tar_path, "rb") as data:
            res = t.run_with_input(rel.extract_command(t.path(self.service.path), self.release),
                                   data, timeout=self.settings.command_timeout, sudo=True)
        if not res.ok:
            raise CommandFailed(t.name, "unpacking the release", res)
        seconds = time.monotonic() - started
        self.say("upload", f"unpacked {size / 1e6:.1f} MB into releases/{self.release} "
                           f"in {seconds:.2f}s", host=t.name)

    def remove_release(self, hosts: Sequence[Host]) -> None:
        """Best effort: take a release that will never be switched to off ``hosts``."""

        def remove(host: Host, t: Transport) -> None:
            res = t.run(rel.remove_release_command(t.path(self.service.path), self.release),
                        timeout=self.settings.command_timeout, sudo=True)
            note = "removed the partial release" if res.ok else f"could not remove it: {res.tail(2)}"
            self.say("upload", note, host=host.name)

        self.each_host("upload", remove, hosts=hosts, report=False)

    def switch_all(self) -> None:
        """Point every host's ``current`` at the new release, or none of them.

        Not interruptible: a cancel arriving now is honoured after the switch, so
        the fleet is never left half-switched.
        """
        previous = self.previous

        def switch(host: Host, t: Transport) -> None:
            base = t.path(self.service.path)
            res = t.run(rel.switch_command(base, self.release, self.staged_files(t)),
                        timeout=self.settings.command_timeout, sudo=True)
            if not res.ok:
                raise CommandFailed(t.name, "switching current", res)
            previous[host.name] = rel.parse_previous(res.stdout)
            self.say("upload", f"current -> releases/{self.release} "
                               f"(was {previous[host.name] or 'none'})", host=host.name)

        outcomes = self.each_host("upload", switch)
        failed = {name: o.error for name, o in outcomes.items() if not o.ok}
        if not failed:
            return
        switched = [h for h in self.hosts if h.name in previous]
        self.each_host("upload", lambda h, t: self.switch_back(h, t, previous[h.name]),
                       hosts=switched, report=False)
        raise StageFailed("switch failed on " + "; ".join(f"{n}: {e}" for n, e in failed.items())
                          + f" — switched {len(switched)} host(s) back")

    def switch_back(self, host: Host, t: Transport, release: Optional[str]) -> None:
        base = t.path(self.service.path)
        command = (rel.switch_command(base, release, self.staged_files(t)) if release
                   else rel.unlink_current_command(base))
        res = t.run(command, timeout=self.settings.command_timeout, sudo=True)
        if not res.ok:
            raise CommandFailed(t.name, "switching back", res)
        self.say("upload", f"switched back to {release or 'no release'}", host=host.name)

    def staged_files(self, t: Transport) -> list[FileUpload]:
        return [FileUpload(u.src, t.path(u.dest)) for u in self.service.files]

    def prune(self, host: Host, t: Transport) -> None:
        base = t.path(self.service.path)
        listing = t.run(rel.list_releases_command(base), timeout=self.settings.command_timeout,
                        sudo=True)
        current, releases = rel.parse_releases(listing.stdout)
        doomed = rel.releases_to_prune(releases, self.service.keep_releases, current,
                                       self.previous.get(host.name))
        command = rel.prune_command(base, doomed)
        if command is None:
            return
        res = t.run(command, timeout=self.settings.command_timeout, sudo=True)
        if res.ok:
            self.say("upload", f"pruned {len(doomed)} old release(s)", host=host.name)
        else:  # a warning: the release is live, only housekeeping failed
            self.say("upload", f"could not prune old releases: {res.tail(2)}", host=host.name,
                     stream="err")

    def do_supervisor(self) -> None:
        def restart(host: Host, t: Transport) -> None:
            restart_and_verify(t, host, self.service.programs,
                               timeout=self.settings.command_timeout,
                               log=self.host_logger("supervisor", host.name), cancel=self.cancel)

        outcomes = self.each_host("supervisor", restart)
        if any(o.error == "cancelled" for o in outcomes.values()):
            raise Cancelled()
        failed = {name: o.error for name, o in outcomes.items() if not o.ok}
        if failed:
            raise StageFailed("; ".join(f"{n}: {e}" for n, e in failed.items()))

    # -- the whole build --------------------------------------------------------
    def run(self) -> BuildFinished:
        started = time.monotonic()
        self.sink(BuildStarted(service=self.service.name, branch=self.branch,
                               hosts=tuple(h.name for h in self.hosts)))
        error, cancelled = None, False
        try:
            self.stage("checkout", self.do_checkout)
            self.stage("check", self.do_checks)
            self.stage("upload", self.do_upload)
            self.stage("supervisor", self.do_supervisor)
        except Cancelled:
            error, cancelled = "cancelled", True
        except StageFailed as exc:
            error = str(exc)
        finally:
            self.close()
        finished = BuildFinished(ok=error is None, seconds=time.monotonic() - started,
                                 service=self.service.name,
                                 sha=self.commit.sha if self.commit else None,
                                 release=self.release, error=error, cancelled=cancelled)
        self.sink(finished)
        return finished

    def close(self) -> None:
        for t in self.transports.values():
            try:
                t.close()
            except Exception:  # closing a dead connection must not hide the real outcome
                pass
        self.transports.clear()


def run_build(config: Config, service_name: str, sink: Sink,
              cancel: Optional[threading.Event] = None, *, branch: Optional[str] = None,
              only_hosts: Optional[Sequence[str]] = None,
              connector: Connector = open_transport) -> BuildFinished:
    """Build and deploy ``service_name``; every step is reported through ``sink``.

    Args:
        config: the loaded configuration.
        service_name: a key of ``config.services`` (the caller validated it).
        sink: called with every event, from several threads; must be thread-safe.
        cancel: set it to stop the build between steps (a running check is killed).
        branch: overrides the service's branch (already validated).
        only_hosts: deploy to these of the service's hosts only.
        connector: opens a transport to a host (tests and sandboxes swap it).

    Returns:
        The final event, also sent to ``sink``.
    """
    service = config.services[service_name]
    hosts = config.hosts_of(service)
    if only_hosts:
        hosts = [h for h in hosts if h.name in set(only_hosts)]
    build = Build(config=config, service=service, hosts=hosts, branch=branch or service.branch,
                  sink=sink, cancel=cancel or threading.Event(), connector=connector)
    return build.run()
