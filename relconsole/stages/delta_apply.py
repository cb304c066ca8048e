# relconsole-delta: make a new release on the host from the release it runs now.
#
# This file runs ON THE HOST, not in relconsole: relconsole.stages.delta reads it as
# package data and runs it over the connection of the host, inside the partial-release shell
# of relconsole.release.delta_extract_command, as
#
#   python3 -I -S -c SOURCE relconsole-delta PREVIOUS SHA PARTIAL ALGORITHM DIGEST HOW
#
# PREVIOUS: the release folder the host runs now (relconsole made it); SHA: the commit
# that its REVISION must name; PARTIAL: the folder of the new release, empty; ALGORITHM: how git
# names objects (sha1 or sha256); DIGEST: sha256 over "<x><object id>\n" of every file
# to link, in manifest order (x: 1 when executable), as the tree of the new commit has them;
# HOW: "link" (hard links) or "copy" (a service whose setup commands run in the new release
# could rewrite a linked file in place, and so the release it would roll back to).
#
# stdin: "RCDELTA1" + the length of the manifest in 12 digits + "\n", then one zlib stream
# holding the manifest and then a tar. The manifest: NUL-ended fields, three per file
# to link: its path in the new release, its path in PREVIOUS ("" when the same), x.
# The tar: every folder of the new tree, the files that changed, every symlink,
# REVISION and the staged files of relconsole: unpacked by tar on the host, as a full upload
# is, so both make the same folders, modes and owners.
#
# Then every file of the manifest is hard-linked from PREVIOUS (copied where the
# filesystem will not link it), never through a symlink; what landed is hashed as git
# hashes a blob, and the digest of them all must be DIGEST: a release whose files were
# changed on the host is never used. Exit 0 printing "linked=N copied=M"; exit 3 with
# "relconsole-delta: unusable: WHY" when PREVIOUS cannot serve (the caller sends the
# full tree instead); 1 when something else failed (the caller reports it).
#
# Stdlib only, Python >= 3.6 syntax, no single quotes (it travels shell-quoted), no
# tool of the host but python3 and tar.
import errno
import hashlib
import os
import stat
import sys
import zlib

UNUSABLE = 3
MAGIC = b"RCDELTA1"
CHUNK = 1 << 16
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
#: A link the filesystem refuses for one of these is made a copy instead.
COPY_INSTEAD = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS)


def unusable(why):
    sys.stderr.write("relconsole-delta: unusable: " + why + "\n")
    sys.exit(UNUSABLE)


def read_exact(n):
    parts = []
    while n:
        chunk = os.read(0, min(n, CHUNK))
        if not chunk:
            sys.stderr.write("relconsole-delta: the stream ended early\n")
            sys.exit(1)
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class Folders:
    """Open folders under one root, each reached without following a symlink: a
    symlink on the way (a shared link, something a setup made) is refused."""

    def __init__(self, root):
        self.root = root
        self.fds = {}

    def fd(self, folder):
        if folder not in self.fds:
            if len(self.fds) > 64:  # bounded: a tree may have more folders than fds
                self.close()
            if folder:
                parent, _, name = folder.rpartition(b"/")
                self.fds[folder] = os.open(name, DIR_FLAGS, dir_fd=self.fd(parent))
            else:
                self.fds[folder] = os.open(self.root, DIR_FLAGS)
        return self.fds[folder]

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def check_revision(previous, sha):
    try:
        fd = os.open(os.path.join(previous, "REVISION"), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        unusable("cannot read REVISION of " + previous + ": " + exc.strerror)
    try:
        found = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if found != sha:
        unusable(previous + " holds " + found[:12] + ", not " + sha[:12])


def spawn(argv):
    """argv started reading from a pipe: (its pid, the pipe to write). By hand, not
    with subprocess: importing that costs ~10 ms of CPU on every host at every build."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(read_end, 0)
            os.close(read_end)
            os.close(write_end)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    os.close(read_end)
    return pid, os.fdopen(write_end, "wb")


def exit_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def unpack(partial, manifest_size):
    """Inflate stdin: the manifest is returned, the tar goes to tar."""
    inflate = zlib.decompressobj()
    manifest = bytearray()
    tar, tar_stdin = spawn(["tar", "-x", "-f", "-", "-C", partial])

    def feed(data):
        need = manifest_size - len(manifest)
        if need > 0:
            manifest.extend(data[:need])
            data = data[need:]
        if data:
            tar_stdin.write(data)

    try:
        while True:
            chunk = os.read(0, CHUNK)
            if not chunk:
                break
            feed(inflate.decompress(chunk))
        feed(inflate.flush())
    except BrokenPipeError:
        pass  # tar stopped reading: its exit status says why
    finally:
        try:
            tar_stdin.close()
        except BrokenPipeError:
            pass
    code = exit_code(tar)
    if code:
        sys.exit(code)
    if not inflate.eof or len(manifest) != manifest_size:
        sys.stderr.write("relconsole-delta: the stream ended early\n")
        sys.exit(1)
    return bytes(manifest)


def copy_file(src_dir, src_name, dst_dir, dst_name):
    """A copy where a link is refused: same bytes, same mode (as tar left the source)."""
    src = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_dir)
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            unusable("not a file in the previous release: " + os.fsdecode(src_name))
        dst = os.open(
            dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_dir
        )
        try:
            while True:
                chunk = os.read(src, CHUNK)
                if not chunk:
                    break
                os.write(dst, chunk)
            os.fchmod(dst, stat.S_IMODE(info.st_mode))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def blob_id(folder, name, algorithm):
    """(x, object id) of the file as landed in the new release, as git names a blob."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    except OSError as exc:  # ELOOP: a symlink where the tree has a file
        unusable("not a file in the previous release: " + os.fsdecode(name) + ": " + exc.strerror)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            unusable("not a file in the previous release: " + os.fsdecode(name))
        digest = hashlib.new(algorithm)
        digest.update(b"blob %d\0" % info.st_size)
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    finally:
        os.close(fd)
    return (b"1" if info.st_mode & stat.S_IXUSR else b"0"), digest.hexdigest().encode()


def place(src_dir, src_name, dst_dir, dst_name, how):
    """A file of the previous release into the new one: hard-linked when HOW is "link" and
    the filesystem allows it (True), else copied (False)."""
    if how == "link":
        try:
            os.link(
                src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False
            )
            return True
        except OSError as exc:
            if exc.errno not in COPY_INSTEAD:
                raise
    copy_file(src_dir, src_name, dst_dir, dst_name)
    return False


def link_all(manifest, previous, partial, algorithm, how):
    fields = manifest.split(b"\0")[:-1]
    sources, targets = Folders(os.fsencode(previous)), Folders(os.fsencode(partial))
    total = hashlib.sha256()
    linked = copied = 0
    for i in range(0, len(fields), 3):
        dest, source = fields[i], fields[i + 1] or fields[i]
        for path in (dest, source):
            if any(part in (b"", b".", b"..") for part in path.split(b"/")):
                unusable("a path that is not plain: " + os.fsdecode(path))
        src_folder, _, src_name = source.rpartition(b"/")
        dst_folder, _, dst_name = dest.rpartition(b"/")
        try:
            src_dir = sources.fd(src_folder)
        except OSError as exc:
            unusable(
                "no folder " + os.fsdecode(src_folder) + " in the previous release: " + exc.strerror
            )
        dst_dir = targets.fd(dst_folder)
        try:
            if place(src_dir, src_name, dst_dir, dst_name, how):
                linked += 1
            else:
                copied += 1
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                unusable("missing from the previous release: " + os.fsdecode(source))
            raise
        executable, oid = blob_id(dst_dir, dst_name, algorithm)
        total.update(executable + oid + b"\n")
    sources.close()
    targets.close()
    return total.hexdigest(), linked, copied


def main():
    previous, sha, partial, algorithm, expected, how = sys.argv[2:8]  # [1]: relconsole-delta
    head = read_exact(len(MAGIC) + 13)
    if not head.startswith(MAGIC):
        sys.stderr.write("relconsole-delta: not a delta stream\n")
        sys.exit(1)
    check_revision(previous, sha)
    manifest = unpack(partial, int(head[len(MAGIC) : len(MAGIC) + 12]))
    found, linked, copied = link_all(manifest, previous, partial, algorithm, how)
    if found != expected:
        unusable("files of " + previous + " differ from commit " + sha[:12])
    sys.stdout.write("linked=%d copied=%d\n" % (linked, copied))


if __name__ == "__main__":
    main()
