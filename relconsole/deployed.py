"""What each host runs now, which hosts drifted, and which commits are not deployed yet.

Read-only: the REVISION file of each host's ``current`` release, and ``git log
deployed..origin/<branch>`` in the service's workspace (fetched, never checked out,
so a build in progress is not disturbed).
"""

from __future__ import annotations

import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import git

from .checkout import CheckoutError, Commit, fetch, git_error, workspace_lock
from .config import Host, Service
from .release import RELEASE_ID, q
from .transport import Transport, TransportError


@dataclass(frozen=True)
class Deployed:
    host: str
    release: Optional[str] = None
    sha: Optional[str] = None
    error: Optional[str] = None
    drift: bool = False  # differs from what most hosts of the service run


def deployed_command(base: str) -> str:
    current = posixpath.join(base, "current")
    return (f"printf 'current=%s\\n' \"$(readlink {q(current)} || true)\"; "
            f"cat {q(posixpath.join(current, 'REVISION'))} 2>/dev/null || true")


def parse_deployed(host: str, output: str) -> Deployed:
    release, sha = None, None
    for line in output.splitlines():
        if line.startswith("current="):
            name = posixpath.basename(line.removeprefix("current=").rstrip("/"))
            release = name if RELEASE_ID.match(name) else None
        elif line.strip() and sha is None:
            sha = line.strip()
    return Deployed(host, release, sha)


def read_deployed(service: Service, hosts: list[Host],
                  on_host: Callable[[Host, Callable[[Transport], object]], object],
                  timeout: float) -> list[Deployed]:
    """Each host's current release and sha, with drift flagged.

    ``on_host(host, work)`` runs ``work(transport)`` on that host's open connection
    (``StatusPoller.on_host``), so no extra connection is opened.
    """
    def one(host: Host) -> Deployed:
        try:
            res = on_host(host, lambda t: t.run(deployed_command(t.path(service.path)),
                                                timeout=timeout, sudo=True))
        except TransportError as exc:
            return Deployed(host.name, error=exc.message)
        return parse_deployed(host.name, res.stdout)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts)), thread_name_prefix="deployed") as pool:
        return flag_drift(list(pool.map(one, hosts)))


def flag_drift(found: list[Deployed]) -> list[Deployed]:
    """Hosts whose release differs from the most common one among reachable hosts."""
    releases = Counter(d.release for d in found if d.error is None)
    if len(releases) <= 1:
        return found
    usual = releases.most_common(1)[0][0]
    return [Deployed(d.host, d.release, d.sha, d.error, drift=d.error is None and d.release != usual)
            for d in found]


def pending_commits(workspace: Path, branch: str, deployed_sha: Optional[str],
                    limit: int = 50, timeout: float = 60.0) -> list[Commit]:
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
        return [Commit(c.hexsha, c.summary, c.author.name)
                for c in repo.iter_commits(span, max_count=limit)]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ValueError("no workspace yet: build once to see pending commits") from None
    except git.GitCommandError as exc:
        raise ValueError(git_error(exc)) from None
    except CheckoutError as exc:
        raise ValueError(str(exc)) from None
