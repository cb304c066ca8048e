"""Load and strictly validate relconsole's TOML configuration.

Standard library only: this module is on the headless path (``relconsole --help``,
CI runs) and must never pull in the TUI.

The file is parsed with :mod:`tomllib`, then every table is checked against a small
declarative schema (``key -> _Key(kind, default, check)``).  Unknown keys, wrong
types, bad names and dangerous values are reported as a :class:`ConfigError` whose
``str()`` is a single line naming the file, the table and the key::

    config.toml: [services.api] key 'hostz': unknown key (did you mean 'hosts'?)

Whatever bytes are given, :func:`parse_config` returns a :class:`Config` or raises
:class:`ConfigError` -- never another exception.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from relconsole.config_path import ENV_VAR, find_config_path
from relconsole.errors import RelconsoleError
from relconsole.events import Occasion
from relconsole.fanout import DEFAULT_MAX_PARALLEL, MAX_PARALLEL
from relconsole.secrets import ENV_NAME, check_reference

__all__ = [
    "Check",
    "Config",
    "ConfigError",
    "FileUpload",
    "Host",
    "NotifyTarget",
    "Probe",
    "Rolling",
    "SchemaKey",
    "Service",
    "Settings",
    "SetupCommand",
    "SharedPath",
    "find_config_path",
    "load_config",
    "parse_config",
    "parse_destination",
    "schema_keys",
    "validate_branch",
    "validate_name",
    "validate_program",
]

LOCAL = "local"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path  # absolute
    known_hosts: Path  # absolute, ~ expanded
    poll_interval: float = 2.0
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    #: A deploy lock whose heartbeat is older than this belongs to a run that died.
    lock_ttl: float = 120.0
    #: The OpenSSH client config read for every ssh host (absolute); None: read none.
    ssh_config: Path | None = None
    #: Hosts worked on at once by any one fan-out (build steps, polls, --run...).
    max_parallel: int = DEFAULT_MAX_PARALLEL


@dataclass(frozen=True, slots=True)
class Host:
    """A host as relconsole's config gives it. ``port`` and ``user`` are None when the
    config leaves them out: ssh_config then decides, else 22 and the local user
    (:mod:`relconsole.hosts.route` works out what a connection really uses)."""

    name: str
    address: str  # a hostname, an IP address, an ssh_config alias, or "local"
    port: int | None = None
    user: str | None = None
    key: Path | None = None
    supervisorctl: str = "supervisorctl"
    sudo: bool = False
    root: Path | None = None
    key_passphrase: str | None = None  # a secret reference: env:NAME or file:PATH
    #: The host connected through (its own ``jump`` chaining further), or None.
    jump: Host | None = None
    forward_agent: bool = False
    #: (name, value) pairs of this host: ``${NAME}`` in health probes, and environment
    #: variables of setup commands (a port or an address that differs per host).
    vars: tuple[tuple[str, str], ...] = ()

    @property
    def is_local(self) -> bool:
        return self.address == LOCAL

    @property
    def label(self) -> str:
        """``user@address:port`` with what the config gives (no guessed defaults)."""
        if self.is_local:
            return f"local:{self.root}"
        address = f"[{self.address}]" if ":" in self.address else self.address
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{address}{port}"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: str
    timeout: float = 900.0


@dataclass(frozen=True, slots=True)
class FileUpload:
    src: str  # glob relative to the repository root
    dest: str  # absolute remote directory, normalised (no trailing "/")


@dataclass(frozen=True, slots=True)
class SharedPath:
    """An entry of ``shared``: a path relative to the release, kept on the host in
    ``<path>/shared/<path>`` and linked into every release."""

    path: str  # normalised, no trailing "/"
    folder: bool  # written with a trailing "/": a folder (made when missing)

    def __str__(self) -> str:
        return self.path + "/" if self.folder else self.path


@dataclass(frozen=True, slots=True)
class SetupCommand:
    """A command run on every host inside the new release, before any switch."""

    name: str
    run: str
    timeout: float = 600.0


#: ``${NAME}`` in a probe: the host's value of NAME (its ``vars``).
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``${NAME}`` replaced by ``values[NAME]``; raises KeyError
    naming the first NAME that has no value."""
    return _VAR_RE.sub(lambda m: values[m[1]], text)


@dataclass(frozen=True, slots=True)
class Probe:
    """A health probe, made from the host itself: exactly one of ``url`` (HTTP GET:
    a 2xx status and, with ``expect``, a body containing it), ``tcp`` (``host:port``
    accepts a connection) or ``run`` (a command exiting 0 in ``current``)."""

    name: str
    url: str | None = None
    tcp: str | None = None
    run: str | None = None
    expect: str | None = None
    timeout: float = 30.0

    @property
    def kind(self) -> str:
        return "url" if self.url is not None else "tcp" if self.tcp is not None else "run"

    @property
    def target(self) -> str:
        return self.url or self.tcp or self.run or ""

    def on(self, host: Host) -> Probe:
        """This probe as ``host`` makes it: its ``vars`` put in (checked at load)."""
        values = dict(host.vars)
        return replace(
            self,
            url=expand_vars(self.url, values) if self.url is not None else None,
            tcp=expand_vars(self.tcp, values) if self.tcp is not None else None,
            run=expand_vars(self.run, values) if self.run is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Rolling:
    """``rolling``: hosts per batch, as a number or a percentage of the hosts."""

    hosts: int | None = None
    percent: int | None = None

    def batch_size(self, hosts: int) -> int:
        """Hosts per batch for a fleet of ``hosts``: a percentage rounds up, at least 1."""
        if self.percent is not None:
            return max(1, min(hosts, math.ceil(hosts * self.percent / 100)))
        return max(1, min(hosts, self.hosts or hosts))

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.hosts)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    repo: str
    hosts: tuple[str, ...]
    branch: str = "main"
    path: str = ""  # "" means f"/srv/{name}"
    programs: tuple[str, ...] = ()
    keep_releases: int = 5
    checks: tuple[Check, ...] = ()
    files: tuple[FileUpload, ...] = ()
    #: (environment variable for the checks, secret reference) pairs
    secrets: tuple[tuple[str, str], ...] = ()
    #: Host files and folders linked into every release (not in git).
    shared: tuple[SharedPath, ...] = ()
    setup: tuple[SetupCommand, ...] = ()
    #: Whether the setup commands get ``secrets`` in their environment.
    setup_secrets: bool = False
    health: tuple[Probe, ...] = ()
    #: Batches of a rollout; None: every host at once.
    rolling: Rolling | None = None
    #: Seconds between two batches.
    pause: float = 0.0
    #: Build, rollback and --run ask first (the TUI: type the name; headless: --yes).
    confirm: bool = False
    #: Glob patterns of the branches this service may deploy; () allows any.
    branches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", f"/srv/{self.name}")

    def allows_branch(self, branch: str) -> bool:
        """Whether ``branch`` matches one of :attr:`branches` (``*`` matches any
        characters, ``/`` included); every branch when none are configured."""
        return not self.branches or any(fnmatch.fnmatchcase(branch, p) for p in self.branches)

    def refuse_branch(self, branch: str) -> str | None:
        """Why ``branch`` may not be deployed, in one line; None when it may."""
        if self.allows_branch(branch):
            return None
        return (
            f"{self.name} may not deploy branch {_q(branch)}: its branches are "
            f"{', '.join(self.branches)} ([services.{self.name}] branches)"
        )


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """One ``[notify.NAME]`` table: where to POST, on what, in which shape."""

    name: str
    #: A secret reference (env:VAR, file:PATH) or, warned about, the URL itself.
    url: str
    on: tuple[Occasion, ...]
    format: str = "json"  # "json" or "slack"
    #: Services announced; () means every service.
    services: tuple[str, ...] = ()

    def wants(self, service: str, occasion: Occasion) -> bool:
        return occasion in self.on and (not self.services or service in self.services)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path  # the config file, absolute
    settings: Settings
    hosts: dict[str, Host]
    services: dict[str, Service]
    notify: dict[str, NotifyTarget] = field(default_factory=dict)
    #: What the operator should hear once when the file is loaded (never a secret).
    warnings: tuple[str, ...] = ()

    def hosts_of(self, service: Service) -> list[Host]:
        return [self.hosts[name] for name in service.hosts]


# --------------------------------------------------------------------------- errors


class ConfigError(RelconsoleError):
    """A problem with the configuration file; ``str(e)`` is one clear line.

    Attributes: ``file`` (the file as shown to the user), ``table`` (e.g.
    ``"services.api"``, ``"services.api.checks[1]"``, ``"hosts.web1"``; None for the
    top level or for file/syntax problems), ``key``, ``line``, ``column`` (both
    None unless known) and ``message`` (the bare description).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        table: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
        location: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.table = table
        self.key = key
        self.line = line
        self.column = column
        self.location = location  # the rendered "[table] key 'k'" part, if any
        super().__init__(self._render())

    def __reduce__(self):  # keyword-only arguments: pickle (multiprocessing) needs help
        names = ("file", "table", "key", "line", "column", "location")
        kwargs = {name: getattr(self, name) for name in names}
        return (_rebuild_config_error, (self.message, kwargs))

    def _render(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.location:
            parts.append(self.location)
        parts.append(self.message)
        return ": ".join(parts)


def _rebuild_config_error(message: str, kwargs: dict[str, Any]) -> ConfigError:
    return ConfigError(message, **kwargs)


def _display_name(path: Path) -> str:
    """The path as given, or relative to the cwd when it lies under it."""
    try:
        if path.is_absolute():
            return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        pass
    return str(path)


def _q(text: str, quote: str | None = None, limit: int = 80) -> str:
    """Quote a user-supplied string for a one-line message (control chars escaped).

    Single quotes by default, double quotes when that avoids escaping (like repr).
    """
    if quote is None:
        quote = '"' if "'" in text and '"' not in text else "'"
    if len(text) > limit:
        text = text[:limit] + "\u2026"
    out = []
    for ch in text:
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return quote + "".join(out) + quote


def _describe(value: Any) -> str:
    """'string "22"', 'boolean true', 'array', ... for "expected X, got Y"."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        return f"string {_q(value, quote=chr(34), limit=40)}"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**30 else "(huge)"
        return f"integer {text}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return f"{type(value).__name__} {value}"  # TOML dates and times


@dataclass(frozen=True)
class _Where:
    """Where in the document a value lives, for error messages."""

    table: tuple[str, ...] = ()  # ("services", "api"); () is the top level
    array: str | None = None  # "checks" when inside an array-of-tables entry
    index: int | None = None  # 0-based entry index

    @property
    def name(self) -> str | None:
        if not self.table:
            return None
        dotted = ".".join(_toml_key(part) for part in self.table)
        if self.array is not None:
            dotted += f".{_toml_key(self.array)}[{self.index}]"
        return dotted

    def render(self, key: str | None) -> str | None:
        out = []
        if self.table:
            out.append("[" + ".".join(_toml_key(part) for part in self.table) + "]")
        if self.array is not None:
            out.append(f"key {_q(self.array)} (entry {(self.index or 0) + 1})")
        if key is not None:
            out.append(f"key {_q(key)}")
        if not out:
            return None
        if self.array is not None and key is not None:
            return " ".join(out[:-1]) + ", " + out[-1]
        return " ".join(out)

    def entry(self, array: str, index: int) -> _Where:
        return _Where(self.table, array, index)


def _toml_key(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _q(part, quote='"', limit=40)


class _Ctx:
    """Per-parse state: where the file is, and how to raise errors about it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.dir = self.path.parent
        self.file = _display_name(path)
        self.hosts: dict[str, Host] = {}
        self.jumps: dict[str, str] = {}  # host name -> its jump, as written
        self.warnings: list[str] = []

    def warn(self, where: _Where, key: str | None, message: str) -> None:
        self.warnings.append(self.error(where, key, message).args[0])

    def error(
        self, where: _Where, key: str | None, message: str, *, show_key: bool = True
    ) -> ConfigError:
        return ConfigError(
            message,
            file=self.file,
            table=where.name,
            key=key,
            location=where.render(key if show_key else None),
        )

    def local_path(self, text: str) -> Path:
        """~ expanded, relative to the config file's directory, made absolute."""
        if not text:
            raise ValueError("must not be empty")
        _refuse_control_chars(text)
        try:
            expanded = os.path.expanduser(text)
        except (RuntimeError, KeyError, OSError):  # pragma: no cover - exotic HOME setups
            expanded = text
        if expanded.startswith("~"):
            raise ValueError(f"cannot expand {_q(text)}: unknown user or no home directory")
        return Path(os.path.normpath(os.path.join(self.dir, expanded)))


# --------------------------------------------------------------------------- validators
# A validator takes the (type-checked) value and returns the value to store, or
# raises ValueError with a message that completes "[table] key 'k': ...".

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PROGRAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(:([A-Za-z0-9][A-Za-z0-9_.-]*|\*))?")
_BRANCH_CHARS_RE = re.compile(r"[A-Za-z0-9._/+@-]")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9._:-]+")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]*\$?")


def _refuse_control_chars(text: str) -> None:
    for ch in text:
        if ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in "\u2028\u2029":
            raise ValueError(f"must not contain control characters (found {_q(ch)})")


def validate_name(name: str, kind: str = "name") -> str:
    """Check a service or host name; returns it, or raises ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"{kind} must be a string")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid {kind} {_q(name)}: must start with a letter or digit and contain"
            " only letters, digits, '_', '.' and '-'"
        )
    return name


def validate_program(name: str) -> str:
    """Check a supervisor program name ("api", "workers:*", "group:proc")."""
    if not isinstance(name, str):
        raise ValueError("program name must be a string")
    if not _PROGRAM_RE.fullmatch(name):
        raise ValueError(
            f"invalid program name {_q(name)}: expected NAME, GROUP:NAME or GROUP:*"
            " (letters, digits, '_', '.', '-'; starting with a letter or digit)"
        )
    return name


def validate_branch(name: str) -> str:
    """Check a git branch name; returns it, or raises ValueError.

    Deliberately stricter than git: only ``[A-Za-z0-9._/+@-]`` are allowed, so shell
    metacharacters, spaces, quotes and control characters are refused outright.
    """
    if not isinstance(name, str):
        raise ValueError("branch name must be a string")
    if not name:
        raise ValueError("branch name must not be empty")
    for ch in name:
        if not _BRANCH_CHARS_RE.fullmatch(ch):
            raise ValueError(
                f"invalid branch {_q(name)}: character {_q(ch)} is not allowed"
                " (only letters, digits and . _ / + @ -)"
            )
    problems = [
        (name.startswith("-"), "must not start with '-'"),
        (name.startswith("/"), "must not start with '/'"),
        (".." in name, "must not contain '..'"),
        ("//" in name, "must not contain '//'"),
        (name.endswith("/"), "must not end with '/'"),
        (name == "@", "must not be '@'"),
        (any(part.startswith(".") for part in name.split("/")), "no part may start with '.'"),
        (any(part.endswith(".lock") for part in name.split("/")), "no part may end with '.lock'"),
    ]
    for bad, why in problems:
        if bad:
            raise ValueError(f"invalid branch {_q(name)}: {why}")
    return name


#: The longest any wait may be: a timeout beyond a day is a typo, and a huge one
#: (1e308) overflows the clocks it is added to.
MAX_SECONDS = 86_400.0


def _seconds(value: float) -> float:
    """A duration in seconds: positive and at most a day."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a number > 0, got {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS:g} seconds (a day), got {value!r}")
    return value


def _lock_ttl(value: float) -> float:
    """Long enough for a heartbeat every quarter of it to arrive over a slow link."""
    value = _seconds(value)
    if value < 10:
        raise ValueError(f"must be at least 10 seconds, got {value!r}")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be between 1 and 65535, got {value}")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _max_parallel(value: int) -> int:
    """At least one host at a time; a bound past MAX_PARALLEL is a typo (each is a thread)."""
    value = _at_least_one(value)
    if value > MAX_PARALLEL:
        raise ValueError(f"must be at most {MAX_PARALLEL}, got {value}")
    return value


def _address(value: str) -> str:
    if value == LOCAL:
        return value
    if not _ADDRESS_RE.fullmatch(value) or value.startswith("-"):
        raise ValueError(
            f'invalid address {_q(value)}: expected a hostname, an IP address or "local"'
        )
    return value


def _user(value: str) -> str:
    if not _USER_RE.fullmatch(value):
        raise ValueError(
            f"invalid user {_q(value)}: expected lowercase letters, digits, '_', '.', '-'"
            " (starting with a letter or '_')"
        )
    return value


def _single_line(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    _refuse_control_chars(value)
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _remote_dir(value: str) -> str:
    """An absolute, normalised remote directory; a single trailing '/' is dropped."""
    _refuse_control_chars(value)
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {_q(value)}")
    if "//" in value:
        raise ValueError(f"must be normalised (no '//'), got {_q(value)}")
    trimmed = value[:-1] if value.endswith("/") else value
    if not trimmed:
        raise ValueError("must not be '/' itself")
    if any(part in (".", "..") for part in trimmed.split("/")[1:]):
        raise ValueError(f"must be normalised (no '.' or '..' parts), got {_q(value)}")
    return trimmed


def _upload_src(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    _refuse_control_chars(value)
    if value.startswith("/"):
        raise ValueError(f"must be relative to the repository root, got {_q(value)}")
    if ".." in re.split(r"[\\/]", value):
        raise ValueError(f"must not contain '..' (it would leave the checkout), got {_q(value)}")
    return value


def _is_remote_repo(value: str) -> bool:
    """git's own rule: a ':' before any '/' means a URL or scp-like host:path."""
    head, colon, _ = value.partition(":")
    return bool(colon) and "/" not in head


# --------------------------------------------------------------------------- schema


class _Kind:
    """A TOML value type: a name for messages, a predicate and a converter."""

    def __init__(
        self,
        name: str,
        accepts: Callable[[Any], bool],
        convert: Callable[[Any], Any] = lambda v: v,
    ) -> None:
        self.name = name
        self.accepts = accepts
        self.convert = convert


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


STRING = _Kind("a string", lambda v: isinstance(v, str))
INTEGER = _Kind("an integer", _is_int)
NUMBER = _Kind("a number", lambda v: _is_int(v) or isinstance(v, float), float)
BOOLEAN = _Kind("a boolean (true or false)", lambda v: isinstance(v, bool))
# Arrays: TOML gives lists; tuples are the (already final) defaults.  Items are checked
# in _read_value.
STRINGS = _Kind("an array of strings", lambda v: isinstance(v, (list, tuple)))
TABLES = _Kind("an array of tables", lambda v: isinstance(v, (list, tuple)))
SECRET_TABLE = _Kind(
    'a table of NAME = "env:VAR" or "file:PATH"',
    lambda v: isinstance(v, (dict, tuple)),
    lambda v: tuple(v.items()) if isinstance(v, dict) else v,
)

#: ``rolling``: hosts per batch, or a percentage of the hosts ("25%").
BATCH_SIZE = _Kind(
    'an integer (hosts per batch) or a percentage like "25%"',
    lambda v: _is_int(v) or isinstance(v, str),
)
#: A table of NAME = "value" (a host's ``vars``).
VALUE_TABLE = _Kind(
    'a table of NAME = "value"',
    lambda v: isinstance(v, (dict, tuple)),
    lambda v: tuple(v.items()) if isinstance(v, dict) else v,
)

_REQUIRED = object()


@dataclass(frozen=True)
class _Key:
    kind: _Kind
    default: Any = _REQUIRED  # _REQUIRED, None (= optional, stays None) or a value
    check: Callable[..., Any] | None = None  # check(value) or check(value, ctx)
    needs_ctx: bool = False
    entries: dict[str, _Key] | None = None  # for TABLES: the schema of each entry ...
    entry_type: type | None = None  # ... and the dataclass built from it
    #: For TABLES: checks one entry's values together (raises ValueError).
    entry_check: Callable[[dict[str, Any]], None] | None = None


def _path_key(default: str | None) -> _Key:
    return _Key(STRING, default, lambda v, ctx: ctx.local_path(v), needs_ctx=True)


DEFAULT_SSH_CONFIG = "~/.ssh/config"


def _ssh_config(value: str, ctx: _Ctx) -> Path | None:
    """``""`` reads no ssh_config; a file named here must exist (the default may not)."""
    if value == "":
        return None
    return ctx.local_path(value)


SETTINGS_SCHEMA: dict[str, _Key] = {
    "state_dir": _path_key(".relconsole"),
    "known_hosts": _path_key("~/.ssh/known_hosts"),
    "poll_interval": _Key(NUMBER, 2.0, _seconds),
    "connect_timeout": _Key(NUMBER, 10.0, _seconds),
    "command_timeout": _Key(NUMBER, 300.0, _seconds),
    "lock_ttl": _Key(NUMBER, 120.0, _lock_ttl),
    "ssh_config": _Key(STRING, DEFAULT_SSH_CONFIG, _ssh_config, needs_ctx=True),
    "max_parallel": _Key(INTEGER, DEFAULT_MAX_PARALLEL, _max_parallel),
}


def _host_vars(value: tuple) -> tuple[tuple[str, str], ...]:
    out = []
    for name, text in value:
        if not ENV_NAME.match(name):
            raise ValueError(f"{_q(name)} is not a variable name (letters, digits, '_')")
        if name.startswith("RELCONSOLE_"):
            raise ValueError(f"{_q(name)}: RELCONSOLE_ names are relconsole's own")
        if not isinstance(text, str):
            raise ValueError(f"{name}: expected a string, got {_describe(text)}")
        try:
            _refuse_control_chars(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        out.append((name, text))
    return tuple(out)


HOST_SCHEMA: dict[str, _Key] = {
    "address": _Key(STRING, _REQUIRED, _address),
    "port": _Key(INTEGER, None, _port),  # None: ssh_config's Port, else 22
    "user": _Key(STRING, None, _user),  # None: ssh_config's User, else the local user
    "key": _path_key(None),
    "supervisorctl": _Key(STRING, "supervisorctl", _single_line),
    "sudo": _Key(BOOLEAN, False),
    "root": _path_key(None),
    "key_passphrase": _Key(
        STRING, None, lambda v, ctx: check_reference(v, ctx.dir), needs_ctx=True
    ),
    # Another [hosts] table, or user@host:port; linked once every host is read.
    "jump": _Key(STRING, None, _single_line),
    "forward_agent": _Key(BOOLEAN, False),
    "vars": _Key(VALUE_TABLE, (), _host_vars),
}

CHECK_SCHEMA: dict[str, _Key] = {
    "name": _Key(STRING, _REQUIRED, _single_line),
    "run": _Key(STRING, _REQUIRED, _non_empty),
    "timeout": _Key(NUMBER, 900.0, _seconds),
}

FILE_SCHEMA: dict[str, _Key] = {
    "src": _Key(STRING, _REQUIRED, _upload_src),
    "dest": _Key(STRING, _REQUIRED, _remote_dir),
}


def _repo(value: str, ctx: _Ctx) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    _refuse_control_chars(value)
    if value.startswith("-"):
        raise ValueError(f"must not start with '-', got {_q(value)}")
    if _is_remote_repo(value):
        return value
    return str(ctx.local_path(value))


def _service_hosts(value: tuple[str, ...], ctx: _Ctx) -> tuple[str, ...]:
    if not value:
        raise ValueError("must list at least one host")
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise ValueError(f"host {_q(name)} is listed twice")
        seen.add(name)
        if name not in ctx.hosts:
            defined = ", ".join(ctx.hosts) or "none"
            raise ValueError(f"host {_q(name)} is not defined in [hosts] (defined: {defined})")
    return value


def _programs(value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        validate_program(name)
    if len(set(value)) != len(value):
        dup = next(n for n in value if value.count(n) > 1)
        raise ValueError(f"program {_q(dup)} is listed twice")
    return value


def _secrets(value: tuple, ctx: _Ctx) -> tuple[tuple[str, str], ...]:
    out = []
    for name, ref in value:
        if not ENV_NAME.match(name):
            raise ValueError(f"{_q(name)} is not an environment variable name")
        if not isinstance(ref, str):
            raise ValueError(f"{name}: expected a string reference, got {_describe(ref)}")
        try:
            out.append((name, check_reference(ref, ctx.dir)))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return tuple(out)


def _unique_names(what: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [entry.name for entry in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"{what} name {_q(name)} is used twice")
        return value

    return check


def _shared(value: tuple[str, ...]) -> tuple[SharedPath, ...]:
    """Relative, normalised paths inside the release; none inside another, none of
    relconsole's own (REVISION, .relconsole/)."""
    entries: list[SharedPath] = []
    for entry in value:
        shown = _q(entry)
        _refuse_control_chars(entry)
        path = entry[:-1] if entry.endswith("/") else entry
        if not path.strip():
            raise ValueError(f"entry {shown} is empty")
        if path.startswith("/"):
            raise ValueError(f"entry {shown} must be relative to the release, not absolute")
        parts = path.split("/")
        if ".." in parts:
            raise ValueError(f"entry {shown} must not contain '..' (it would leave the release)")
        if any(part in ("", ".") for part in parts):
            raise ValueError(f"entry {shown} must be normalised (no '//', no '.' parts)")
        if parts[0] in ("REVISION", ".relconsole"):
            raise ValueError(f"entry {shown}: {parts[0]} is relconsole's own")
        for other in entries:
            inner, outer = sorted((path, other.path), key=len, reverse=True)
            if inner == outer or inner.startswith(outer + "/"):
                raise ValueError(f"entry {shown} overlaps entry {_q(str(other))}")
        entries.append(SharedPath(path, folder=entry.endswith("/")))
    return tuple(entries)


def _has_vars(value: str) -> bool:
    return _VAR_RE.search(value) is not None


def _probe_url(value: str) -> str:
    _single_line(value)
    if not re.match(r"https?://", value):
        raise ValueError(f"must start with http:// or https://, got {_q(value)}")
    if not _has_vars(value):
        check_probe_url(value)
    return value


def check_probe_url(value: str) -> None:
    """A URL the probe can GET (its ``${NAME}`` already put in); raises ValueError."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"invalid URL {_q(value)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {_q(value)}: expected http(s)://host[:port]/path")
    del port


def _probe_tcp(value: str) -> str:
    _single_line(value)
    if not _has_vars(value):
        check_probe_address(value)
    return value


def check_probe_address(value: str) -> None:
    """``host:port`` (``[v6]:port``) for a tcp probe; raises ValueError."""
    host, colon, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {_q(value)}")


def _one_probe_kind(values: dict[str, Any]) -> None:
    given = [kind for kind in PROBE_KINDS if values[kind] is not None]
    if len(given) != 1:
        has = ", ".join(_q(k) for k in given) if given else "none of them"
        raise ValueError("a probe needs exactly one of 'url', 'tcp' and 'run' (it has " + has + ")")
    if values["expect"] is not None and given != ["url"]:
        raise ValueError("key 'expect' only goes with 'url' (the body of the answer)")


def _rolling(value: int | str) -> Rolling:
    """The range against the service's hosts is checked once they are known."""
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"hosts per batch must be at least 1, got {value}")
        return Rolling(hosts=value)
    match = re.fullmatch(r"(\d{1,3})%", value.strip())
    if not match or not 1 <= int(match[1]) <= 100:
        raise ValueError(
            f'expected hosts per batch (an integer) or a percentage "1%" to "100%", '
            f"got {_describe(value)}"
        )
    return Rolling(percent=int(match[1]))


def _pause(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number of seconds >= 0, got {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS:g} seconds (a day), got {value!r}")
    return value


SETUP_SCHEMA: dict[str, _Key] = {
    "name": _Key(STRING, _REQUIRED, _single_line),
    "run": _Key(STRING, _REQUIRED, _non_empty),
    "timeout": _Key(NUMBER, 600.0, _seconds),
}

PROBE_KINDS = ("url", "tcp", "run")

PROBE_SCHEMA: dict[str, _Key] = {
    "name": _Key(STRING, _REQUIRED, _single_line),
    "url": _Key(STRING, None, _probe_url),
    "tcp": _Key(STRING, None, _probe_tcp),
    "run": _Key(STRING, None, _non_empty),
    "expect": _Key(STRING, None, _non_empty),
    "timeout": _Key(NUMBER, 30.0, _seconds),
}

_GLOB_CHARS = re.compile(r"[*?\[\]!]")


def _branch_patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    """Branch names with glob characters (``*``, ``?``, ``[...]``); otherwise as strict
    as a branch name."""
    for pattern in value:
        try:
            validate_branch(_GLOB_CHARS.sub("x", pattern))
        except ValueError:
            raise ValueError(
                f"invalid branch pattern {_q(pattern)}: a branch name, with * ? [...] as wildcards"
            ) from None
    if len(set(value)) != len(value):
        dup = next(p for p in value if value.count(p) > 1)
        raise ValueError(f"pattern {_q(dup)} is listed twice")
    return value


SERVICE_SCHEMA: dict[str, _Key] = {
    "repo": _Key(STRING, _REQUIRED, _repo, needs_ctx=True),
    "branch": _Key(STRING, "main", validate_branch),
    "hosts": _Key(STRINGS, _REQUIRED, _service_hosts, needs_ctx=True),
    "path": _Key(STRING, None, _remote_dir),  # None: "/srv/<service>"
    "programs": _Key(STRINGS, (), _programs),
    "keep_releases": _Key(INTEGER, 5, _at_least_one),
    "checks": _Key(TABLES, (), _unique_names("check"), entries=CHECK_SCHEMA, entry_type=Check),
    "files": _Key(TABLES, (), entries=FILE_SCHEMA, entry_type=FileUpload),
    "secrets": _Key(SECRET_TABLE, (), lambda v, ctx: _secrets(v, ctx), needs_ctx=True),
    "shared": _Key(STRINGS, (), _shared),
    "setup": _Key(
        TABLES, (), _unique_names("setup command"), entries=SETUP_SCHEMA, entry_type=SetupCommand
    ),
    "setup_secrets": _Key(BOOLEAN, False),
    "health": _Key(
        TABLES,
        (),
        _unique_names("probe"),
        entries=PROBE_SCHEMA,
        entry_type=Probe,
        entry_check=_one_probe_kind,
    ),
    "rolling": _Key(BATCH_SIZE, None, _rolling),
    "pause": _Key(NUMBER, 0.0, _pause),
    "confirm": _Key(BOOLEAN, False),
    "branches": _Key(STRINGS, (), _branch_patterns),
}


def _notify_url(value: str, ctx: _Ctx) -> str:
    """A reference to the URL, or (warned about by the reader) the URL itself. The value
    is a secret: no message here quotes it."""
    if value.startswith(("env:", "file:")):
        return check_reference(value, ctx.dir)
    if re.fullmatch(r"https?://[^\s]+", value):
        return value
    raise ValueError(
        'must be "env:VAR" or "file:PATH" naming the URL (or an http:// or https:// URL)'
    )


def _occasions(value: tuple[str, ...]) -> tuple[Occasion, ...]:
    known = [o.value for o in Occasion]
    for item in value:
        if item not in known:
            raise ValueError(f"unknown event {_q(item)} (events: {', '.join(known)})")
    if len(set(value)) != len(value):
        dup = next(v for v in value if value.count(v) > 1)
        raise ValueError(f"event {_q(dup)} is listed twice")
    return tuple(Occasion(v) for v in value)


NOTIFY_FORMATS = ("json", "slack")


def _notify_format(value: str) -> str:
    if value not in NOTIFY_FORMATS:
        raise ValueError(f"must be one of {', '.join(NOTIFY_FORMATS)}, got {_q(value)}")
    return value


NOTIFY_SCHEMA: dict[str, _Key] = {
    "url": _Key(STRING, _REQUIRED, _notify_url, needs_ctx=True),
    "on": _Key(STRINGS, tuple(o.value for o in Occasion), _occasions),
    "format": _Key(STRING, "json", _notify_format),
    "services": _Key(STRINGS, ()),
}

TOP_LEVEL = ("settings", "hosts", "services", "notify")

#: Every table of a config file and its schema; NAME stands for any service, host or
#: notification name. The reference (docs/config.md) and its drift test walk these.
SCHEMA_ROOTS: dict[str, dict[str, _Key]] = {
    "settings": SETTINGS_SCHEMA,
    "hosts.NAME": HOST_SCHEMA,
    "services.NAME": SERVICE_SCHEMA,
    "notify.NAME": NOTIFY_SCHEMA,
}


@dataclass(frozen=True)
class SchemaKey:
    """One key the loader accepts, as the reference documents it."""

    table: str  # the TOML header: "[settings]", "[hosts.NAME]", "[[services.NAME.files]]"
    key: str
    kind: str  # "a string", "a number", ... as errors say it
    required: bool
    #: The default as TOML would write it ("2", '".relconsole"', "[]"); None when the
    #: key is required or its absence means something else (see the reference).
    default: str | None


def schema_keys() -> Iterator[SchemaKey]:
    """The keys of every table the loader accepts, nested tables included."""

    def walk(header: str, path: str, schema: dict[str, _Key]) -> Iterator[SchemaKey]:
        for key, spec in schema.items():
            required = spec.default is _REQUIRED
            default = None if required or spec.default is None else _toml(spec.default)
            if spec.kind in (SECRET_TABLE, VALUE_TABLE) and default == "[]":
                default = "{}"  # held as pairs, written as a table
            yield SchemaKey(header, key, spec.kind.name, required, default)
            if spec.entries is not None:
                inner = f"{path}.{key}"
                nested = f"[[{inner}]]" if spec.kind is TABLES else f"[{inner}]"
                yield from walk(nested, inner, spec.entries)

    for path, schema in SCHEMA_ROOTS.items():
        yield from walk(f"[{path}]", path, schema)


def _toml(value: Any) -> str:
    """A default as it would be written in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


# --------------------------------------------------------------------------- reading


def _did_you_mean(key: str, allowed: list[str]) -> list[str]:
    """The closest allowed key: same letters first (typos like 'prot'), then difflib."""
    folded = sorted(key.lower())
    same_letters = [name for name in allowed if sorted(name) == folded]
    return same_letters[:1] or difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.6)


def _unknown_key(ctx: _Ctx, where: _Where, key: str, allowed: list[str]) -> ConfigError:
    close = _did_you_mean(key, allowed)
    hint = f" (did you mean {_q(close[0])}?)" if close else f" (allowed: {', '.join(allowed)})"
    return ctx.error(where, key, "unknown key" + hint)


def _expect_table(ctx: _Ctx, where: _Where, key: str, value: Any, what: str = "a table") -> dict:
    if not isinstance(value, dict):
        raise ctx.error(where, key, f"expected {what}, got {_describe(value)}")
    return value


def _read_value(ctx: _Ctx, where: _Where, key: str, spec: _Key, value: Any) -> Any:
    if not spec.kind.accepts(value):
        raise ctx.error(where, key, f"expected {spec.kind.name}, got {_describe(value)}")
    value = spec.kind.convert(value)
    if spec.kind is STRINGS:
        for i, item in enumerate(value, 1):
            if not isinstance(item, str):
                raise ctx.error(
                    where, key, f"expected an array of strings, item {i} is {_describe(item)}"
                )
        value = tuple(value)
    elif spec.kind is TABLES:
        assert spec.entries is not None and spec.entry_type is not None
        entries = []
        for i, item in enumerate(value):
            entry_where = where.entry(key, i)
            if not isinstance(item, dict):
                raise ctx.error(entry_where, None, f"expected a table, got {_describe(item)}")
            values = _read_table(ctx, entry_where, item, spec.entries)
            if spec.entry_check is not None:
                try:
                    spec.entry_check(values)
                except ValueError as exc:
                    raise ctx.error(entry_where, None, str(exc)) from None
            entries.append(spec.entry_type(**values))
        value = tuple(entries)
    if spec.check is not None:
        try:
            value = spec.check(value, ctx) if spec.needs_ctx else spec.check(value)
        except ValueError as exc:
            raise ctx.error(where, key, str(exc)) from None
    return value


def _read_table(ctx: _Ctx, where: _Where, raw: dict, schema: dict[str, _Key]) -> dict[str, Any]:
    """Validate ``raw`` against ``schema``; returns every schema key with its value."""
    for key in raw:
        if key not in schema:
            raise _unknown_key(ctx, where, key, list(schema))
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if key in raw:
            out[key] = _read_value(ctx, where, key, spec, raw[key])
        elif spec.default is _REQUIRED:
            raise ctx.error(where, key, f"missing required key {_q(key)}", show_key=False)
        elif spec.default is None:
            out[key] = None
        else:  # defaults go through the same checks (e.g. path resolution)
            out[key] = _read_value(ctx, where, key, spec, spec.default)
    return out


def _read_host(ctx: _Ctx, name: str, raw: dict) -> Host:
    where = _Where(("hosts", name))
    values = _read_table(ctx, where, raw, HOST_SCHEMA)
    local = values["address"] == LOCAL
    if local and values["root"] is None:
        raise ctx.error(
            where,
            "root",
            "missing required key 'root' (required with address = \"local\")",
            show_key=False,
        )
    if not local and values["root"] is not None:
        raise ctx.error(where, "root", 'only allowed with address = "local"')
    jump = values.pop("jump")
    if jump is not None:
        if local:
            raise ctx.error(where, "jump", 'not allowed with address = "local"')
        ctx.jumps[name] = jump
    return Host(name=name, **values)


# ``[user@]host[:port]``, host possibly a bracketed IPv6 address: OpenSSH's ProxyJump form.
_DESTINATION_RE = re.compile(
    r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@:\s\[\]]+)(?::(?P<port>\d+))?"
)


def parse_destination(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` → (user, host, port); raises ValueError."""
    match = _DESTINATION_RE.fullmatch(spec.removeprefix("ssh://"))
    if not match:
        raise ValueError(f"{_q(spec)} is not [user@]host[:port]")
    user, host, port = match["user"], match["host"].strip("[]"), match["port"]
    if user is not None:
        _user(user)
    _address(host)
    return user, host, _port(int(port)) if port is not None else None


def _link_jumps(ctx: _Ctx, hosts: dict[str, Host]) -> dict[str, Host]:
    """Give every host its jump host (itself linked to its own), refusing unknown
    names and loops. A jump that is no [hosts] name is a destination
    (``user@host:port``) and becomes a host of its own, named as written."""
    linked: dict[str, Host] = {}

    def link(name: str, chain: tuple[str, ...]) -> Host:
        if name in linked:
            return linked[name]
        host = hosts[name]
        spec = ctx.jumps.get(name)
        where = _Where(("hosts", name))
        if spec is None:
            linked[name] = host
            return host
        if spec in chain or spec == name:
            loop = " → ".join((*chain, name, spec)[(*chain, name).index(spec) :])
            raise ctx.error(where, "jump", f"jump hosts loop: {loop}")
        if spec in hosts:
            if hosts[spec].is_local:
                raise ctx.error(
                    where, "jump", f"host {_q(spec)} is local: it cannot be a jump host"
                )
            via = link(spec, (*chain, name))
        elif "@" in spec or ":" in spec:
            try:
                user, address, port = parse_destination(spec)
            except ValueError as exc:
                raise ctx.error(where, "jump", str(exc)) from None
            via = Host(name=spec, address=address, port=port, user=user)
        else:
            known = ", ".join(n for n in hosts if n != name) or "none"
            raise ctx.error(
                where,
                "jump",
                f"unknown host {_q(spec)}: name a [hosts] table (defined: {known}) "
                "or write user@host[:port]",
            )
        linked[name] = replace(host, jump=via)
        return linked[name]

    return {name: link(name, ()) for name in hosts}


def _read_service(ctx: _Ctx, name: str, raw: dict) -> Service:
    where = _Where(("services", name))
    values = _read_table(ctx, where, raw, SERVICE_SCHEMA)
    values["path"] = values["path"] or f"/srv/{name}"
    rolling, hosts = values["rolling"], values["hosts"]
    if rolling is not None and rolling.hosts is not None and rolling.hosts > len(hosts):
        raise ctx.error(
            where,
            "rolling",
            f"hosts per batch must be 1 to {len(hosts)} (the service's hosts), got {rolling.hosts}",
        )
    for index, probe in enumerate(values["health"]):
        _check_probe_on_hosts(ctx, where.entry("health", index), probe, hosts)
    return Service(name=name, **values)


def _check_probe_on_hosts(ctx: _Ctx, where: _Where, probe: Probe, hosts: tuple[str, ...]) -> None:
    """Every host has a value for each ``${NAME}`` of the probe, and what it makes of
    the probe is a probe (a URL, a host:port)."""
    for host_name in hosts:
        host = ctx.hosts[host_name]
        try:
            made = probe.on(host)
        except KeyError as exc:
            raise ctx.error(
                where,
                probe.kind,
                f"${{{exc.args[0]}}} has no value on host {_q(host_name)} "
                f"(give it in [hosts.{_toml_key(host_name)}] vars)",
            ) from None
        try:
            if made.url is not None:
                check_probe_url(made.url)
            elif made.tcp is not None:
                check_probe_address(made.tcp)
        except ValueError as exc:
            raise ctx.error(where, probe.kind, f"on host {_q(host_name)}: {exc}") from None


def _read_notify(ctx: _Ctx, name: str, raw: dict, services: dict[str, Service]) -> NotifyTarget:
    where = _Where(("notify", name))
    values = _read_table(ctx, where, raw, NOTIFY_SCHEMA)
    for service in values["services"]:
        if service not in services:
            known = ", ".join(services) or "none"
            raise ctx.error(where, "services", f"unknown service {_q(service)} (services: {known})")
    if not values["url"].startswith(("env:", "file:")):
        ctx.warn(
            where,
            "url",
            "the URL is written in the config, where anyone who reads the file sees it: "
            'prefer url = "env:VAR" or "file:PATH"',
        )
    return NotifyTarget(name=name, **values)


def _refuse_shared_paths(ctx: _Ctx, services: dict[str, Service]) -> None:
    """Two services deploying to the same path on the same host would overwrite each
    other's releases, ``current`` and lock."""
    owner: dict[tuple[str, str], str] = {}
    for service in services.values():
        for host in service.hosts:
            other = owner.setdefault((host, service.path), service.name)
            if other != service.name:
                raise ctx.error(
                    _Where(("services", service.name)),
                    "path",
                    f"{_q(service.path)} on host {_q(host)} is already the path of service "
                    f"{_q(other)}: two services would overwrite each other's releases",
                )


def _read_named_tables(
    ctx: _Ctx, doc: dict, section: str, kind: str, reader: Callable[[_Ctx, str, dict], Any]
) -> dict[str, Any]:
    raw = _expect_table(ctx, _Where(), section, doc.get(section, {}))
    out = {}
    for name, body in raw.items():
        try:
            validate_name(name, f"{kind} name")
        except ValueError as exc:
            raise ctx.error(_Where((section,)), name, str(exc)) from None
        _expect_table(
            ctx, _Where((section,)), name, body, f"a table (a [{section}.{name}] section)"
        )
        out[name] = reader(ctx, name, body)
    return out


def _parse_document(data: str | bytes, ctx: _Ctx) -> dict:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", file=ctx.file, line=line
            ) from None
    elif isinstance(data, str):
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text[: exc.start].count("\n") + 1
            raise ConfigError("not valid Unicode text", file=ctx.file, line=line) from None
    else:
        raise ConfigError(f"expected text or bytes, got {type(data).__name__}", file=ctx.file)
    text = text.removeprefix("\ufeff")  # tolerate a UTF-8 byte order mark
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, ctx) from None
    except RecursionError:
        raise ConfigError("TOML syntax error: nested too deeply", file=ctx.file) from None
    except Exception as exc:  # e.g. ValueError for integers with thousands of digits
        raise ConfigError(f"TOML syntax error: {_one_line(str(exc))}", file=ctx.file) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, ctx: _Ctx) -> ConfigError:
    message = str(exc)
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if match:
        return ConfigError(
            f"TOML syntax error: {_one_line(match[1])}",
            file=ctx.file,
            line=int(match[2]),
            column=int(match[3]),
        )
    match = re.fullmatch(r"(.*) \(at end of document\)", message, re.DOTALL)
    if match:
        return ConfigError(
            f"TOML syntax error at end of file: {_one_line(match[1])}",
            file=ctx.file,
            line=text.count("\n") + 1,
        )
    return ConfigError(f"TOML syntax error: {_one_line(message)}", file=ctx.file)


def _checked_ssh_config(ctx: _Ctx, path: Path | None, *, named: bool) -> Path | None:
    """A missing default ssh_config reads as none; a missing named one is an error."""
    if path is None or path.is_file():
        return path
    if not named:
        return None
    why = "is a directory" if path.is_dir() else "no such file"
    raise ctx.error(
        _Where(("settings",)),
        "ssh_config",
        f'{why}: {_q(str(path))} (ssh_config = "" reads none)',
    )


# --------------------------------------------------------------------------- public API


def parse_config(text: str | bytes, path: Path) -> Config:
    """Parse and validate a configuration held in memory.

    ``path`` is where the file is (or would be): relative paths inside the config are
    resolved against its directory, and it names the file in error messages.
    """
    ctx = _Ctx(Path(path))
    doc = _parse_document(text, ctx)
    for key in doc:
        if key in SETTINGS_SCHEMA:
            raise ctx.error(
                _Where(), key, "unknown key at the top level (it belongs under [settings])"
            )
        if key not in TOP_LEVEL:
            raise _unknown_key(ctx, _Where(), key, list(TOP_LEVEL))
    settings_raw = _expect_table(ctx, _Where(), "settings", doc.get("settings", {}))
    settings_values = _read_table(ctx, _Where(("settings",)), settings_raw, SETTINGS_SCHEMA)
    settings_values["ssh_config"] = _checked_ssh_config(
        ctx, settings_values["ssh_config"], named="ssh_config" in settings_raw
    )
    settings = Settings(**settings_values)
    ctx.hosts = _link_jumps(ctx, _read_named_tables(ctx, doc, "hosts", "host", _read_host))
    services = _read_named_tables(ctx, doc, "services", "service", _read_service)
    _refuse_shared_paths(ctx, services)
    notify = _read_named_tables(
        ctx,
        doc,
        "notify",
        "notification",
        lambda c, name, raw: _read_notify(c, name, raw, services),
    )
    return Config(
        path=ctx.path,
        settings=settings,
        hosts=ctx.hosts,
        services=services,
        notify=notify,
        warnings=tuple(ctx.warnings),
    )


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at ``path``."""
    path = Path(path)
    shown = _display_name(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no such file (set --config or {ENV_VAR})", file=shown) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", file=shown) from None
    except PermissionError:
        raise ConfigError("permission denied", file=shown) from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read: {_one_line(reason)}", file=shown) from None
    return parse_config(data, path)
