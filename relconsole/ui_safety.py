"""What the console reads besides process status: deploy locks, each service's last run,
the releases a rollback can go back to, the commits not deployed yet.

Blocking calls for the main screen's thread workers, built on the engine's own pieces
(``lock``, ``history``, ``deployed``, ``release``); no Textual here. Remote reads go
through ``StatusPoller.on_host``, so they reuse the poller's open connections.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from . import lock as lk
from . import release as rel
from .checkout import Commit, workspace_path
from .config import Config, Host, Service
from .deployed import Deployed, pending_commits
from .history import History
from .transport import Transport, TransportError

OnHost = Callable[[Host, Callable[[Transport], object]], object]

#: Marks where one service's lock info starts in a host's answer.
_MARK = "@@relconsole-lock "


# --------------------------------------------------------------------------- locks


def is_mine(info: lk.LockInfo) -> bool:
    """Held by this very process (a run this console started)."""
    return info.pid == os.getpid() and info.machine == socket.gethostname()


@dataclass(frozen=True)
class ServiceLock:
    """Who holds a service's deploy lock, and where it was seen."""

    holder: Optional[lk.LockInfo]
    where: tuple[str, ...]  # "this machine" and/or host names

    @property
    def stale(self) -> bool:
        return bool(self.holder and self.holder.stale)

    def describe(self) -> str:
        who = self.holder.describe() if self.holder else "an unknown holder"
        return f"{who} on {', '.join(self.where)}"


def local_locks(config: Config, skip: Iterable[str] = ()) -> dict[str, ServiceLock]:
    """Services whose lock on this machine another process holds (``skip``: not probed)."""
    found = {}
    skipped = set(skip)
    for name in config.services:
        if name in skipped:
            continue
        try:
            holder = lk.LocalLock(config.settings.state_dir, name).holder()
        except OSError:
            continue
        if holder is not None and not is_mine(holder):
            found[name] = ServiceLock(holder, ("this machine",))
    return found


def remote_locks(config: Config, hosts: Sequence[Host], on_host: OnHost,
                 timeout: float) -> dict[str, ServiceLock]:
    """Services locked on any of ``hosts``: one command per host for all its services."""
    def one(host: Host) -> list[tuple[str, lk.LockInfo]]:
        services = [s for s in config.services.values() if host.name in s.hosts]
        if not services:
            return []

        def work(t: Transport):
            command = "; ".join(f"echo {rel.q(_MARK + s.name)}; {lk.read_command(t.path(s.path))}"
                                for s in services)
            return t.run(command, timeout=timeout, sudo=True)

        try:
            res = on_host(host, work)
        except TransportError:
            return []  # the status poll says why the host cannot be reached
        return [(name, info) for name, info in parse_locks(res.stdout) if not is_mine(info)]

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="locks") as pool:
        answers = list(pool.map(one, hosts))
    by_token: dict[tuple[str, str], tuple[lk.LockInfo, list[str]]] = {}
    for host, held in zip(hosts, answers):
        for name, info in held:
            by_token.setdefault((name, info.token), (info, []))[1].append(host.name)
    found: dict[str, ServiceLock] = {}
    for (name, _token), (info, where) in by_token.items():
        found.setdefault(name, ServiceLock(info, tuple(where)))
    return found


def parse_locks(output: str) -> list[tuple[str, lk.LockInfo]]:
    """(service, holder) for each service whose lock info follows its mark."""
    found, name, chunk = [], None, []

    def flush() -> None:
        holder = lk.parse_holder("\n".join(chunk)) if name else None
        if holder is not None:
            found.append((name, holder))

    for line in output.splitlines():
        if line.startswith(_MARK):
            flush()
            name, chunk = line.removeprefix(_MARK).strip(), []
        else:
            chunk.append(line)
    flush()
    return found


# --------------------------------------------------------------------------- history


def last_runs(history: History, services: Iterable[str]) -> dict[str, dict]:
    """Each service's newest build or rollback (unlocks are not runs)."""
    found = {}
    for name in services:
        for row in history.list(name, limit=10):
            if row["action"] in ("build", "rollback"):
                found[name] = row
                break
    return found


# --------------------------------------------------------------------------- rollback


@dataclass(frozen=True)
class HostReleases:
    host: str
    current: Optional[str] = None
    releases: tuple[str, ...] = ()  # oldest first
    error: Optional[str] = None

    @property
    def previous(self) -> Optional[str]:
        """The release before ``current``: where a plain rollback takes this host."""
        older = [r for r in self.releases if self.current and r < self.current]
        return older[-1] if older else None


def read_releases(service: Service, hosts: Sequence[Host], on_host: OnHost,
                  timeout: float) -> list[HostReleases]:
    """Each host's current release and every release it holds, in parallel."""
    def one(host: Host) -> HostReleases:
        try:
            res = on_host(host, lambda t: t.run(rel.list_releases_command(t.path(service.path)),
                                                timeout=timeout, sudo=True))
        except TransportError as exc:
            return HostReleases(host.name, error=exc.message)
        if not res.ok:
            return HostReleases(host.name, error=f"cannot list releases: {res.tail(2)}")
        current, releases = rel.parse_releases(res.stdout)
        return HostReleases(host.name, current, tuple(releases))

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="releases") as pool:
        return list(pool.map(one, hosts))


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

        return git.Repo(workspace).commit(sha).summary
    except Exception:  # no workspace, unknown commit: the release id says enough
        return None


# --------------------------------------------------------------------------- pending


def workspace_of(config: Config, service: Service) -> Path:
    return workspace_path(config.settings.state_dir, service.name)


@dataclass(frozen=True)
class Pending:
    """The commits a build of ``branch`` would add to what the hosts run."""

    branch: str
    base: Optional[str]  # the sha every reachable host runs, if they agree
    commits: tuple[Commit, ...] = ()
    note: str = ""  # why there is no single base
    error: Optional[str] = None


def deployed_base(deployed: Sequence[Deployed]) -> tuple[Optional[str], str]:
    """The sha to count pending commits from, or None with the reason."""
    shas = {d.sha for d in deployed if d.error is None}
    if not shas:
        return None, "no host answered"
    if len(shas) > 1:
        return None, "hosts run different commits (drift)"
    sha = next(iter(shas))
    return (sha, "") if sha else (None, "nothing deployed yet")


def read_pending(workspace: Path, branch: str, deployed: Sequence[Deployed]) -> Pending:
    base, note = deployed_base(deployed)
    try:
        commits = pending_commits(workspace, branch, base)
    except ValueError as exc:
        return Pending(branch, base, note=note, error=str(exc))
    return Pending(branch, base, tuple(commits), note)


def drift_summary(deployed: Sequence[Deployed]) -> Optional[str]:
    """"h2 runs 20260101-…" style words when hosts run different releases."""
    if not any(d.drift for d in deployed):
        return None
    usual = Counter(d.release for d in deployed if d.error is None).most_common(1)[0][0]
    odd = ", ".join(d.host for d in deployed if d.drift)
    return f"{odd} differ{'s' if ',' not in odd else ''} from {usual or 'nothing deployed'}"
