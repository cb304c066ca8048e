"""known_hosts, looked up as OpenSSH looks it up.

paramiko's ``HostKeys`` raises on the ``@cert-authority`` and ``@revoked`` marker
lines and knows no ``*``/``?``/``!`` patterns, so the file is read here line by line:
hashed names (``|1|salt|hash``), comma-separated patterns with negation, markers
(a ``@revoked`` key is never accepted; ``@cert-authority`` lines only tell
``--doctor`` which hosts may expect certificates, which relconsole does not check),
lines it cannot read skipped as ssh skips them.

A host is filed under the name OpenSSH uses: its ``HostKeyAlias`` if it has one,
else the resolved HostName (not the alias it was reached by), written
``[host]:port`` for a port other than 22.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # paramiko (~0.1 s) is imported where a file is read, not with routes
    import paramiko
    from paramiko.hostkeys import HostKeyEntry


def known_hosts_name(hostname: str, port: int, alias: str | None = None) -> str:
    """The name ssh files a host key under."""
    if alias:
        return alias
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _pattern(text: str) -> re.Pattern[str]:
    """An OpenSSH host pattern: only ``*`` and ``?`` are special (``[`` is literal,
    as in ``[host]:port``); case-insensitive."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text]
    return re.compile("".join(parts), re.IGNORECASE)


def names_match(patterns: list[str], name: str) -> bool:
    """Whether a known_hosts line's host field covers ``name``: a hashed entry equal to
    its hash, or a pattern that matches with no negated pattern matching."""
    found = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            import paramiko

            try:
                found = found or paramiko.HostKeys.hash_host(name, pattern) == pattern
            except Exception:  # a malformed hash: this entry matches nothing
                pass
            continue
        negated = pattern.startswith("!")
        if _pattern(pattern.removeprefix("!")).fullmatch(name):
            if negated:
                return False
            found = True
    return found


@dataclass
class KnownHosts:
    """The keys of one known_hosts file."""

    path: Path
    entries: list[HostKeyEntry] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)
    #: The host patterns of the ``@cert-authority`` lines.
    authorities: list[list[str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> KnownHosts:
        """The file's keys; a missing file has none."""
        from paramiko.hostkeys import HostKeyEntry

        known = cls(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return known
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = None
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
            if marker == "@cert-authority":
                fields = line.split()
                if len(fields) >= 3:  # hosts, key type, key: the key itself is never used
                    known.authorities.append(fields[0].split(","))
                continue
            try:
                entry = HostKeyEntry.from_line(line.strip())
            except Exception:  # a key type paramiko cannot read, a broken line
                continue
            if entry is None or entry.key is None:
                continue
            if marker == "@revoked":
                known.revoked.append(entry.key)
            elif marker is None:
                known.entries.append(entry)
        return known

    def keys_for(self, name: str) -> dict[str, paramiko.PKey]:
        """Key type → key known for ``name``; revoked keys are never among them."""
        keys: dict[str, paramiko.PKey] = {}
        for entry in self.entries:
            if names_match(entry.hostnames, name) and not self.is_revoked(entry.key):
                keys.setdefault(entry.key.get_name(), entry.key)
        return keys

    def has_cert_authority(self, name: str) -> bool:
        """Whether a ``@cert-authority`` line covers ``name``: such a host may rely on
        certificates, and relconsole accepts only the plain keys listed for it."""
        return any(names_match(patterns, name) for patterns in self.authorities)

    def is_revoked(self, key: paramiko.PKey) -> bool:
        return any(key == revoked for revoked in self.revoked)
