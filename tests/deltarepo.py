"""A repository whose second commit has every change a delta upload must get right,
and a checksum listing of a release folder to compare what two uploads made.

v1 → v2: a rename, deletes (a folder left empty goes), mode changes both ways,
symlinks kept and retargeted, a file that becomes a folder and a folder a file, a
file that becomes a symlink and back, a folder that becomes a symlink, odd names
(spaces, a newline, a leading dash, non-ASCII, bytes that are not UTF-8), and paths
relconsole writes itself (REVISION, .relconsole/) that the tree must not provide.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

from gitorigin import Origin, sample_service_files

ODD = [b"with space.txt", b"new\nline.txt", b"-dash.txt", "ünï code.txt".encode(), b"\xffbad.txt"]


def _git(work: Path, *args: str | bytes) -> None:
    subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)


def _write(work: Path, files: dict[bytes, bytes | tuple[str, bytes] | None]) -> None:
    """Write ``files`` (None: remove; ("link", target): a symlink; ("x", body): executable)."""
    for name, content in files.items():
        path = Path(os.fsdecode(work)) / os.fsdecode(name)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        if content is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "link":
            os.symlink(content[1], path)
        elif isinstance(content, tuple):
            path.write_bytes(content[1])
            path.chmod(0o755)
        else:
            path.write_bytes(content)
            path.chmod(0o644)


def commit_all(origin: Origin, files: dict, message: str) -> str:
    work = origin.work
    _write(work, files)
    _git(work, "add", "-A", ".")
    _git(work, "commit", "-q", "--allow-empty", "-m", message)
    _git(work, "push", "-q", "origin", "main:refs/heads/main")
    return subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def service_files(version: str) -> dict[bytes, bytes]:
    return {
        k.encode(): v.encode() for k, v in sample_service_files("svc", "/srv/svc", version).items()
    }


def v1_files(big: int = 0) -> dict:
    files = {
        **service_files("v1"),
        b"keep.txt": b"kept\n",
        b"rename_me.txt": b"I travel under a new name\n" * 50,
        b"delete_me.txt": b"gone in v2\n",
        b"gone/only.txt": b"my folder goes too\n",
        b"mode.sh": b"echo now executable\n",
        b"exec.sh": ("x", b"#!/bin/sh\necho no longer executable\n"),
        b"link_kept": ("link", b"keep.txt"),
        b"link_retarget": ("link", b"keep.txt"),
        b"file_to_dir": b"a file in v1\n",
        b"dir_to_file/inner.txt": b"in a folder in v1\n",
        b"file_to_link": b"a file in v1\n",
        b"link_to_file": ("link", b"keep.txt"),
        b"dir_to_link/x.txt": b"x\n",
        b"sub/deep/a.txt": b"unchanged deep\n",
        b"sub/deep/b.txt": b"changes in v2\n",
        b"logs/.keep": b"the shared folder is in the tree too\n",
        # What relconsole writes itself: never taken from the tree.
        b"REVISION": b"planted\n",
        b".relconsole/files/0/evil.conf": b"[program:evil]\n",
    }
    for name in ODD:
        files[name] = b"odd name " + name + b"\n"
    if big:
        files[b"data/big.bin"] = os.urandom(big)
    return files


def v2_changes() -> dict:
    return {
        **service_files("v2"),
        b"rename_me.txt": None,
        b"renamed.txt": b"I travel under a new name\n" * 50,
        b"delete_me.txt": None,
        b"gone/only.txt": None,
        b"mode.sh": ("x", b"echo now executable\n"),
        b"exec.sh": b"#!/bin/sh\necho no longer executable\n",
        b"link_retarget": ("link", b"renamed.txt"),
        b"file_to_dir": None,
        b"file_to_dir/inner.txt": b"a folder in v2\n",
        b"dir_to_file/inner.txt": None,
        b"dir_to_file": b"a file in v2\n",
        b"file_to_link": ("link", b"keep.txt"),
        b"link_to_file": b"a file in v2\n",
        b"dir_to_link/x.txt": None,
        b"dir_to_link": ("link", b"sub"),
        b"sub/deep/b.txt": b"changed in v2\n",
        ODD[1]: b"the newline one changed\n",
        b"-new-dash.txt": b"added\n",
    }


def listing(root: Path, host_root: Path | None = None) -> dict[str, tuple]:
    """Every path under ``root``: type, mode, owner, and content hash or link target
    (``host_root``: a fake host's folder standing in for /, taken off link targets)."""
    found: dict[str, tuple] = {}
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            key = os.fsdecode(os.path.relpath(path, base))
            owner = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path)
                if host_root is not None:
                    target = target.removeprefix(os.fsencode(host_root))
                found[key] = ("link", target, info.st_uid, info.st_gid)
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir", *owner)
            else:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                found[key] = ("file", *owner, digest)
    return found


class CountingReader:
    """A stream that counts the bytes read from it: what travelled to a host."""

    def __init__(self, data, add):
        self._data, self._add = data, add

    def read(self, size=-1):
        chunk = self._data.read(size)
        self._add(len(chunk))
        return chunk


class CountingConnector:
    """Connects as a run does (a Dialer) and counts the bytes each host's streams
    carried (put_stream: the release, full or delta), per host."""

    def __init__(self, settings):
        from relconsole.hosts.connect import Dialer

        self.dialer = Dialer(settings)
        self.sent: dict[str, int] = {}

    def __call__(self, host, settings):
        t = self.dialer(host, settings)
        put = t.put_stream
        self.sent.setdefault(host.name, 0)

        def add(n):
            self.sent[host.name] += n

        t.put_stream = lambda command, data, **kw: put(command, CountingReader(data, add), **kw)
        return t

    def reset(self) -> None:
        self.sent = {name: 0 for name in self.sent}

    def close(self) -> None:
        self.dialer.close()
