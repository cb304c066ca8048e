"""Rollback: every host back to an earlier release, in the service's batches.

:func:`run_rollback` is the engine's entry (``--rollback``, the console's ``R``);
:func:`plan_rollback` tells a front end beforehand what it can go back to. The rule
for "the previous release" lives in :func:`relconsole.release.previous_release`, used
by both.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

from relconsole import release as rel
from relconsole.config import Config, Host, Service, Settings
from relconsole.errors import StageFailed
from relconsole.events import BuildFinished, Sink, Stage
from relconsole.fanout import fan_out
from relconsole.hosts.base import Transport
from relconsole.hosts.connect import Connector, OnHost
from relconsole.notify import Postman, reporting
from relconsole.run import Run, Step
from relconsole.secrets import Masker
from relconsole.stages.checkout import Commit


@dataclass
class Rollback(Run):
    """Every host back to an earlier release (the previous one, or ``to``): the switch
    stage finds it on every host (all agree, or nothing happens); the supervisor stage
    switches, restarts and probes batch by batch, as a build goes live."""

    to: Optional[str] = None
    action: ClassVar[str] = "rollback"

    def steps(self) -> list[Step]:
        return [(Stage.SWITCH, self.do_switch), (Stage.SUPERVISOR, self.do_supervisor)]

    def do_switch(self) -> None:
        """Where each host goes back to (all to one release, or nothing happens); the
        supervisor stage then switches and restarts them, batch by batch."""
        self.begin(Stage.SWITCH)
        targets: dict[str, str] = {}

        def find(host: Host, t: Transport) -> None:
            current, releases, verdicts = self.fleet.listing(t)
            if self.to:
                if self.to not in releases:
                    raise StageFailed(
                        f"release {self.to} is not on this host "
                        f"(it has: {', '.join(releases) or 'none'})"
                    )
                if (verdicts or {}).get(self.to) == rel.FAILED:
                    raise StageFailed(f"release {self.to} failed when it went live here")
                target = self.to
            else:
                found = rel.rollback_target(current, releases, verdicts)
                if found is None:
                    raise StageFailed(
                        f"no known-good release before {current or 'the current one'} to go "
                        "back to (a release that failed is never a target)"
                    )
                target = found
            targets[host.name] = target
            self.say(
                Stage.SWITCH,
                f"releases/{current or 'none'} -> releases/{target} (in the supervisor stage)",
                host=host.name,
            )

        found = self.fleet.each(Stage.SWITCH, find)
        if found.failed:
            raise StageFailed(
                f"cannot roll back: {found.describe_failures()} — nothing was switched"
            )
        if len(set(targets.values())) > 1:
            listed = ", ".join(f"{h}: {r}" for h, r in targets.items())
            raise StageFailed(
                f"hosts run different releases, so 'previous' differs ({listed}); "
                "choose one with --to RELEASE — nothing was switched"
            )
        self.release = next(iter(targets.values()))
        sha = self.fleet.revision(self.fleet.transports[self.hosts[0].name], self.release)
        if sha:
            self.commit = Commit(sha=sha, subject="", author="")
        self.say(
            Stage.SWITCH, f"rolling back to release {self.release} (sha {(sha or 'unknown')[:12]})"
        )
        self.targets = targets


def run_rollback(
    config: Config,
    service_name: str,
    sink: Sink,
    cancel: Optional[threading.Event] = None,
    *,
    to: Optional[str] = None,
    trigger: str = "headless",
    connector: Optional[Connector] = None,
    lock_wait: float = 0.0,
    postman: Optional[Postman] = None,
) -> BuildFinished:
    """Switch every host of ``service_name`` back to the previous release (or ``to``),
    all or none, restarted, verified and probed in the service's batches as a build goes
    live; a batch that fails takes the hosts that switched back where they were."""
    service = config.services[service_name]
    masker = Masker()
    return Rollback(
        config=config,
        service=service,
        hosts=config.hosts_of(service),
        branch=service.branch,
        sink=reporting(config, sink, trigger, masker, postman),
        masker=masker,
        cancel=cancel or threading.Event(),
        connector=connector,
        to=to,
        lock_wait=lock_wait,
    ).run()


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class HostReleases:
    host: str
    current: Optional[str] = None
    releases: tuple[str, ...] = ()  # oldest first
    error: Optional[str] = None
    #: Each release's verdict when it went live (None: this host keeps no record).
    verdicts: Optional[dict[str, str]] = None

    @property
    def previous(self) -> Optional[str]:
        """Where a plain rollback takes this host."""
        return rel.rollback_target(self.current, self.releases, self.verdicts)

    @property
    def failed(self) -> set[str]:
        """Releases that failed when they went live here: never a rollback target."""
        return {r for r, v in (self.verdicts or {}).items() if v == rel.FAILED}


def read_releases(
    service: Service, hosts: Sequence[Host], on_host: OnHost, settings: Settings
) -> list[HostReleases]:
    """Each host's current release and every release it holds, in parallel (each read
    bounded by ``settings.command_timeout``)."""
    timeout = settings.command_timeout

    def one(host: Host) -> HostReleases:
        res = on_host(
            host,
            lambda t: t.run(
                rel.list_releases_command(t.path(service.path)), timeout=timeout, sudo=True
            ),
        )
        if not res.ok:
            return HostReleases(host.name, error=f"cannot list releases: {res.tail(2)}")
        current, releases = rel.parse_releases(res.stdout)
        return HostReleases(
            host.name, current, tuple(releases), None, rel.parse_verdicts(res.stdout)
        )

    results = fan_out(
        hosts, lambda h: h.name, one, max_parallel=settings.max_parallel, thread_name="releases"
    )
    return [o.value if o.ok and o.value else HostReleases(o.host, error=o.error) for o in results]


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback can do: the releases every host holds, and the usual target."""

    hosts: tuple[HostReleases, ...]
    candidates: tuple[str, ...]  # held by every host, newest first, not current everywhere
    default: Optional[str]  # every host's previous release, when they agree

    @property
    def errors(self) -> list[HostReleases]:
        return [h for h in self.hosts if h.error]

    @property
    def drift(self) -> bool:
        return len({h.current for h in self.hosts if not h.error}) > 1


def plan_rollback(found: Sequence[HostReleases]) -> RollbackPlan:
    ok = [h for h in found if not h.error]
    if not ok or len(ok) < len(found):
        return RollbackPlan(tuple(found), (), None)
    common = set(ok[0].releases).intersection(*(h.releases for h in ok[1:]))
    common -= set().union(*(h.failed for h in ok))
    currents = {h.current for h in ok}
    if len(currents) == 1:
        common -= currents
    previous = {h.previous for h in ok}
    default = next(iter(previous)) if len(previous) == 1 and None not in previous else None
    return RollbackPlan(tuple(found), tuple(sorted(common, reverse=True)), default)


def release_subject(workspace: Path, release: str) -> Optional[str]:
    """The subject of the commit a release was built from, if the workspace knows it."""
    sha = release.rsplit("-", 1)[-1]
    try:
        import git

        return str(git.Repo(workspace).commit(sha).summary)
    except Exception:  # no workspace, unknown commit: the release id says enough
        return None
