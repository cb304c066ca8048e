"""``--plan``: what a build would do, changing nothing and taking no lock.

Read, never written: the branch tip in the service's workspace (fetched under the
workspace's git lock, never checked out, so a build in progress is not disturbed),
and on every host in parallel, in one command each: the release ``current`` points
at and its REVISION, who holds the deploy lock (and its heartbeat's age), and what is
installed now at each ``files`` destination, for the names the current release
staged and the names the build would ship.

From those: the commits between what runs and what would go out (per group of hosts
that run the same release: hosts that differ are shown apart), ``git diff --stat``
of each range, a unified diff per installed file that would change (a supervisor
program config is the usual surprise), which programs ``supervisorctl update``
would touch (their ``[program:x]`` sections differ) and which the build restarts,
and whether the deploy lock is free.
"""

from __future__ import annotations

import base64
import configparser
import difflib
import posixpath
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import git

from relconsole import lock as lk
from relconsole import release as rel
from relconsole.config import Config, Host, Service
from relconsole.errors import RelconsoleError
from relconsole.fanout import fan_out
from relconsole.hosts.base import Transport
from relconsole.hosts.connect import Connector, Dialer, OnHost
from relconsole.release import q
from relconsole.stages.checkout import (
    CheckoutError,
    fetch,
    git_error,
    open_or_clone,
    workspace_lock,
    workspace_path,
)
from relconsole.stages.upload import match_tree
from relconsole.text import printable

#: Installed and shipped files larger than this are compared by size only.
MAX_FILE = 64 * 1024
#: Commits listed per range at most, and files in a diffstat.
MAX_COMMITS = 50
MAX_STAT_FILES = 50
#: git's empty tree: what "nothing deployed yet" is compared from.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_MARK = "@@relconsole-plan"


# --------------------------------------------------------------------------- the facts


@dataclass(frozen=True)
class PlanCommit:
    sha: str
    subject: str
    author: str


@dataclass(frozen=True)
class HostNow:
    """What one host runs now, and what its ``files`` destinations hold."""

    host: str
    release: Optional[str] = None
    sha: Optional[str] = None
    error: Optional[str] = None
    #: Per ``files`` entry, the names the current release staged (installed at dest).
    staged: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: (entry, name) → what dest/name holds: bytes, None (absent), or a word saying
    #: why it was not read ("symlink", "larger than 64 KiB").
    installed: dict[tuple[int, str], bytes | str | None] = field(default_factory=dict)
    lock_holder: Optional[lk.LockInfo] = None
    locked: bool = False
    lock_age: Optional[int] = None


@dataclass(frozen=True)
class ReleaseGroup:
    """Hosts that run the same release, and what a build would change for them."""

    hosts: tuple[str, ...]
    release: Optional[str]
    sha: Optional[str]
    #: Commits the build adds, newest first; those it would take away (a build of an
    #: older commit than what runs).
    commits: tuple[PlanCommit, ...] = ()
    removed: tuple[PlanCommit, ...] = ()
    diffstat: str = ""
    note: str = ""


@dataclass(frozen=True)
class FileChange:
    """One installed file a build would add, change or remove, on ``hosts``."""

    entry: int
    dest: str
    name: str
    change: str  # "added", "changed", "removed", "unchanged"
    hosts: tuple[str, ...]
    diff: str = ""


@dataclass(frozen=True)
class ProgramChange:
    name: str
    action: str  # "restart", or "update: added/changed/removed" (supervisorctl update)


@dataclass(frozen=True)
class Plan:
    service: str
    branch: str
    sha: Optional[str]
    subject: Optional[str]
    author: Optional[str]
    hosts: tuple[HostNow, ...]
    groups: tuple[ReleaseGroup, ...]
    files: tuple[FileChange, ...]
    programs: tuple[ProgramChange, ...]
    #: Who holds the deploy lock and where; None when it is free.
    lock: Optional[str]
    #: What could not be read, one line each (hosts named).
    problems: tuple[str, ...] = ()
    #: What the build would trip on (a ``files`` entry that matches nothing...).
    warnings: tuple[str, ...] = ()

    @property
    def unreadable(self) -> list[str]:
        return [h.host for h in self.hosts if h.error]

    @property
    def complete(self) -> bool:
        """Everything could be read (the exit code's question)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "branch": self.branch,
            "sha": self.sha,
            "subject": self.subject,
            "author": self.author,
            "hosts": [
                {"host": h.host, "release": h.release, "sha": h.sha, "error": h.error}
                for h in self.hosts
            ],
            "groups": [asdict(g) for g in self.groups],
            "files": [asdict(f) for f in self.files],
            "programs": [asdict(p) for p in self.programs],
            "lock": {"free": self.lock is None, "holder": self.lock},
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "complete": self.complete,
        }


class PlanError(RelconsoleError):
    """The workspace could not say what a build would deploy."""


# --------------------------------------------------------------------------- this machine


@dataclass(frozen=True)
class Shipped:
    """What the build would ship for one ``files`` entry: name → content (bytes, or a
    word saying why it is not compared)."""

    entry: int
    files: dict[str, bytes | str]
    problem: Optional[str] = None


@dataclass(frozen=True)
class Tip:
    sha: str
    subject: str
    author: str
    shipped: tuple[Shipped, ...]


def read_tip(config: Config, service: Service, branch: str) -> Tip:
    """Fetch ``branch`` into the service's workspace (cloning it first if needed) and
    read what a build of its tip would ship. Raises :class:`PlanError`."""
    workspace = workspace_path(config.settings.state_dir, service.name)
    timeout = config.settings.command_timeout
    try:
        with workspace_lock(workspace, timeout):
            repo = open_or_clone(workspace, service.repo, lambda _line: None, timeout, None)
            fetch(workspace, service.repo, timeout)
        try:
            sha = repo.git.rev_parse(
                "--verify", "--quiet", f"refs/remotes/origin/{branch}^{{commit}}"
            )
        except git.GitCommandError:
            raise PlanError(f"branch '{branch}' not found in {service.repo}") from None
        commit = repo.commit(sha)
        tree = repo.git.ls_tree("-r", "-z", "--full-tree", sha).split("\0")
    except CheckoutError as exc:
        raise PlanError(str(exc)) from None
    except git.GitCommandError as exc:
        raise PlanError(git_error(exc)) from None
    modes = {}
    for entry in filter(None, tree):
        meta, _, path = entry.partition("\t")
        modes[path] = meta.split()[0]
    shipped = []
    for index, upload in enumerate(service.files):
        matches = match_tree(modes, upload.src)
        found: dict[str, bytes | str] = {}
        for path in matches:
            name = posixpath.basename(path)
            if modes[path] == "120000":
                found[name] = "a symlink: the build refuses it"
                continue
            data = repo.git.show(
                f"{sha}:{path}", stdout_as_string=False, strip_newline_in_stdout=False
            )
            found[name] = data if len(data) <= MAX_FILE else f"larger than {MAX_FILE // 1024} KiB"
        problem = (
            None if matches else f"files: '{upload.src}' matches no file: the build would fail"
        )
        shipped.append(Shipped(index, found, problem))
    return Tip(
        sha=sha,
        subject=printable(str(commit.summary)),
        author=printable(commit.author.name or ""),
        shipped=tuple(shipped),
    )


def commits_between(workspace_repo: git.Repo, base: str, tip: str) -> list[PlanCommit]:
    return [
        PlanCommit(c.hexsha, printable(str(c.summary)), printable(c.author.name or ""))
        for c in workspace_repo.iter_commits(f"{base}..{tip}", max_count=MAX_COMMITS)
    ]


def release_groups(
    config: Config, service: Service, tip: Optional[Tip], hosts: Sequence[HostNow]
) -> list[ReleaseGroup]:
    """Hosts grouped by the release they run, each group with what the build changes."""
    groups: dict[tuple[Optional[str], Optional[str]], list[str]] = {}
    for h in hosts:
        if h.error is None:
            groups.setdefault((h.release, h.sha), []).append(h.host)
    if tip is None:
        return [ReleaseGroup(tuple(names), r, s) for (r, s), names in groups.items()]
    repo = git.Repo(workspace_path(config.settings.state_dir, service.name))
    out = []
    for (release, sha), names in groups.items():
        out.append(_group(repo, tip, tuple(names), release, sha))
    return out


def _group(
    repo: git.Repo, tip: Tip, hosts: tuple[str, ...], release: Optional[str], sha: Optional[str]
) -> ReleaseGroup:
    stat = ("--stat=100", f"--stat-count={MAX_STAT_FILES}")
    if sha is None:
        recent = [
            PlanCommit(c.hexsha, printable(str(c.summary)), printable(c.author.name or ""))
            for c in repo.iter_commits(tip.sha, max_count=10)
        ]
        return ReleaseGroup(
            hosts,
            release,
            None,
            tuple(recent),
            diffstat=repo.git.diff(*stat, EMPTY_TREE, tip.sha),
            note="nothing deployed yet: the whole tree goes out (latest commits shown)",
        )
    try:
        repo.commit(sha)
    except (ValueError, git.BadName, git.GitCommandError):
        return ReleaseGroup(
            hosts, release, sha, note=f"{sha[:12]} is not in the repository (force-pushed away?)"
        )
    if sha == tip.sha:
        return ReleaseGroup(hosts, release, sha, note="already runs this commit")
    return ReleaseGroup(
        hosts,
        release,
        sha,
        commits=tuple(commits_between(repo, sha, tip.sha)),
        removed=tuple(commits_between(repo, tip.sha, sha)),
        diffstat=repo.git.diff(*stat, sha, tip.sha),
    )


# --------------------------------------------------------------------------- the hosts


def host_command(base: str, files: Sequence[tuple[int, str, Sequence[str]]]) -> str:
    """One command reading what a host runs, its lock and its installed files.

    ``files``: (entry, dest as the host sees it, names the build would ship). Every
    name and content travels base64-encoded: a file name may hold anything.
    """
    current = posixpath.join(base, "current")
    lines = [
        f"c=$(readlink {q(current)} || true)",
        f"printf '{_MARK} current %s\\n' \"$c\"",
        f"printf '{_MARK} revision\\n'",
        rel.read_own_file(posixpath.join(current, "REVISION")) + " 2>/dev/null || true",
        "echo",
        f"printf '{_MARK} lock\\n'",
        lk.lease_command(base),
        f"printf '{_MARK} files\\n'",
        # e ENTRY NAME DEST: one line "ENTRY STAGED? NAME64 STATE CONTENT64"
        'e() { p="$3/$2"; printf \'%s %s %s \' "$1" "$4" "$(printf %s "$2" | base64 -w0)"; '
        'if [ -L "$p" ]; then echo link; elif [ ! -f "$p" ]; then echo none; '
        f'elif [ $(wc -c < "$p") -gt {MAX_FILE} ]; then echo big; '
        "else printf 'file '; base64 -w0 < \"$p\"; echo; fi; }",
    ]
    for entry, dest, names in files:
        staged = posixpath.join(current, rel.STAGED_FILES, str(entry))
        lines.append(
            f"for f in {q(staged)}/* {q(staged)}/.[!.]* {q(staged)}/..?*; do "
            f'[ -e "$f" ] || [ -L "$f" ] || continue; e {entry} "${{f##*/}}" {q(dest)} staged; done'
        )
        lines += [f"e {entry} {q(name)} {q(dest)} shipped" for name in names]
    return "\n".join(lines)


def parse_host(host: str, output: str) -> HostNow:
    section = ""
    release = sha = None
    lock_lines: list[str] = []
    staged: dict[int, list[str]] = {}
    installed: dict[tuple[int, str], bytes | str | None] = {}
    for line in output.splitlines():
        if line.startswith(_MARK + " "):
            word, _, rest = line.removeprefix(_MARK + " ").partition(" ")
            section = word
            if word == "current":
                release = rel.release_from_link(f"current={rest}", "current")
            continue
        if section == "revision" and line.strip() and sha is None:
            sha = line.strip()
        elif section == "lock":
            lock_lines.append(line)
        elif section == "files":
            found = _file_line(line)
            if found is not None:
                entry, kind, name, content = found
                if kind == "staged":
                    staged.setdefault(entry, []).append(name)
                installed[(entry, name)] = content
    text = "\n".join(lock_lines)
    return HostNow(
        host,
        release,
        sha,
        staged={k: tuple(v) for k, v in staged.items()},
        installed=installed,
        lock_holder=lk.parse_holder(text),
        locked=any(ln.startswith("HELD") for ln in lock_lines),
        lock_age=lk.lock_age(text),
    )


def _file_line(line: str) -> Optional[tuple[int, str, str, bytes | str | None]]:
    parts = line.split(" ")
    if len(parts) < 4 or not parts[0].isdigit():
        return None
    try:
        name = base64.b64decode(parts[2]).decode("utf-8", "replace")
        content: bytes | str | None = {
            "none": None,
            "link": "a symlink: not read",
            "big": f"larger than {MAX_FILE // 1024} KiB",
        }.get(parts[3], b"")
        if parts[3] == "file":
            content = base64.b64decode(parts[4] if len(parts) > 4 else "")
    except (ValueError, IndexError):
        return None
    return int(parts[0]), parts[1], name, content


# --------------------------------------------------------------------------- comparing


def _text(data: bytes) -> Optional[list[str]]:
    if b"\0" in data:
        return None
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def file_diff(old: bytes | str | None, new: bytes | str | None, label: str) -> str:
    """A unified diff from what is installed to what the build installs."""
    for why in (old, new):
        if isinstance(why, str):
            return f"not compared: {why}"
    before = _text(old if isinstance(old, bytes) else b"")
    after = _text(new if isinstance(new, bytes) else b"")
    if before is None or after is None:
        return "binary files differ"
    lines = difflib.unified_diff(
        before,
        after,
        f"{label} (installed)" if old is not None else "/dev/null",
        f"{label} (this build)" if new is not None else "/dev/null",
    )
    return printable("".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines))


def file_changes(
    service: Service, tip: Optional[Tip], hosts: Sequence[HostNow]
) -> list[FileChange]:
    """Per installed file, what the switch would do to it, hosts with the same content
    grouped."""
    out: list[FileChange] = []
    read = [h for h in hosts if h.error is None]
    for index, upload in enumerate(service.files):
        shipped = tip.shipped[index].files if tip is not None else {}
        names: list[str] = list(shipped)
        for h in read:
            names += [n for n in h.staged.get(index, ()) if n not in names]
        for name in names:
            new = shipped.get(name)
            by_content: dict[Any, list[str]] = {}
            for h in read:
                if name not in shipped and name not in h.staged.get(index, ()):
                    continue  # not installed by relconsole here: the switch leaves it
                by_content.setdefault(h.installed.get((index, name)), []).append(h.host)
            for old, names_of_hosts in by_content.items():
                label = posixpath.join(upload.dest, name)
                if new is None:
                    change = "removed" if old is not None else "unchanged"
                elif old is None:
                    change = "added"
                else:
                    change = "unchanged" if old == new else "changed"
                diff = file_diff(old, new, label) if change != "unchanged" else ""
                out.append(
                    FileChange(index, upload.dest, name, change, tuple(names_of_hosts), diff)
                )
    return out


_PROGRAM_SECTIONS = ("program:", "group:", "fcgi-program:", "eventlistener:")


def supervisor_sections(data: bytes | str | None) -> dict[str, dict[str, str]]:
    """``[program:x]``-like sections of a supervisor config by group name; {} when the
    file is not one (or not text)."""
    if not isinstance(data, bytes) or b"\0" in data:
        return {}
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(data.decode("utf-8", "replace"))
    except configparser.Error:
        return {}
    return {
        section.split(":", 1)[1]: dict(parser.items(section))
        for section in parser.sections()
        if section.startswith(_PROGRAM_SECTIONS)
    }


def program_changes(
    service: Service, tip: Optional[Tip], hosts: Sequence[HostNow], files: Sequence[FileChange]
) -> list[ProgramChange]:
    """What ``supervisorctl update`` would add, change or remove (sections differ in a
    shipped file), then what the build restarts (the service's programs)."""
    found: dict[str, str] = {}
    by_host = {h.host: h for h in hosts}
    for change in files:
        if change.change == "unchanged":
            continue
        new = tip.shipped[change.entry].files.get(change.name) if tip is not None else None
        old = by_host[change.hosts[0]].installed.get((change.entry, change.name))
        before, after = supervisor_sections(old), supervisor_sections(new)
        for name in sorted(set(before) | set(after)):
            if name not in before:
                found.setdefault(name, "update: added")
            elif name not in after:
                found.setdefault(name, "update: removed")
            elif before[name] != after[name]:
                found.setdefault(name, "update: config changed")
    out = [ProgramChange(name, action) for name, action in found.items()]
    return out + [ProgramChange(p, "restart") for p in service.programs]


# --------------------------------------------------------------------------- the plan


def read_plan(
    config: Config,
    service_name: str,
    branch: Optional[str] = None,
    *,
    on_host: Optional[OnHost] = None,
    connector: Optional[Connector] = None,
) -> Plan:
    """What a build of ``branch`` (default: the service's) would do; changes nothing.

    ``on_host``: run work on a host's open connection (the console's poller); without
    it every host gets a connection of its own (through ``connector``, default a
    :class:`Dialer`), opened while git fetches and closed at the end.
    """
    service = config.services[service_name]
    branch = branch or service.branch
    hosts = config.hosts_of(service)
    settings = config.settings
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-git") as git_pool:
        tip_future = git_pool.submit(read_tip, config, service, branch)

        def tip() -> Optional[Tip]:
            try:
                return tip_future.result()
            except PlanError:
                return None

        def read(t: Transport) -> HostNow:
            found = tip()
            files = [
                (
                    i,
                    t.path(u.dest),
                    sorted(found.shipped[i].files) if found is not None else [],
                )
                for i, u in enumerate(service.files)
            ]
            res = t.run(
                host_command(t.path(service.path), files),
                timeout=settings.command_timeout,
                sudo=True,
            )
            if not res.ok:
                raise PlanError(f"cannot read: {res.tail(2) or f'exit {res.exit_code}'}")
            return parse_host(t.name, res.stdout)

        dialer: Optional[Dialer] = None
        if on_host is None:
            dialer = Dialer(settings) if connector is None else None
            on_host = _own_connections(connector or dialer, settings)  # type: ignore[arg-type]
        else:
            tip()  # the console's connections are shared: never hold one while git works
        try:
            outcomes = fan_out(
                hosts,
                lambda h: h.name,
                lambda h: on_host(h, read),
                max_parallel=settings.max_parallel,
                thread_name="plan",
            )
        finally:
            if dialer is not None:
                dialer.close()
        problems: list[str] = []
        try:
            the_tip: Optional[Tip] = tip_future.result()
        except PlanError as exc:
            the_tip = None
            problems.append(f"{service.name}'s workspace: {exc}")
    now = tuple(
        o.value if o.ok and o.value is not None else HostNow(o.host, error=o.error)
        for o in outcomes
    )
    problems += [f"{h.host}: {h.error}" for h in now if h.error]
    try:
        groups = release_groups(config, service, the_tip, now)
    except (git.GitCommandError, ValueError) as exc:
        groups = release_groups(config, service, None, now)
        problems.append(f"{service.name}'s workspace: {exc}")
    files = file_changes(service, the_tip, now)
    return Plan(
        service=service.name,
        branch=branch,
        sha=the_tip.sha if the_tip else None,
        subject=the_tip.subject if the_tip else None,
        author=the_tip.author if the_tip else None,
        hosts=now,
        groups=tuple(groups),
        files=tuple(files),
        programs=tuple(program_changes(service, the_tip, now, files)),
        lock=lock_state(config, service, now),
        problems=tuple(problems),
        warnings=tuple(s.problem for s in (the_tip.shipped if the_tip else ()) if s.problem),
    )


def _own_connections(connector: Connector, settings) -> OnHost:
    def on_host(host: Host, work: Callable[[Transport], Any]) -> Any:
        t = connector(host, settings)
        try:
            return work(t)
        finally:
            t.close()

    return on_host


def lock_state(config: Config, service: Service, hosts: Sequence[HostNow]) -> Optional[str]:
    """Who holds the service's deploy lock (this machine's, then the hosts'), in one
    line; None when it is free."""
    holder = lk.LocalLock(config.settings.state_dir, service.name).holder()
    if holder is not None:
        return f"{holder.describe()} on this machine"
    locked = [h for h in hosts if h.locked]
    if not locked:
        return None
    first = locked[0]
    who = first.lock_holder.describe() if first.lock_holder else "an unknown holder"
    beat = f"; last heartbeat {first.lock_age}s ago" if first.lock_age is not None else ""
    return f"{who} on {', '.join(h.host for h in locked)}{beat}"
