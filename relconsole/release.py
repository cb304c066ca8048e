"""The release layout on a host, as shell commands: Capistrano's, in short.

    <path>/releases/<release-id>/     one directory per release, REVISION inside
    <path>/current -> releases/<id>   switched atomically (new link renamed over the old)
    <path>/shared/<entry>             files and folders kept on the host (not in git),
                                      linked into every release at the same place

Every path and argument is quoted with :func:`shlex.quote`; these builders are pure
so they can be read and tested on their own.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Optional

from relconsole.config import FileUpload, SharedPath

#: ``20261126-070707.123-1a2b3c4`` (and ids of earlier versions, without ``.123``).
RELEASE_ID = re.compile(r"^\d{8}-\d{6}(\.\d{3})?-[0-9a-f]{7,40}$")
#: relconsole's own folder inside a release; never taken from the repository's tree.
OWN_DIR = ".relconsole"
STAGED_FILES = f"{OWN_DIR}/files"
PARTIAL_PREFIX = ".partial-"


def new_release_id(sha: str, now: Optional[datetime] = None) -> str:
    """Sortable by time, readable, and naming the commit: ``20261126-070707.123-1a2b3c4``.

    Milliseconds, so two builds of one commit in the same second get two folders (the
    extract also refuses a folder that exists: a release folder is never reused).
    """
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}.{now.microsecond // 1000:03d}-{sha[:7]}"


def release_dir(base: str, release: str) -> str:
    return posixpath.join(base, "releases", release)


def q(value: str) -> str:
    return shlex.quote(value)


def ensure_dir(path: str) -> str:
    """``mkdir -p path`` only when the folder is missing: the test is a builtin of the
    shell, mkdir a program started on the host (~1 ms of its CPU each time, and a build
    makes the same folders on every host every time)."""
    return f"{{ [ -d {q(path)} ] || mkdir -p {q(path)}; }}"


def partial_dir(base: str, release: str) -> str:
    """Where a release is unpacked before it is complete: a name no listing takes for a
    release, so an upload cut short is never switched or rolled back to."""
    return posixpath.join(base, "releases", f"{PARTIAL_PREFIX}{release}")


def extract_command(base: str, release: str, unpack: Optional[str] = None) -> str:
    """Unpack the tar on stdin into a new release directory (which must not exist yet).

    It is unpacked under a partial name and renamed when tar succeeded. When tar fails
    (disk full, input cut off by a dropped connection) the host removes the partial
    directory itself, without waiting for a connection that may be gone. Partial
    directories of earlier builds (whose shell was killed) go first: the deploy lock is
    held, so no other upload is writing one.

    ``unpack``: what fills the partial directory from stdin instead of tar (``$partial``
    names it): a delta upload's script (:func:`delta_extract_command`).
    """
    releases = posixpath.join(base, "releases")
    target, partial = release_dir(base, release), partial_dir(base, release)
    unpack = unpack or 'tar -x -f - -C "$partial"'
    return (
        f"{ensure_dir(releases)} && for p in {q(releases)}/{PARTIAL_PREFIX}*; do "
        f'if [ -e "$p" ] || [ -L "$p" ]; then rm -rf -- "$p" || exit 1; fi; done && '
        f"{{ test ! -e {q(target)} || "
        f"{{ echo {q(target + ' already exists')} >&2; exit 1; }}; }} && "
        f'partial={q(partial)} && mkdir "$partial" && '
        f'{{ {unpack} && mv -T "$partial" {q(target)} || '
        f'{{ rc=$?; rm -rf "$partial"; exit $rc; }}; }}'
    )


def delta_extract_command(
    base: str, release: str, previous: str, sha: str, script: str, args: Sequence[str]
) -> str:
    """Make a new release from ``previous`` (whose REVISION must say ``sha``) and the
    delta stream on stdin, through the partial directory as :func:`extract_command`
    does. ``script`` is python source run on the host as ``SCRIPT PREVIOUS SHA PARTIAL
    ARGS...``; a host without python3 exits 3, as a previous release that cannot
    serve does (:data:`DELTA_UNUSABLE`)."""
    no_python = q(f"{DELTA_UNUSABLE_MARK} no python3 on the host")
    unpack = (
        f"{{ command -v python3 >/dev/null || {{ echo {no_python} >&2; exit 3; }}; }} && "
        f"python3 -I -S -c {q(script)} relconsole-delta {q(release_dir(base, previous))} "
        f'{q(sha)} "$partial" {" ".join(q(a) for a in args)}'
    )
    return extract_command(base, release, unpack)


#: How a delta extraction says its previous release cannot serve: exit 3 and this mark.
DELTA_UNUSABLE = 3
DELTA_UNUSABLE_MARK = "relconsole-delta: unusable:"


def shared_dir(base: str) -> str:
    """Where ``shared`` entries live on a host: beside the releases, never pruned."""
    return posixpath.join(base, "shared")


def link_shared_command(base: str, release: str, shared: Sequence[SharedPath]) -> str:
    """Link every ``shared`` entry into a release that is not live yet.

    First, with nothing changed yet: every shared file must exist (relconsole never
    writes one: a missing ``.env`` fails here, naming it) and every entry must be of
    its kind. Then missing shared folders are made (empty), and in the release each
    entry becomes a symlink to ``<path>/shared/<entry>``, replacing what the
    repository had there. A folder on the way that is a symlink in the release is
    refused: the repository's tree could point it anywhere, and this runs as root.
    """
    store, target = shared_dir(base), release_dir(base, release)
    lines = ["set -e"]
    for entry in shared:
        kept = posixpath.join(store, entry.path)
        if entry.folder:
            lines.append(
                f"if [ -e {q(kept)} ] && [ ! -d {q(kept)} ]; then "
                f"echo {q(f'shared folder {kept} is not a folder')} >&2; exit 3; fi"
            )
        else:
            missing = (
                f"missing shared file {kept}: create it on the host "
                "(relconsole never writes shared files)"
            )
            lines.append(
                f"if [ ! -e {q(kept)} ]; then echo {q(missing)} >&2; exit 3; fi; "
                f"if [ ! -f {q(kept)} ]; then "
                f"echo {q(f'shared file {kept} is not a file')} >&2; exit 3; fi"
            )
    for entry in shared:
        if entry.folder:
            lines.append(f"mkdir -p {q(posixpath.join(store, entry.path))}")
    for entry in shared:
        link = posixpath.join(target, entry.path)
        parts = entry.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = posixpath.join(target, *parts[:depth])
            refused = f"shared {entry}: {'/'.join(parts[:depth])} is a symlink in the release"
            lines.append(f"if [ -L {q(folder)} ]; then echo {q(refused)} >&2; exit 3; fi")
        if parts:
            lines.append(f"mkdir -p {q(posixpath.dirname(link))}")
        lines.append(f"rm -rf {q(link)}")
        lines.append(f"ln -s {q(posixpath.join(store, entry.path))} {q(link)}")
    return "\n".join(lines)


def remove_release_command(base: str, release: str) -> str:
    return f"rm -rf {q(release_dir(base, release))} {q(partial_dir(base, release))}"


def _retire_files(files: Sequence[FileUpload], incoming: bool) -> list[str]:
    """Shell lines removing from each ``dest`` what the outgoing release (``$old``)
    installed there and the incoming one (``$new``; none when not ``incoming``) does
    not ship: a conf that a rolled-back release added must not stay behind and break
    every later ``supervisorctl update``. Only names under ``dest`` are touched."""
    lines = []
    for index, upload in enumerate(files):
        staged = q(posixpath.join(STAGED_FILES, str(index)))
        keep = f'[ -e "$new"/{staged}/"$n" ] || ' if incoming else ""
        lines.append(
            f'for f in "$old"/{staged}/* "$old"/{staged}/.[!.]* "$old"/{staged}/..?*; do '
            f'[ -e "$f" ] || [ -L "$f" ] || continue; n=${{f##*/}}; '
            f'{keep}rm -f -- {q(upload.dest)}/"$n"; done'
        )
    return lines


def switch_command(base: str, release: str, files: Sequence[FileUpload]) -> str:
    """Install the release's staged files, then point ``current`` at it atomically.

    Prints ``previous=<old target>`` first so a failed fleet switch can be undone, and
    every release folder last (:func:`parse_releases` reads them).
    The files the outgoing release installed and this one does not ship are removed
    first, so ``files`` always follow ``current`` (a rollback restores them too).
    The new link is made under a temporary name and renamed over ``current``
    (``mv -T`` is one rename(2)): readers see the old release or the new, never none.
    """
    target = release_dir(base, release)
    current = posixpath.join(base, "current")
    tmp = posixpath.join(base, f".current-{release}")
    lines = [
        "set -e",
        f"old=$(readlink {q(current)} || true)",
        "printf 'previous=%s\\n' \"$old\"",
        f"new={q(target)}",
    ]
    if files:
        lines += [
            'if [ -n "$old" ] && [ "$old" != "$new" ]; then',
            *_retire_files(files, incoming=True),
            "fi",
        ]
    for index, upload in enumerate(files):
        # Guarded: an older release (switched back to) may not have staged this entry.
        staged = posixpath.join(target, STAGED_FILES, str(index))
        lines.append(
            f"if [ -d {q(staged)} ]; then {ensure_dir(upload.dest)}; "
            f"cp -R {q(staged + '/.')} {q(upload.dest)}; fi"
        )
    lines.append(f"ln -sfn {q(target)} {q(tmp)}")
    lines.append(f"mv -T {q(tmp)} {q(current)}")
    # Every release folder after the switch: what pruning chooses from, read here
    # rather than by a command of its own at the end of the build.
    lines.append(f"ls -1 {q(posixpath.join(base, 'releases'))} 2>/dev/null || true")
    return "\n".join(lines)


def read_own_file(path: str) -> str:
    """``cat`` of a file relconsole wrote, refusing a symlink: a hostile tree could have
    put one there pointing at /etc/shadow, and reads run as root."""
    return f"if [ -f {q(path)} ] && [ ! -L {q(path)} ]; then head -c 4096 {q(path)}; fi"


def deployed_command(base: str) -> str:
    """``current=<link target>``, then the REVISION of the release ``current`` is."""
    current = posixpath.join(base, "current")
    return (
        f"printf 'current=%s\\n' \"$(readlink {q(current)} || true)\"; "
        f"{read_own_file(posixpath.join(current, 'REVISION'))} 2>/dev/null || true"
    )


def parse_deployed(output: str) -> tuple[Optional[str], Optional[str]]:
    """(release id, sha) from :func:`deployed_command`'s output; None for what is missing."""
    release, sha = None, None
    for line in output.splitlines():
        if line.startswith("current="):
            release = release_from_link(line, "current")
        elif line.strip() and sha is None:
            sha = line.strip()
    return release, sha


def revision_command(base: str, release: str) -> str:
    return read_own_file(posixpath.join(release_dir(base, release), "REVISION"))


def unlink_current_command(base: str, files: Sequence[FileUpload] = ()) -> str:
    """Undo a first deploy's switch: there was no ``current`` before it, nor its files."""
    current = posixpath.join(base, "current")
    retire = ['if [ -n "$old" ]; then', *_retire_files(files, incoming=False), "fi"]
    return "\n".join(
        [f"old=$(readlink {q(current)} || true)", *(retire if files else []), f"rm -f {q(current)}"]
    )


def release_from_link(line: str, key: str) -> Optional[str]:
    """The release id in a ``key=<link target>`` line printed by these commands (the
    target's last path part), or None when the line is another or names no release."""
    if not line.startswith(key + "="):
        return None
    name = posixpath.basename(line.removeprefix(key + "=").rstrip("/"))
    return name if RELEASE_ID.match(name) else None


def parse_previous(output: str) -> Optional[str]:
    """The release id ``current`` pointed to before a switch, from its ``previous=`` line."""
    return next(
        (r for r in (release_from_link(ln, "previous") for ln in output.splitlines()) if r), None
    )


def previous_release(current: Optional[str], releases: Iterable[str]) -> Optional[str]:
    """The newest release older than ``current``: where a plain rollback goes."""
    older = [r for r in releases if current and r < current]
    return max(older) if older else None


def verdicts_file(base: str) -> str:
    """Beside the releases on the host (not in state_dir): what each release proved to
    be when it went live. It outlives this machine's state and any one build."""
    return posixpath.join(base, OWN_DIR, "verdicts")


GOOD, FAILED = "good", "failed"


def mark_current_command(base: str, verdict: str) -> str:
    """Record ``verdict`` (GOOD: its programs passed verify; FAILED: they did not) for
    the release ``current`` points at."""
    current, verdicts = posixpath.join(base, "current"), verdicts_file(base)
    return (
        f"r=$(readlink {q(current)}) && {ensure_dir(posixpath.dirname(verdicts))} && "
        f"printf '%s %s\\n' {q(verdict)} \"${{r##*/}}\" >> {q(verdicts)}"
    )


def mark_release_command(base: str, release: str, verdict: str) -> str:
    """Record ``verdict`` for ``release`` whatever ``current`` points at: a rollout that
    failed marks its release failed on the hosts of batches that had passed, so no
    rollback goes back to it there."""
    verdicts = verdicts_file(base)
    return (
        f"{ensure_dir(posixpath.dirname(verdicts))} && "
        f"printf '%s %s\\n' {q(verdict)} {q(release)} >> {q(verdicts)}"
    )


def list_releases_command(base: str) -> str:
    """``current=…``, every release folder, then ``verdict=good|failed <id>`` lines in
    the order they were recorded (``verdicts=none`` when this host has no record)."""
    releases = posixpath.join(base, "releases")
    current = posixpath.join(base, "current")
    verdicts = verdicts_file(base)
    return (
        f"printf 'current=%s\\n' \"$(readlink {q(current)} || true)\"; "
        f"ls -1 {q(releases)} 2>/dev/null || true; "
        f"if [ -f {q(verdicts)} ] && [ ! -L {q(verdicts)} ]; then "
        f"sed 's/^/verdict=/' {q(verdicts)}; else echo verdicts=none; fi"
    )


def parse_releases(output: str) -> tuple[Optional[str], list[str]]:
    """(current release id or None, every release id oldest first) from the listing."""
    current = None
    releases = []
    for line in output.splitlines():
        if line.startswith("current="):
            current = release_from_link(line, "current")
        elif RELEASE_ID.match(line.strip()):
            releases.append(line.strip())
    return current, sorted(releases)


def parse_verdicts(output: str) -> Optional[dict[str, str]]:
    """Each release's latest verdict, in the order they became good or failed (the
    last one recorded last); None when the host keeps no record at all."""
    if "verdicts=none" in output.splitlines():
        return None
    found: dict[str, str] = {}
    for line in output.splitlines():
        verdict, _, release = line.removeprefix("verdict=").partition(" ")
        if line.startswith("verdict=") and verdict in (GOOD, FAILED) and RELEASE_ID.match(release):
            found.pop(release, None)  # re-inserted: the order is that of the latest verdict
            found[release] = verdict
    return found


def rollback_target(
    current: Optional[str], releases: Sequence[str], verdicts: Optional[dict[str, str]]
) -> Optional[str]:
    """Where a plain rollback takes a host: the release that was last live and good
    before ``current`` (and is still there). A release that failed is never a target.

    Hosts deployed before verdicts were recorded (``verdicts`` None) fall back to the
    newest release older than ``current``.
    """
    if verdicts is None:
        return previous_release(current, releases)
    present = set(releases)
    good = [r for r, v in verdicts.items() if v == GOOD and r != current and r in present]
    return good[-1] if good else None


def releases_to_prune(
    releases: list[str], keep: int, current: Optional[str], previous: Optional[str]
) -> list[str]:
    """The oldest releases beyond ``keep``; never the current or the previous one."""
    newest = set(sorted(releases)[-keep:]) if keep > 0 else set()
    protected = newest | {current, previous}
    return [r for r in sorted(releases) if r not in protected]


def prune_command(base: str, releases: Iterable[str]) -> Optional[str]:
    paths = [q(release_dir(base, r)) for r in releases if RELEASE_ID.match(r)]
    return f"rm -rf {' '.join(paths)}" if paths else None
