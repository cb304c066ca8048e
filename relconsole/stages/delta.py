"""Delta uploads: a host makes the new release from the release it runs now.

Only what changed between the commit a host runs and the new one travels; every other
file of the new tree is hard-linked on the host from the previous release
(``delta_apply.py``, run there). What a delta may take from the previous release is
decided from the two commits' *git trees* alone, never from the folder: setup outputs
(``vendor/``), shared links and anything else added on the host are not in the old
tree, so they are never linked; a path at or under a ``shared`` entry is always sent,
since the previous release holds a link to the shared store there, not the tree's file.

The stream (made once per deployed commit, sent to every host that runs it): a short
header, then one zlib stream of the manifest (the files to link) and a tar of the rest,
its entries made as ``git archive`` makes them (modes by git's default ``tar.umask``
0002, owner root, the commit's time), so the host's tar lays them out as a full upload
does. The host checks what it linked against the new tree's object ids; a previous
release that cannot serve makes the caller send the full tree (:mod:`.upload`).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, BinaryIO, Optional, cast

from relconsole import release as rel

if TYPE_CHECKING:
    import git  # only annotations here: callers pass the repository

#: Run on the host: ``python3 -I -S -c SOURCE``.
APPLY_SOURCE = (resources.files("relconsole.stages") / "delta_apply.py").read_text("utf-8")
MAGIC = b"RCDELTA1"

TREE, GITLINK, SYMLINK = "040000", "160000", "120000"
#: Regular files: the entries a delta links instead of sending.
FILE_MODES = ("100644", "100755")
#: git's modes for tar entries with its default ``tar.umask`` (0002).
DIR_MODE, EXEC_MODE, FILE_MODE, LINK_MODE = 0o775, 0o775, 0o664, 0o777
#: Attributes that make ``git archive`` write other bytes than the blob, or leave
#: paths out: a tree that uses any is always sent whole.
REWRITING_ATTRIBUTES = (
    "export-ignore",
    "export-subst",
    "text",
    "eol",
    "crlf",
    "ident",
    "filter",
    "working-tree-encoding",
)


@dataclass(frozen=True)
class Entry:
    """One entry of a commit's tree: git's mode (``100644``, ``040000``...) and object id."""

    mode: str
    oid: str


Tree = Mapping[str, Entry]


@dataclass(frozen=True)
class Link:
    """A file of the new tree made on the host by linking ``source`` of the previous
    release (the same path, or one that held the same content: a rename)."""

    path: str
    source: str
    entry: Entry


@dataclass(frozen=True)
class ChangeSet:
    """What a delta from one commit to another is made of."""

    #: Paths of the new tree that travel: every folder, the files that changed, every
    #: symlink, and what lies under a shared entry.
    send: tuple[str, ...]
    #: Files of the new tree linked from the previous release, by path.
    link: tuple[Link, ...]
    #: Files (and symlinks) of the new tree that differ from the old tree at that path.
    changed: int
    #: Files (and symlinks) of the old tree that the new tree lacks at that path.
    deleted: int


def own_path(path: str) -> bool:
    """What relconsole writes into a release itself, never taken from a tree."""
    return path == "REVISION" or path == rel.OWN_DIR or path.startswith(rel.OWN_DIR + "/")


def parse_ls_tree(raw: bytes) -> dict[str, Entry]:
    """``git ls-tree -r -t -z`` output, without relconsole's own paths. Paths are kept
    as the file system will have them (bytes as ``os.fsdecode`` gives them)."""
    entries = {}
    for record in raw.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, oid = meta.decode("ascii").split()
        name = path.decode("utf-8", "surrogateescape")  # os.fsdecode, without its lookups
        if not own_path(name):
            entries[name] = Entry(mode, oid)
    return entries


def read_tree(repo: git.Repo, sha: str) -> dict[str, Entry]:
    raw = repo.git.ls_tree("-r", "-t", "-z", "--full-tree", sha, stdout_as_string=False)
    return parse_ls_tree(raw)


def plain(path: str) -> bool:
    """No empty, ``.`` or ``..`` part: a crafted tree may hold one, and a link made
    through it would land outside the release (tar refuses such names on its own)."""
    parts = path.split("/")
    return not ("" in parts or "." in parts or ".." in parts)


def under(path: str, prefixes: Sequence[str]) -> bool:
    return bool(prefixes) and any(path == p or path.startswith(p + "/") for p in prefixes)


def change_set(old: Tree, new: Tree, shared: Iterable[str] = ()) -> ChangeSet:
    """What travels and what is linked to make the tree ``new`` on a host that holds a
    release of the tree ``old``. ``shared``: paths the previous release holds as links
    to the shared store; nothing at or under them is linked."""
    shared = tuple(shared)

    def linkable(path: str, entry: Optional[Entry]) -> bool:
        return (
            entry is not None
            and entry.mode in FILE_MODES
            and plain(path)
            and not under(path, shared)
        )

    # Any old path with the same content and mode serves a new path (renames, copies);
    # the same path is preferred, so each file keeps its own inode line.
    by_content: dict[Entry, str] = {}
    for path, entry in sorted(old.items()):
        if linkable(path, entry):
            by_content.setdefault(entry, path)
    send, link = [], []
    for path, entry in sorted(new.items()):
        source = None
        if linkable(path, entry):
            source = path if old.get(path) == entry else by_content.get(entry)
        if source is None:
            send.append(path)
        else:
            link.append(Link(path, source, entry))
    old_files = {p: e for p, e in old.items() if e.mode not in (TREE, GITLINK)}
    new_files = {p: e for p, e in new.items() if e.mode not in (TREE, GITLINK)}
    return ChangeSet(
        send=tuple(send),
        link=tuple(link),
        changed=sum(1 for p, e in new_files.items() if old_files.get(p) != e),
        deleted=sum(1 for p in old_files if p not in new_files),
    )


def rewriting_attributes(repo: git.Repo, tree: Tree) -> Optional[str]:
    """The first ``.gitattributes`` of ``tree`` that may make ``git archive`` write
    other bytes than the blobs (or leave paths out), or None."""
    for path, entry in sorted(tree.items()):
        if os.path.basename(path) == ".gitattributes" and entry.mode in FILE_MODES:
            text = repo.odb.stream(bytes.fromhex(entry.oid)).read().decode("utf-8", "replace")
            if any(word in text for word in REWRITING_ATTRIBUTES):
                return path
    return None


def links_digest(links: Iterable[Link]) -> str:
    """What the host's check of the linked files must find (``delta_apply.py``)."""
    total = hashlib.sha256()
    for link in links:
        executable = b"1" if link.entry.mode == "100755" else b"0"
        total.update(executable + link.entry.oid.encode() + b"\n")
    return total.hexdigest()


def manifest(links: Iterable[Link]) -> bytes:
    """NUL-ended fields, three per file: path, source ("" when the same), x."""
    parts = []
    for link in links:
        source = b"" if link.source == link.path else os.fsencode(link.source)
        executable = b"1" if link.entry.mode == "100755" else b"0"
        parts += [os.fsencode(link.path), source, executable]
    return b"".join(part + b"\0" for part in parts)


class _Deflating:
    """A write-only file that compresses into ``out`` (for :mod:`tarfile`'s stream mode)."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._zlib = zlib.compressobj(1)

    def write(self, data: bytes) -> int:
        self._out.write(self._zlib.compress(data))
        return len(data)

    def close(self) -> None:
        self._out.write(self._zlib.flush())


def write_delta(
    repo: git.Repo,
    sha: str,
    change: ChangeSet,
    tree: Tree,
    out: BinaryIO,
    add_own: Callable[[tarfile.TarFile], object],
) -> None:
    """The delta stream into ``out``: header, then manifest and tar in one zlib stream.
    ``add_own`` adds REVISION and the staged files, as the full tar has them."""
    listed = manifest(change.link)
    out.write(MAGIC + b"%012d\n" % len(listed))
    deflating = _Deflating(out)
    deflating.write(listed)
    mtime = repo.commit(sha).committed_date
    with tarfile.open(
        fileobj=cast(BinaryIO, deflating),  # write() is all stream mode uses
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for path in change.send:
            _add_entry(repo, tar, path, tree[path], mtime)
        add_own(tar)
    deflating.close()
    out.flush()


def _add_entry(repo: git.Repo, tar: tarfile.TarFile, path: str, entry: Entry, mtime: int) -> None:
    """One tree entry as ``git archive`` writes it."""
    info = tarfile.TarInfo(path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
    if entry.mode in (TREE, GITLINK):  # git archive writes a submodule as an empty folder
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
        tar.addfile(info)
        return
    blob = repo.odb.stream(bytes.fromhex(entry.oid))
    if entry.mode == SYMLINK:
        info.type, info.mode = tarfile.SYMTYPE, LINK_MODE
        info.linkname = os.fsdecode(blob.read())
        tar.addfile(info)
        return
    info.mode = EXEC_MODE if entry.mode == "100755" else FILE_MODE
    info.size = blob.size
    tar.addfile(info, blob)


def object_algorithm(oid: str) -> str:
    """How git names objects in this repository: by the length of an object id."""
    return "sha256" if len(oid) == 64 else "sha1"
