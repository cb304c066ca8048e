"""The release engine: checkout → check → upload → supervisor, reported as events.

This is what front ends import: :func:`run_build` here, and the other entry points
(:func:`run_rollback`, :func:`force_unlock`) from their modules. They never print and
never import a UI; everything reaches the caller through ``sink(event)``, which may be
called from several threads at once (one per host) and must be cheap. Every run is
also recorded in the history (:mod:`relconsole.history`).

The promises that shape it:
- one build or rollback per service at a time: the deploy lock (:mod:`relconsole.lock`)
  is taken before anything else and released however the run ends (:mod:`relconsole.run`);
- no host's ``current`` changes until every host holds the new release, and a host
  whose switch fails makes the others switch back (:class:`relconsole.fleet.Fleet`);
- a release whose programs do not stay up is rolled back automatically.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, Optional, cast

from relconsole import release as rel
from relconsole.config import Config, Host, Service
from relconsole.errors import Cancelled, RelconsoleError, StageFailed
from relconsole.events import BuildFinished, CommitResolved, Sink, Stage, Switched
from relconsole.fanout import describe
from relconsole.hosts.connect import Connector
from relconsole.notify import Postman, reporting
from relconsole.rollback import run_rollback
from relconsole.run import Run, Step, rolled_back_to
from relconsole.secrets import Masker
from relconsole.stages.check import run_check
from relconsole.stages.checkout import checkout, workspace_path
from relconsole.stages.upload import extract, write_release_tar
from relconsole.state import private_dir
from relconsole.unlock import force_unlock

__all__ = ["Build", "Connector", "force_unlock", "run_build", "run_rollback"]


@dataclass
class Build(Run):
    """One build of one service. Use :func:`run_build` rather than this directly."""

    action: ClassVar[str] = "build"

    def steps(self) -> list[Step]:
        return [
            (Stage.CHECKOUT, self.do_checkout),
            (Stage.CHECK, self.do_checks),
            (Stage.UPLOAD, self.do_upload),
            (Stage.SUPERVISOR, self.do_supervisor),
        ]

    @property
    def workspace(self) -> Path:
        return workspace_path(self.settings.state_dir, self.service.name)

    def do_checkout(self) -> None:
        self.begin(Stage.CHECKOUT)
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
        tmp_dir = private_dir(self.settings.state_dir / "tmp")
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".tar") as tar:
            write_release_tar(
                self.workspace, self.commit.sha, self.service.files, cast(BinaryIO, tar)
            )
            size = tar.seek(0, os.SEEK_END)
            self.say(Stage.UPLOAD, f"release tar {size / 1e6:.1f} MB to {len(self.hosts)} host(s)")
            outcomes = self.fleet.each(
                Stage.UPLOAD,
                lambda h, t: extract(
                    t,
                    self.fleet.base(t),
                    release,
                    Path(tar.name),
                    timeout=self.settings.command_timeout,
                    cancel=self.cancel,
                    log=lambda line: self.say(Stage.UPLOAD, line, host=h.name),
                ),
            )
        if outcomes.failed or self.cancel.is_set():
            # Every host: a failed one may have left a partial the remove also clears.
            self.fleet.remove_release(Stage.UPLOAD, release, self.hosts)
            self.check_cancel()
            raise StageFailed(
                f"upload failed on {outcomes.describe_failures()} — no host was switched"
            )
        self.previous = self.fleet.switch(Stage.UPLOAD, {h.name: release for h in self.hosts})
        self.sink(Switched(release=release))
        self.fleet.prune(Stage.UPLOAD, self.service.keep_releases, self.previous)

    def roll_back_automatically(self) -> None:
        """After a failed verify or a cancel past the switch: every host back to what ran
        before, restarted, verified."""
        missing = [name for name, release in self.previous.items() if not release]
        if missing or not self.previous:
            self.say(
                Stage.SUPERVISOR,
                f"no previous release on {', '.join(missing) or 'any host'}"
                ": cannot roll back automatically",
                stream="err",
            )
            return

        # Hosts whose supervisord did not answer cannot be restarted by trying again.
        down = set(self.fleet.unreachable_supervisors)

        def work() -> None:
            failed = self.fleet.switch_back(Stage.ROLLBACK, self.previous)
            if failed:
                raise StageFailed(f"could not switch back: {describe(failed)}")
            failed = self.fleet.restart(
                Stage.ROLLBACK,
                threading.Event(),
                hosts=[h for h in self.hosts if h.name not in down],
            )
            if failed:
                raise StageFailed(f"the previous release does not run either: {describe(failed)}")
            for name in sorted(down):
                self.say(
                    Stage.ROLLBACK,
                    f"current -> releases/{self.previous[name]} again; not "
                    "restarted: supervisord is not answering",
                    host=name,
                    stream="err",
                )
            self.rolled_back = rolled_back_to(self.previous)
            first = self.hosts[0].name
            release = self.previous[first]
            sha = self.fleet.revision(self.fleet.transports[first], release) if release else None
            self.say(
                Stage.ROLLBACK,
                f"rolled back to release {self.rolled_back} (sha {(sha or 'unknown')[:12]})",
            )

        try:
            self.stage(Stage.ROLLBACK, work, cancellable=False)  # a cancel is what got us here
        except StageFailed:
            pass  # reported by the stage; the build has failed either way


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
