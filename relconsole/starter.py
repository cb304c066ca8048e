"""``relconsole --init``: a starter config.toml written from what the repository holds.

The text is written by hand, not by a TOML library, because every key carries a
one-line comment saying what it does (and, for a guess, why it was guessed). Before
anything is written the text goes through the real loader (:func:`parse_config`), so
what ``--init`` writes always loads; an existing file is never replaced without
``force``.

Hosts come from ``--hosts`` (``name``, ``user@name``, ``name:port``); a name that is an
ssh_config alias is written as its alias only: HostName, Port, User and IdentityFile
stay in ssh_config, where the team already keeps them. The comment beside it says
what ssh_config makes of it (worked out as a build would, without connecting).
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Optional

from relconsole.config import (
    DEFAULT_SSH_CONFIG,
    ConfigError,
    Host,
    Settings,
    parse_config,
    parse_destination,
    validate_name,
)
from relconsole.errors import RelconsoleError
from relconsole.repo_scan import RepoFacts

#: Debian's and Ubuntu's supervisord reads /etc/supervisor/conf.d/*.conf.
SUPERVISOR_INCLUDE = "/etc/supervisor/conf.d"
#: Where comments start, as in the documented sample config.toml.
COMMENT_COLUMN = 40


class StarterError(RelconsoleError):
    """``--init`` cannot write a starter config (a bad flag, a file in the way)."""


@dataclass(frozen=True)
class HostSpec:
    """One ``--hosts`` entry: ``name``, ``user@name``, ``name:port``."""

    name: str  # the [hosts] table
    address: str
    user: Optional[str] = None
    port: Optional[int] = None


def parse_host_specs(text: str) -> list[HostSpec]:
    """``web1,deploy@web2:2222`` → specs. Raises StarterError naming the bad entry."""
    specs: list[HostSpec] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        try:
            user, address, port = parse_destination(raw)
            name = validate_name(address, "host name")
        except ValueError as exc:
            raise StarterError(f"--hosts: {exc}") from None
        if any(s.name == name for s in specs):
            raise StarterError(f"--hosts: {name} is given twice")
        specs.append(HostSpec(name, address, user, port))
    if not specs:
        raise StarterError("--hosts: no host given")
    return specs


# --------------------------------------------------------------------------- TOML text


def _str(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _str(name)


def _line(text: str, comment: str) -> str:
    pad = max(COMMENT_COLUMN - len(text), 2)
    return f"{text}{' ' * pad}# {comment}"


def _kv(key: str, value: str, comment: str) -> str:
    return _line(f"{key} = {value}", comment)


def _array(values: list[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class _Resolved:
    """What a build would make of a host (no connection made)."""

    summary: str  # "127.2.0.11:2222 as deploy" (+ " via bastion")
    user: Optional[str]  # the user logged in as; None when it could not be worked out
    user_from_ssh_config: bool
    alias: bool  # ssh_config says something specific about this name


def _ssh_config_path() -> Optional[Path]:
    path = Path(os.path.expanduser(DEFAULT_SSH_CONFIG))
    return path if path.is_file() else None


def _resolve(spec: HostSpec, settings: Settings) -> _Resolved:
    from relconsole.hosts.route import Resolver  # paramiko: only once hosts are given

    host = Host(name=spec.name, address=spec.address, port=spec.port, user=spec.user)
    try:
        resolver = Resolver(settings)
        route = resolver.route(host)
        options = resolver.ssh_options(spec.address)
    except ConfigError as exc:
        return _Resolved(f"ssh_config could not be read: {exc}", spec.user, False, False)
    target = route.target
    via = f" via {', '.join(h.name for h in route.gateways)}" if route.gateways else ""
    summary = f"{target.where} as {target.user}{via}"
    own = ("user", "port", "proxyjump", "proxycommand")
    alias = options.get("hostname", spec.address) != spec.address or any(k in options for k in own)
    return _Resolved(summary, target.user, "user" in options and not spec.user, alias)


def _host_lines(spec: HostSpec, settings: Settings) -> tuple[list[str], Optional[str]]:
    """The [hosts.NAME] table, and the user the host is logged in as."""
    r = _resolve(spec, settings)
    lines = [f"[hosts.{_key(spec.name)}]"]
    if r.alias:
        where = f"ssh_config alias: {r.summary} (kept in ssh_config, not repeated here)"
    else:
        where = f"not in ssh_config: {r.summary}"
    lines.append(_kv("address", _str(spec.address), where))
    user = r.user
    if spec.user:
        lines.append(_kv("user", _str(spec.user), "the ssh user (from --hosts)"))
    elif not r.user_from_ssh_config:
        user = user or _local_user()
        if user:
            lines.append(
                _kv("user", _str(user), "guess: your own user name; the deploy user on the host")
            )
    if spec.port is not None:
        lines.append(_kv("port", str(spec.port), "the ssh port (from --hosts)"))
    if user == "root":
        lines.append(_kv("sudo", "false", "root needs no sudo for releases and supervisorctl"))
    else:
        lines.append(
            _kv(
                "sudo",
                "true",
                f"guess: {user or 'the user'} is not root: writes and supervisorctl "
                "through `sudo -n` (needs NOPASSWD)",
            )
        )
    lines.append(
        _kv(
            "supervisorctl",
            _str("supervisorctl"),
            "the command run on the host (add -c PATH for another supervisord.conf)",
        )
    )
    return lines, user


def _local_user() -> Optional[str]:
    try:
        return getpass.getuser()
    except Exception:  # neither $USER nor a passwd entry: leave it to ssh_config
        return None


# --------------------------------------------------------------------------- the file


def starter_text(
    facts: RepoFacts,
    config_path: Path,
    *,
    service: Optional[str] = None,
    hosts: Optional[list[HostSpec]] = None,
    path: Optional[str] = None,
    today: Optional[date] = None,
) -> str:
    """The commented config.toml for the repository; it loads (checked with the real
    loader). Raises StarterError for a bad flag value, naming it."""
    name = service or facts.suggested_name()
    try:
        validate_name(name, "service name")
    except ValueError as exc:
        raise StarterError(f"--service: {exc}") from None
    settings = Settings(
        state_dir=config_path.parent / ".relconsole",
        known_hosts=Path(os.path.expanduser("~/.ssh/known_hosts")),
        ssh_config=_ssh_config_path(),
    )
    stamp = (today or date.today()).isoformat()
    out = [
        f"# relconsole config for {name}, written by `relconsole --init` on {stamp}.",
        "# Every key is explained in relconsole's docs/config.md. Next steps:",
        "#   relconsole --check-config   what this resolves to (ssh_config applied), offline",
        "#   relconsole --doctor         whether every host is ready for a build",
        "",
        "[settings]",
        _kv(
            "state_dir",
            _str(".relconsole"),
            "workspaces, history and logs, relative to this file (keep it out of git)",
        ),
        _kv("known_hosts", _str("~/.ssh/known_hosts"), "host keys checked; unknown ones refused"),
        _line(
            '# ssh_config = "~/.ssh/config"', "the default: aliases, users and keys come from it"
        ),
        "",
    ]
    given = hosts or []
    if not given:
        given = [HostSpec("web1", "web1.example.com")]
        out.append("# A placeholder: give your hosts with relconsole --init --hosts H1,H2,...")
    for spec in given:
        lines, _user = _host_lines(spec, settings)
        out += [*lines, ""]
    out += _service_lines(facts, config_path, name, given, path)
    text = "\n".join(out).rstrip("\n") + "\n"
    try:
        parse_config(text, config_path)
    except ConfigError as exc:  # a flag value the loader refuses (e.g. --path)
        raise StarterError(f"--init: {exc}") from None
    return text


def _service_lines(
    facts: RepoFacts, config_path: Path, name: str, hosts: list[HostSpec], path: Optional[str]
) -> list[str]:
    out = [f"[services.{_key(name)}]"]
    if facts.origin:
        out.append(_kv("repo", _str(facts.origin), "the repository's origin: builds clone it"))
    else:
        where = os.path.relpath(facts.root, config_path.parent)
        out.append(
            _kv("repo", _str(where), "no origin remote: this repository (builds clone its commits)")
        )
    if facts.branch:
        out.append(_kv("branch", _str(facts.branch), "the branch deployed (--branch overrides)"))
    else:
        out.append(_kv("branch", _str("main"), "guess: HEAD was detached; the branch deployed"))
    out.append(_kv("hosts", _array([h.name for h in hosts]), "the [hosts] tables deployed to"))
    if path:
        out.append(_kv("path", _str(path), "releases/ and current live here on each host"))
    elif facts.run_from:
        out.append(
            _kv(
                "path",
                _str(facts.run_from),
                f"guess: the program configs run from {facts.run_from}/current",
            )
        )
    else:
        out.append(
            _kv("path", _str(f"/srv/{name}"), "releases/ and current live here on each host")
        )
    programs = facts.programs
    if programs:
        sources = ", ".join(f.path for f in facts.program_files)
        out.append(_kv("programs", _array(programs), f"restarted and verified; from {sources}"))
    else:
        out.append(
            _kv("programs", "[]", "no [program:NAME] config found: name supervisor programs here")
        )
    out.append(_kv("keep_releases", "5", "releases kept per host (besides current and previous)"))
    for source, why in facts.skipped:
        out.append(f"# left out {source}: {why}")
    for check in facts.checks:
        out += [
            "",
            _line("[[services." + _key(name) + ".checks]]", f"guess: {check.why}"),
            _kv("name", _str(check.name), "the check's name in the console and the history"),
            _kv("run", _str(check.run), "run in the checkout; a non-zero exit stops the build"),
        ]
    for alt in facts.alternatives:
        out += [
            "",
            f"# Also found {alt.why}; `make test` probably runs it. To run it directly:",
            f"# [[services.{_key(name)}.checks]]",
            f"# name = {_str(alt.name)}",
            f"# run = {_str(alt.run)}",
        ]
    if not facts.checks:
        out += ["", "# No test suite or linter config found: add [[services.NAME.checks]] tables."]
    for src in facts.uploads:
        note = "" if src.endswith(".conf") else " (supervisord includes *.conf only: rename it)"
        out += [
            "",
            f"[[services.{_key(name)}.files]]",
            _kv("src", _str(src), "supervisor program configs in the repository" + note),
            _kv(
                "dest",
                _str(SUPERVISOR_INCLUDE),
                "copied here at the switch: supervisord's include folder on Debian",
            ),
        ]
    return out


def write_starter(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` to ``path``; an existing file is replaced only with ``force``
    (atomically, so a failed write leaves the old one)."""
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise StarterError(f"{path} exists: not overwritten (--force replaces it)") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return
    partial = path.with_name(f".{path.name}.init-{os.getpid()}")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
