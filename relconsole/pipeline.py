"""The release engine: checkout → check → upload → setup → supervisor, reported as events.

This is what front ends import: :func:`run_build` here, and the other entry points
(:func:`run_rollback`, :func:`force_unlock`) from their modules. They never print and
never import a UI; everything reaches the caller through ``sink(event)``, which may be
called from several threads at once (one per host) and must be cheap. Every run is
also recorded in the history (:mod:`relconsole.history`).

The promises that shape it:
- one build or rollback per service at a time: the deploy lock (:mod:`relconsole.lock`)
  is taken before anything else and released however the run ends (:mod:`relconsole.run`);
- no host's ``current`` changes until every host holds the new release and its setup
  passed everywhere, and a host whose switch fails makes its batch switch back
  (:class:`relconsole.fleet.Fleet`);
- hosts go live in batches (:mod:`relconsole.rollout`); a release whose programs do
  not stay up or whose health probes never pass is rolled back automatically.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from relconsole import release as rel
from relconsole.config import Config, Host, Service
from relconsole.errors import Cancelled, RelconsoleError, StageFailed
from relconsole.events import BuildFinished, CommitResolved, Sink, Stage
from relconsole.fanout import describe
from relconsole.hosts.base import Transport, TransportError
from relconsole.hosts.connect import Connector
from relconsole.notify import Postman, reporting
from relconsole.rollback import run_rollback
from relconsole.run import Run, Step
from relconsole.secrets import Masker
from relconsole.stages.check import run_check
from relconsole.stages.checkout import checkout, workspace_path
from relconsole.stages.send_release import ReleaseStreams, Sent, send_release
from relconsole.stages.setup import SetupFailed, run_setup
from relconsole.state import private_dir
from relconsole.unlock import force_unlock

__all__ = ["Build", "Connector", "force_unlock", "run_build", "run_rollback"]


@dataclass
class Build(Run):
    """One build of one service. Use :func:`run_build` rather than this directly."""

    action: ClassVar[str] = "build"
    #: Hosts holding the new release, not live yet: what a failure removes it from.
    holding: set[str] = field(default_factory=set)
    #: How the release reached each host (a delta or the full tree, and its size).
    sent: dict[str, Sent] = field(default_factory=dict)

    def steps(self) -> list[Step]:
        return [
            (Stage.CHECKOUT, self.do_checkout),
            (Stage.CHECK, self.do_checks),
            (Stage.UPLOAD, self.do_upload),
            (Stage.SETUP, self.do_setup),
            (Stage.SUPERVISOR, self.do_supervisor),
        ]

    @property
    def workspace(self) -> Path:
        return workspace_path(self.settings.state_dir, self.service.name)

    def do_checkout(self) -> None:
        with self.hosts_locked_meanwhile(Stage.CHECKOUT):  # connect and lock meanwhile
            self.check_cancel()
            self.commit = checkout(
                self.workspace,
                self.service.repo,
                self.branch,
                log=lambda line: self.say(Stage.CHECKOUT, line),
                timeout=self.settings.command_timeout,
                cancel=self.cancel,
            )
        self.check_cancel()  # a cancel while git worked cancels this stage, not the next
        self.sink(
            CommitResolved(
                branch=self.branch,
                sha=self.commit.sha,
                subject=self.commit.subject,
                author=self.commit.author,
            )
        )

    def do_checks(self) -> None:
        if not self.service.checks:
            self.say(Stage.CHECK, "no checks configured")
            return
        assert self.commit is not None
        env = dict(
            os.environ,
            **self.secret_env,
            RELCONSOLE_SERVICE=self.service.name,
            RELCONSOLE_BRANCH=self.branch,
            RELCONSOLE_SHA=self.commit.sha,
        )
        for check in self.service.checks:
            self.check_cancel()
            self.say(Stage.CHECK, f"$ {check.run}  [{check.name}]")
            result = run_check(
                check,
                self.workspace,
                env,
                emit=lambda line: self.say(Stage.CHECK, line, stream="out"),
                cancel=self.cancel,
            )
            if result.cancelled:
                raise Cancelled()
            if not result.ok:
                raise StageFailed(result.describe())
            self.say(Stage.CHECK, f"{check.name} passed in {result.seconds:.1f}s")

    def do_upload(self) -> None:
        assert self.commit is not None
        release = self.release = rel.new_release_id(self.commit.sha)
        self.say(Stage.UPLOAD, f"release {release}")
        shared = self.service.shared
        streams = ReleaseStreams(
            self.workspace,
            self.commit.sha,
            self.service.files,
            shared,
            private_dir(self.settings.state_dir / "tmp"),
            # setup commands may rewrite a tracked file in place (npm, `>>`): copied,
            # the release a rollback would go back to cannot change with it
            link=not self.service.setup,
        )

        def upload_one(host: Host, t: Transport) -> None:
            self.sent[host.name] = send_release(
                t,
                self.fleet.base(t),
                release,
                streams,
                timeout=self.settings.command_timeout,
                cancel=self.cancel,
                log=lambda line: self.say(Stage.UPLOAD, line, host=host.name),
                deployed=self.fleet.deployed_at_lock.get(host.name),
            )
            self.holding.add(host.name)
            if shared:
                command = rel.link_shared_command(self.fleet.base(t), release, shared)
                self.fleet.run(t, command, "linking shared")
                self.say(
                    Stage.UPLOAD, f"linked shared {', '.join(map(str, shared))}", host=host.name
                )

        try:
            outcomes = self.fleet.each(Stage.UPLOAD, upload_one)
        finally:
            streams.close()
        if outcomes.failed or self.cancel.is_set():
            self.remove_new_release(Stage.UPLOAD)
            self.check_cancel()
            raise StageFailed(
                f"upload failed on {outcomes.describe_failures()} — no host was switched"
            )
        self.targets = {h.name: release for h in self.hosts}

    def do_setup(self) -> None:
        commands = self.service.setup
        if not commands:
            self.say(Stage.SETUP, "no setup configured")
            return
        release = self.release
        assert self.commit is not None and release is not None
        env = {"RELCONSOLE_SERVICE": self.service.name, "RELCONSOLE_SHA": self.commit.sha}
        if self.service.setup_secrets:
            env.update(self.secret_env)
        failed_somewhere = threading.Event()
        stop = EitherSet(self.cancel, failed_somewhere)

        def setup_one(host: Host, t: Transport) -> None:
            base = self.fleet.base(t)
            release_dir = rel.release_dir(base, release)
            try:
                run_setup(
                    t,
                    commands,
                    base=base,
                    release_dir=release_dir,
                    env={**env, **dict(host.vars), "RELCONSOLE_RELEASE": release_dir},
                    stop=stop,
                    log=lambda line, stream: self.say(Stage.SETUP, line, host.name, stream),
                )
            except (SetupFailed, TransportError):
                failed_somewhere.set()  # the other hosts' setup stops: nobody switches
                raise

        outcomes = self.fleet.each(Stage.SETUP, setup_one)
        if outcomes.ok and not self.cancel.is_set():
            return
        self.remove_new_release(Stage.SETUP)
        self.check_cancel()
        failed = {o.host: o.error or "failed" for o in outcomes if not o.ok and not o.cancelled}
        raise StageFailed(f"setup failed on {describe(failed)} — no host was switched")

    def do_supervisor(self) -> None:
        super().do_supervisor()
        self.holding.clear()
        self.fleet.prune(Stage.SUPERVISOR, self.service.keep_releases, self.previous, self.targets)

    def remove_new_release(self, stage: Stage) -> None:
        """The new release off every host that holds it and never switched to it."""
        if self.release is None:
            return
        left = [h for h in self.hosts if h.name not in self.previous]
        self.holding.clear()
        if left:
            self.fleet.remove_release(stage, self.release, left)

    def after_failure(self, cancelled: bool) -> None:
        super().after_failure(cancelled)
        if self.holding:  # a cancel between stages, or hosts a failed rollout never reached
            self.remove_new_release(self.current_stage or Stage.UPLOAD)


class EitherSet:
    """Set when either event is: what a host's setup checks (the run's cancel, or
    another host's failure)."""

    def __init__(self, first: threading.Event, second: threading.Event):
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


class BranchRefused(RelconsoleError):
    """The service's ``branches`` do not allow the branch: nothing was done."""


def hosts_to_deploy(
    config: Config, service: Service, only_hosts: Optional[Sequence[str]]
) -> list[Host]:
    hosts = config.hosts_of(service)
    return [h for h in hosts if h.name in set(only_hosts)] if only_hosts else hosts


def run_build(
    config: Config,
    service_name: str,
    sink: Sink,
    cancel: Optional[threading.Event] = None,
    *,
    branch: Optional[str] = None,
    only_hosts: Optional[Sequence[str]] = None,
    trigger: str = "headless",
    connector: Optional[Connector] = None,
    lock_wait: float = 0.0,
    postman: Optional[Postman] = None,
) -> BuildFinished:
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
        lock_wait: seconds to wait for a deploy lock another run holds.
        postman: delivers the ``[notify]`` notifications about the run (None: none
            are sent); the front end shows its failures and waits for it.

    Returns:
        The final event, also sent to ``sink``.

    Raises:
        BranchRefused: before anything happens, when the service's ``branches`` do not
            allow the branch.
    """
    service = config.services[service_name]
    refused = service.refuse_branch(branch or service.branch)
    if refused:
        raise BranchRefused(refused)
    masker = Masker()
    return Build(
        config=config,
        service=service,
        hosts=hosts_to_deploy(config, service, only_hosts),
        branch=branch or service.branch,
        sink=reporting(config, sink, trigger, masker, postman),
        masker=masker,
        cancel=cancel or threading.Event(),
        connector=connector,
        lock_wait=lock_wait,
    ).run()
