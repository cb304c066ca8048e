"""The upload stage's parts: the release as one tar, and unpacking it on a host.

The tree of the commit (``git archive``), a ``REVISION`` file and the configured
``files`` become one tar written once to a private temporary file; every host then
reads it as one stream through one exec channel (``tar -x`` into a partial release
directory, renamed when complete). No SFTP, no file-by-file round trips. A host that
runs a release of this repository gets a delta instead (:mod:`.send_release`).
"""

from __future__ import annotations

import fnmatch
import io
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from relconsole import release as rel
from relconsole.config import FileUpload
from relconsole.stages.checkout import CheckoutError, _failed

#: git pathspecs leaving out of the tree what relconsole writes into a release itself.
OWN_PATHS_EXCLUDED = (":(exclude,top)REVISION", f":(exclude,top){rel.OWN_DIR}")


def write_release_tar(
    workspace: Path, sha: str, files: tuple[FileUpload, ...], out: BinaryIO
) -> list[tuple[int, str]]:
    """Write the tree of ``sha`` as one tar, plus REVISION and the configured ``files``.

    ``files`` go under ``.relconsole/files/<n>/`` inside the release and are only
    copied to their ``dest`` at the switch: until every host holds the release,
    nothing outside the release directory changes. Returns (n, name) pairs staged.

    The repository may be written by someone who should not own the hosts: the paths
    relconsole writes itself (REVISION, ``.relconsole/``) are left out of the tree, so
    the tree can neither plant a REVISION symlink nor inject staged files; every
    ``files`` source must be a regular file inside the workspace.
    """
    import git  # GitPython: loaded when the upload begins, not with the pipeline

    repo = git.Repo(workspace)
    # git's default, pinned: a delta upload makes its entries with these modes too.
    repo.git.set_persistent_git_options(c="tar.umask=0002")
    try:
        repo.archive(out, sha, format="tar", path=[".", *OWN_PATHS_EXCLUDED])
    except git.GitCommandError as exc:
        raise _failed(f"cannot archive {sha[:12]}", exc) from None
    out.flush()
    out.seek(0)
    with tarfile.open(fileobj=out, mode="a") as tar:
        staged = add_own_files(tar, workspace, sha, files)
    out.seek(0)
    return staged


def add_own_files(
    tar: tarfile.TarFile, workspace: Path, sha: str, files: tuple[FileUpload, ...]
) -> list[tuple[int, str]]:
    """REVISION and the configured ``files`` (see :func:`write_release_tar`)."""
    staged = []
    _add_bytes(tar, "REVISION", (sha + "\n").encode())
    for index, upload in enumerate(files):
        matches = sorted(p for p in workspace.glob(upload.src) if p.is_file() or p.is_symlink())
        if not matches:
            raise CheckoutError(f"files: '{upload.src}' matches no file in the checkout")
        for match in matches:
            _inside_workspace(workspace, match)
            tar.add(str(match), arcname=f"{rel.STAGED_FILES}/{index}/{match.name}")
            staged.append((index, match.name))
    return staged


def match_tree(paths: Iterable[str], pattern: str) -> list[str]:
    """The ``paths`` of a commit's tree (``a/b/c``, files only) that ``pattern`` selects,
    as :meth:`pathlib.Path.glob` selects them in a checkout of it (what
    :func:`write_release_tar` stages): ``*``, ``?`` and ``[...]`` within one part, dot
    files included, ``**`` for any number of folders. Sorted."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    regexes = [None if p == "**" else re.compile(fnmatch.translate(p)) for p in parts]
    return sorted(path for path in paths if _matches(path.split("/"), regexes))


def _matches(parts: list[str], regexes: list[re.Pattern[str] | None]) -> bool:
    if not regexes:
        return not parts
    head, rest = regexes[0], regexes[1:]
    if head is None:  # "**": zero or more folders, never the file itself
        return any(_matches(parts[k:], rest) for k in range(len(parts)))
    return bool(parts) and head.match(parts[0]) is not None and _matches(parts[1:], rest)


def _inside_workspace(workspace: Path, match: Path) -> None:
    """Refuse a ``files`` source that is, or lies under, a symlink: followed, it could
    copy anything this machine can read (a private key) to the hosts."""
    shown = match.relative_to(workspace)
    real, root = match.resolve(), workspace.resolve()
    if match.is_symlink() or real != root / shown or not real.is_relative_to(root):
        raise CheckoutError(
            f"files: '{shown}' is or lies under a symlink; refusing to upload what it points to"
        )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
