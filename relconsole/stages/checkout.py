"""The checkout stage: one git workspace per service, brought to the branch tip, clean.

GitPython drives git with argument lists (no shell), so a branch name never reaches a
shell. Clone and fetch, the two that talk to the network, run as plain subprocesses in
their own process group instead: GitPython's ``kill_after_timeout`` is ignored for
clone and leaves git's ssh child running, and a hung origin must neither hang the build
nor outlive a cancel. The worktree is only touched after a fetch succeeded: an unreachable origin
or a deleted branch leaves the last good workspace as it was. A git that a stop signal
ended (Ctrl-C reaches the whole process group) means the build was cancelled, not that
git failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from relconsole.errors import Cancelled, StageFailed
from relconsole.state import private_dir

if TYPE_CHECKING:
    import git

# How git ends when the operator's Ctrl-C, a service manager's SIGTERM or a closed
# terminal's SIGHUP reached it too (they signal the whole process group): killed by
# the signal, or exiting 128 + signal.
_STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_INTERRUPTED = {-s for s in _STOPS} | {128 + s for s in _STOPS}


class CheckoutError(StageFailed):
    """git could not bring the workspace to the commit (origin, branch, disk...)."""


def import_gitpython():
    """GitPython, imported on first use (it is a fair part of a start).

    Its import runs ``git version``. A stop signal sent to the process group while that
    runs kills it too, and GitPython reports that as ``ImportError``: the build was
    cancelled, not broken. (``git.exc`` cannot be imported to test the cause's type:
    importing it would run the package's ``git version`` again.)
    """
    try:
        import git
    except ImportError as exc:
        if getattr(exc.__cause__, "status", None) in _INTERRUPTED:
            raise Cancelled() from exc
        raise
    return git


def _failed(what: str, exc: git.GitCommandError) -> Exception:
    """The error for a git command that failed: a cancel when a stop signal ended it."""
    if exc.status in _INTERRUPTED:
        return Cancelled()
    return CheckoutError(f"{what}: {git_error(exc)}")


def workspace_path(state_dir: Path, service: str) -> Path:
    """Where a service's clone lives."""
    return state_dir / "workspaces" / service


@contextlib.contextmanager
def workspace_lock(
    workspace: Path, timeout: float = 600.0, log: Optional[Callable[[str], None]] = None
):
    """One git at a time in a workspace, across processes: a build's checkout and the
    console's pending-commits fetch would otherwise race for git's ref locks. Once it
    is held, git's own lock files left by a git that was killed are removed (``log``
    says which)."""
    private_dir(workspace.parent)
    fd = os.open(workspace.parent / f".{workspace.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CheckoutError(
                        f"workspace {workspace} stayed busy for {timeout:g}s"
                    ) from None
                time.sleep(0.05)
        for path in stale_git_locks(workspace):
            path.unlink(missing_ok=True)
            if log is not None:
                log(f"removed {path.relative_to(workspace)}, left by a git that was killed")
        yield
    finally:
        os.close(fd)


#: Lock files git makes beside what it rewrites, in the .git folder itself.
_GIT_LOCKS = ("index", "HEAD", "ORIG_HEAD", "FETCH_HEAD", "config", "packed-refs", "shallow")


def stale_git_locks(workspace: Path) -> list[Path]:
    """git's lock files in the workspace. Under :func:`workspace_lock` every one is
    stale: relconsole runs git here only under that lock, and the workspace is its own.
    A build killed (kill -9, a lost machine) during its checkout leaves
    ``.git/index.lock``, and every later git here would refuse to run."""
    git_dir = workspace / ".git"
    if not git_dir.is_dir():
        return []
    found = [git_dir / f"{name}.lock" for name in _GIT_LOCKS]
    found = [path for path in found if path.exists()]
    refs = git_dir / "refs"
    return found + (sorted(refs.rglob("*.lock")) if refs.is_dir() else [])


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str


def git_error(exc: git.GitCommandError) -> str:
    lines = [ln.strip() for ln in str(exc.stderr or "").splitlines() if ln.strip()]
    # git prefixes its words with "stderr: '" in GitPython's repr; keep only git's own.
    lines = [ln.removeprefix("stderr: ").strip("'").strip() for ln in lines]
    return "; ".join(ln for ln in lines if ln) or str(exc)


def _run_git(args: list[str], what: str, timeout: float, cancel: Optional[threading.Event]) -> None:
    """A networked git command, killed with its children on timeout or cancel."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")  # never wait for a password prompt
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    proc = subprocess.Popen(
        ["git", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            timed_out = time.monotonic() > deadline
            if not timed_out and not (cancel is not None and cancel.is_set()):
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if timed_out:
                raise CheckoutError(
                    f"{what}: git timed out after {timeout:g}s (settings.command_timeout)"
                ) from None
            raise Cancelled() from None
    if proc.returncode in _INTERRUPTED:
        raise Cancelled()
    if proc.returncode != 0:
        lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise CheckoutError(f"{what}: {'; '.join(lines[-5:]) or f'git exited {proc.returncode}'}")


def open_or_clone(
    workspace: Path,
    url: str,
    log: Callable[[str], None],
    timeout: float,
    cancel: Optional[threading.Event],
) -> git.Repo:
    """The workspace's repository, cloned (without a checkout) if it is missing or
    unusable; its origin follows ``url``. Call it under :func:`workspace_lock`."""
    git = import_gitpython()

    if (workspace / ".git").is_dir():
        try:
            repo = git.Repo(workspace)
            if repo.remotes and "origin" in repo.remotes:
                if repo.remotes.origin.url != url:
                    log(f"origin changed to {url}")
                    repo.remotes.origin.set_url(url)
                return repo
        except (git.InvalidGitRepositoryError, git.GitCommandError, ValueError):
            pass
        log(f"workspace {workspace} is not usable; cloning afresh")
        shutil.rmtree(workspace)
    log(f"cloning {url}")
    workspace.parent.mkdir(parents=True, exist_ok=True)
    try:
        # --no-hardlinks: a local origin's object files would otherwise be shared, with
        # the origin's permissions; the workspace must be this user's alone.
        _run_git(
            ["clone", "--quiet", "--no-checkout", "--no-hardlinks", "--", url, str(workspace)],
            f"cannot clone {url}",
            timeout,
            cancel,
        )
    except (CheckoutError, Cancelled):
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    return git.Repo(workspace)


def checkout(
    workspace: Path,
    url: str,
    branch: str,
    log: Callable[[str], None],
    timeout: float = 600.0,
    cancel: Optional[threading.Event] = None,
) -> Commit:
    """Bring ``workspace`` to the tip of ``origin/<branch>``, with no stale files.

    Clone and fetch are killed after ``timeout`` seconds, or when ``cancel`` is set.
    """
    with workspace_lock(workspace, timeout, log):
        return _checkout_locked(workspace, url, branch, log, timeout, cancel)


def fetch(
    workspace: Path, url: str, timeout: float, cancel: Optional[threading.Event] = None
) -> None:
    """Update every ``origin/*`` ref; the worktree is not touched."""
    _run_git(
        [
            "-C",
            str(workspace),
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
        ],
        f"cannot fetch from {url}",
        timeout,
        cancel,
    )


def _checkout_locked(
    workspace: Path,
    url: str,
    branch: str,
    log: Callable[[str], None],
    timeout: float,
    cancel: Optional[threading.Event],
) -> Commit:
    git = import_gitpython()
    repo = open_or_clone(workspace, url, log, timeout, cancel)
    log(f"fetching {branch} from {url}")
    fetch(workspace, url, timeout, cancel)
    ref = f"origin/{branch}"
    try:
        sha = repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/{ref}^{{commit}}")
    except git.GitCommandError:
        known = sorted(r.remote_head for r in repo.remotes.origin.refs if r.remote_head != "HEAD")
        raise CheckoutError(
            f"branch '{branch}' not found in {url} (branches: {', '.join(known) or 'none'})"
        ) from None
    try:
        repo.git.checkout("--force", "--detach", sha)
        repo.git.reset("--hard", sha)
        repo.git.clean("-ffdx")  # untracked and ignored files from an earlier build
    except git.GitCommandError as exc:
        raise _failed(f"cannot check out {sha[:12]}", exc) from None
    commit = repo.commit(sha)
    subject = commit.summary if isinstance(commit.summary, str) else commit.summary.decode()
    log(f"at {sha[:12]} {subject} ({commit.author.name})")
    return Commit(sha=sha, subject=subject, author=f"{commit.author.name} <{commit.author.email}>")
