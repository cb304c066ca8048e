"""What each host runs now, which hosts drifted, and which commits are not deployed yet.

Read-only: the REVISION file of each host's ``current`` release, and ``git log
deployed..origin/<branch>`` in the service's workspace (fetched, never checked out,
so a build in progress is not disturbed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import git

from relconsole import release as rel
from relconsole.config import Host, Service, Settings
from relconsole.fanout import fan_out
from relconsole.hosts.connect import OnHost
from relconsole.stages.checkout import CheckoutError, Commit, fetch, git_error, workspace_lock


@dataclass(frozen=True)
class Deployed:
    host: str
    release: Optional[str] = None
    sha: Optional[str] = None
    error: Optional[str] = None
    drift: bool = False  # differs from what most hosts of the service run


def parse_deployed(host: str, output: str) -> Deployed:
    return Deployed(host, *rel.parse_deployed(output))


def read_deployed(
    service: Service, hosts: Sequence[Host], on_host: OnHost, settings: Settings
) -> list[Deployed]:
    """Each host's current release and sha, with drift flagged.

    ``on_host(host, work)`` runs ``work(transport)`` on that host's open connection
    (``StatusPoller.on_host``), so no extra connection is opened. Each read is bounded
    by ``settings.connect_timeout`` (it is a status, not a step of a build).
    """
    timeout = settings.connect_timeout

    def one(host: Host) -> Deployed:
        res = on_host(
            host,
            lambda t: t.run(rel.deployed_command(t.path(service.path)), timeout=timeout, sudo=True),
        )
        return parse_deployed(host.name, res.stdout)

    results = fan_out(
        hosts, lambda h: h.name, one, max_parallel=settings.max_parallel, thread_name="deployed"
    )
    return flag_drift(
        [o.value if o.ok and o.value else Deployed(o.host, error=o.error) for o in results]
    )


def flag_drift(found: list[Deployed]) -> list[Deployed]:
    """Hosts whose release differs from the most common one among reachable hosts."""
    releases = Counter(d.release for d in found if d.error is None)
    if len(releases) <= 1:
        return found
    usual = releases.most_common(1)[0][0]
    return [
        Deployed(d.host, d.release, d.sha, d.error, drift=d.error is None and d.release != usual)
        for d in found
    ]


def pending_commits(
    workspace: Path,
    branch: str,
    deployed_sha: Optional[str],
    limit: int = 50,
    timeout: float = 60.0,
) -> list[Commit]:
    """Commits on ``origin/<branch>`` that ``deployed_sha`` lacks, newest first.

    Fetches first (bounded by ``timeout``, one git at a time in the workspace). With
    nothing deployed yet, the last ``limit`` commits of the branch. Raises ValueError
    with a readable message when the workspace or fetch fails.
    """
    if not (workspace / ".git").is_dir():
        raise ValueError("no workspace yet: build once to see pending commits")
    try:
        with workspace_lock(workspace, timeout):
            repo = git.Repo(workspace)
            fetch(workspace, repo.remotes.origin.url, timeout)
        tip = f"refs/remotes/origin/{branch}"
        span = f"{deployed_sha}..{tip}" if deployed_sha else tip
        return [
            Commit(c.hexsha, str(c.summary), c.author.name or "")
            for c in repo.iter_commits(span, max_count=limit)
        ]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ValueError("no workspace yet: build once to see pending commits") from None
    except git.GitCommandError as exc:
        raise ValueError(git_error(exc)) from None
    except CheckoutError as exc:
        raise ValueError(str(exc)) from None


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
    """ "h2 runs 20260101-…" style words when hosts run different releases."""
    if not any(d.drift for d in deployed):
        return None
    usual = Counter(d.release for d in deployed if d.error is None).most_common(1)[0][0]
    odd = ", ".join(d.host for d in deployed if d.drift)
    return f"{odd} differ{'s' if ',' not in odd else ''} from {usual or 'nothing deployed'}"
