"""The OpenSSH client config (``~/.ssh/config``), read for one host as ssh reads it.

paramiko's :class:`~paramiko.config.SSHConfig` does the parsing and the matching:
``Host`` patterns with ``*``, ``?`` and ``!`` negation, ``Match``, the first value of
each directive winning, ``IdentityFile`` accumulating, ``%h``/``%p``/``%r``/``~``
expanded. Written here is only what it lacks:

- ``Include``: paramiko stores it as a plain directive. Files are inlined where the
  directive stands (globbed, relative names under ``~/.ssh``, at most 16 deep, a
  missing file ignored, as OpenSSH does). Inside a ``Host`` or ``Match`` block the
  included blocks apply only where that block does: their headers become ``Match``
  lines that also carry the enclosing condition, and the enclosing header is given
  again after the file so the lines that follow stay in their block.
- relconsole's own values winning: they are put before the file, in the global
  block, as ``ssh -o`` does, so they win and the ``%p``/``%r`` of a
  ``ProxyCommand`` expand to them.
- the directives relconsole does not honour, listed per host (``--doctor``).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from relconsole.config import ConfigError

#: What relconsole takes from ssh_config; any other directive that applies to a host is
#: reported as ignored, never silently changing behaviour.
HONOURED = frozenset(
    {
        "hostname",
        "port",
        "user",
        "identityfile",
        "identitiesonly",
        "proxyjump",
        "proxycommand",
        "connecttimeout",
        "hostkeyalias",
    }
)

# paramiko's own line grammar (SSHConfig.SETTINGS_REGEX), so we refuse what it would.
_LINE = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.+)")
_MAX_INCLUDE_DEPTH = 16


class SshConfig:
    """One ssh_config file with its includes, ready for per-host lookups."""

    def __init__(self, path: Path, text: str, spelled: Mapping[str, str]):
        self.path = path
        self.text = text  # the file with every Include inlined
        self._spelled = dict(spelled)  # lowercase directive -> as the file spells it

    @classmethod
    def load(cls, path: Path) -> SshConfig:
        """Read ``path`` and its includes. Raises :class:`ConfigError` naming the file
        and line of anything paramiko would not parse."""
        spelled: dict[str, str] = {}
        text = "\n".join(_inline(path, [], 0, spelled, path)) + "\n"
        config = cls(path, text, spelled)
        config.lookup("relconsole-syntax-check")  # Match lines fail only on use
        return config

    def lookup(self, alias: str, first: Mapping[str, str] | None = None) -> dict:
        """The settings for ``alias``: ``first`` (directive → value, relconsole's own
        values) wins over the file. Keys are lowercase; ``hostname`` is always set."""
        import paramiko  # ~0.1 s: only once a file is read (not for --help, nor without one)

        prefix = "".join(f"{key} {value}\n" for key, value in (first or {}).items())
        try:
            return paramiko.SSHConfig.from_text(prefix + self.text).lookup(alias)
        except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
            raise ConfigError(str(exc) or type(exc).__name__, file=str(self.path)) from None

    def ignored(self, options: Mapping[str, object]) -> tuple[str, ...]:
        """``Directive value`` for each directive of ``options`` relconsole does not use."""
        out = []
        for key, value in options.items():
            if key in HONOURED or value is None:
                continue
            shown = " ".join(value) if isinstance(value, list) else str(value)
            out.append(f"{self._spelled.get(key, key)} {shown}")
        return tuple(out)


def _inline(
    path: Path, condition: list[str], depth: int, spelled: dict[str, str], main: Path
) -> list[str]:
    """The lines of ``path`` with includes inlined; headers inside an included file
    also carry ``condition`` (the enclosing block's ``Match`` criteria)."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise ConfigError(f"Include nested more than {_MAX_INCLUDE_DEPTH} deep", file=str(path))
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    out: list[str] = []
    # The block a line of this file is in, as Match criteria (None: the block the file
    # was included from) and as the header line that reopens it.
    block: list[str] | None = None
    header: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"line {number}: cannot parse {line[:60]!r}", file=str(path))
        key, value = match[1].lower(), match[2]
        if key in ("host", "match"):
            try:
                block = _criteria(key, value)
            except ValueError as exc:
                raise ConfigError(f"line {number}: {exc}", file=str(path)) from None
            header = line if not condition else _match_line(condition + block)
            out.append(header)
        elif key == "include":
            inner = condition + (block or [])
            for included in _include_paths(value, main):
                out += _inline(included, inner, depth + 1, spelled, main)
            # Back in our block: the included file may have opened others.
            out.append(header or (_match_line(condition) if condition else "Host *"))
        else:
            spelled.setdefault(key, match[1])
            out.append(line)
    return out


def _criteria(key: str, value: str) -> list[str]:
    """A ``Host`` or ``Match`` line as ``Match`` criteria tokens."""
    tokens = shlex.split(value)
    if key == "host":
        return ["originalhost", ",".join(tokens)]
    return [t for t in tokens if t != "all"]


def _match_line(criteria: list[str]) -> str:
    return "Match " + " ".join(shlex.quote(c) for c in criteria) if criteria else "Host *"


def _include_paths(value: str, main: Path) -> list[Path]:
    """Include arguments as OpenSSH finds them: ``~`` expanded, relative names under
    ``~/.ssh``, globbed in order; a pattern matching nothing is ignored."""
    found: list[Path] = []
    for arg in shlex.split(value):
        pattern = os.path.expanduser(arg)
        if not os.path.isabs(pattern):
            pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
        found += [Path(p) for p in sorted(glob.glob(pattern)) if os.path.isfile(p)]
    return found
