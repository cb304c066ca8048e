"""Getting one build's release onto each host: a delta where the host allows, else whole.

Each host says which release it runs and the commit in its REVISION (one command). A
host that runs a commit of this repository gets a delta from it (:mod:`.delta`), made
once per deployed commit and streamed to every host that runs it; a host with no
release, a commit this repository lacks, or a previous release that turns out unusable
on the host (its REVISION or files differ, no python3) gets the full release tar, made
once on first need. Either way: one stream through one exec channel per host, into a
partial release folder renamed when complete.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from relconsole import release as rel
from relconsole.config import FileUpload, SharedPath
from relconsole.hosts.base import CommandFailed, Result, Transport
from relconsole.stages import delta as dl
from relconsole.stages.upload import add_own_files, write_release_tar

if TYPE_CHECKING:
    import git

#: A commit id as relconsole writes it into REVISION (what a host says is checked
#: before it reaches git's command line).
COMMIT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


@dataclass(frozen=True)
class Delta:
    """A delta stream from ``base`` (a commit) to the build's commit, on disk."""

    base: str
    path: Path
    size: int
    change: dl.ChangeSet
    algorithm: str
    digest: str


@dataclass(frozen=True)
class Sent:
    """How the release reached one host: for the stage's line and for measuring."""

    host: str
    delta_from: Optional[str]  # the release a delta was made from; None: the full tree
    reason: str  # why the full tree (empty for a delta)
    size: int  # bytes streamed


class ReleaseStreams:
    """What one build sends: the full tar and the deltas, each made once, thread-safe
    (host threads ask for them; the first asker makes one while the others wait)."""

    def __init__(
        self,
        workspace: Path,
        sha: str,
        files: tuple[FileUpload, ...],
        shared: Sequence[SharedPath],
        tmp_dir: Path,
        *,
        link: bool = True,
    ):
        self.workspace, self.sha, self.files = workspace, sha, files
        #: Hard-link unchanged files from the previous release (else copy them there).
        self.link = link
        self.shared = tuple(entry.path for entry in shared)
        self._tmp = tempfile.TemporaryDirectory(dir=tmp_dir)
        self._lock = threading.Lock()
        self._full: Optional[Path] = None
        self._deltas: dict[str, Union[Delta, str]] = {}
        self._repo: Optional[git.Repo] = None
        self._tree: Optional[dict[str, dl.Entry]] = None
        self._rewriting: Optional[str] = None

    def full(self) -> Path:
        with self._lock:
            if self._full is None:
                path = Path(self._tmp.name) / "release.tar"
                with open(path, "w+b") as out:
                    write_release_tar(self.workspace, self.sha, self.files, out)
                self._full = path
            return self._full

    def delta(self, base: str) -> Union[Delta, str]:
        """The delta from commit ``base``, or why the full tree goes instead."""
        with self._lock:
            if base not in self._deltas:
                self._deltas[base] = self._make_delta(base)
            return self._deltas[base]

    def _make_delta(self, base: str) -> Union[Delta, str]:
        import git  # GitPython: loaded when a delta is made, not with the pipeline

        if not COMMIT_ID.match(base):
            return "the host's REVISION names no commit"
        if self._repo is None:
            self._repo = git.Repo(self.workspace)
            self._tree = dl.read_tree(self._repo, self.sha)
            self._rewriting = dl.rewriting_attributes(self._repo, self._tree)
        repo, tree = self._repo, self._tree
        assert tree is not None
        if self._rewriting:
            return f"{self._rewriting} may make git archive rewrite files"
        try:
            old = dl.read_tree(repo, base)
        except git.GitCommandError:
            return f"the deployed commit {base[:12]} is not in this repository"
        change = dl.change_set(old, tree, self.shared)
        path = Path(self._tmp.name) / f"delta-{base}.bin"
        with open(path, "wb") as out:
            dl.write_delta(
                repo,
                self.sha,
                change,
                tree,
                out,
                lambda tar: add_own_files(tar, self.workspace, self.sha, self.files),
            )
        return Delta(
            base=base,
            path=path,
            size=path.stat().st_size,
            change=change,
            algorithm=dl.object_algorithm(self.sha),
            digest=dl.links_digest(change.link),
        )

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
        self._tmp.cleanup()


def send_release(
    t: Transport,
    base: str,
    release: str,
    streams: ReleaseStreams,
    *,
    timeout: float,
    cancel: threading.Event,
    log: Callable[[str], None],
    deployed: Optional[tuple[Optional[str], Optional[str]]],
) -> Sent:
    """Make ``releases/<release>`` on one host: from a delta when it can, else whole.

    ``deployed``: (release, sha) the host's ``current`` names, as the lock command read
    it; None when it was not read, and then the full tree is sent (a base is never
    guessed)."""
    previous, deployed_sha = deployed or (None, None)
    started = time.monotonic()
    if deployed is None:
        reason = "what the host runs was not read with its lock"
    elif not (previous and deployed_sha):
        reason = "no release on the host"
    else:
        delta = streams.delta(deployed_sha)
        if isinstance(delta, str):
            reason = delta
        else:
            command = rel.delta_extract_command(
                base,
                release,
                previous,
                deployed_sha,
                dl.APPLY_SOURCE,
                [delta.algorithm, delta.digest, "link" if streams.link else "copy"],
            )
            res = _stream(t, command, delta.path, timeout=timeout, cancel=cancel)
            if res.ok:
                log(_delta_line(previous, delta, res, time.monotonic() - started))
                return Sent(t.name, previous, "", delta.size)
            why = _unusable(res)
            if why is None:
                raise CommandFailed(t.name, "unpacking the delta", res)
            reason = f"releases/{previous} cannot serve: {why}"
    tar = streams.full()
    size = tar.stat().st_size
    started = time.monotonic()
    res = _stream(t, rel.extract_command(base, release), tar, timeout=timeout, cancel=cancel)
    if not res.ok:
        raise CommandFailed(t.name, "unpacking the release", res)
    log(
        f"full upload ({reason}): unpacked {size / 1e6:.1f} MB into releases/{release} "
        f"in {time.monotonic() - started:.2f}s"
    )
    return Sent(t.name, None, reason, size)


def _stream(
    t: Transport, command: str, path: Path, *, timeout: float, cancel: threading.Event
) -> Result:
    with open(path, "rb") as data:
        return t.put_stream(command, data, timeout=timeout, sudo=True, cancel=cancel)


def _unusable(res: Result) -> Optional[str]:
    """Why the host's previous release could not serve a delta, or None when the
    delta failed for another reason (a full disk fails a full upload as well)."""
    if res.exit_code != rel.DELTA_UNUSABLE:
        return None
    for line in (res.stderr + "\n" + res.stdout).splitlines():
        if line.startswith(rel.DELTA_UNUSABLE_MARK):
            return line.removeprefix(rel.DELTA_UNUSABLE_MARK).strip()
    return None


def _delta_line(previous: str, delta: Delta, res: Result, seconds: float) -> str:
    counts = dict(
        part.split("=", 1) for part in res.stdout.split() if part.startswith(("linked=", "copied="))
    )
    copied = int(counts.get("copied", 0))
    change = delta.change
    return (
        f"delta from {previous}: {change.changed:,} changed, {change.deleted:,} deleted, "
        f"{int(counts.get('linked', 0)):,} linked{f', {copied:,} copied' if copied else ''} "
        f"({human_size(delta.size)}) — unpacked in {seconds:.2f}s"
    )


def human_size(size: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            digits = 1 if size < 10 * scale else 0
            return f"{size / scale:.{digits}f} {unit}"
    return f"{size} B"
