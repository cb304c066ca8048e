"""How a host is reached: its route of hops, each with the settings ssh would use.

A :class:`Hop` is one SSH server on the way, with everything a connection to it
needs, worked out once: relconsole's own keys for the host win, then ssh_config
(:mod:`relconsole.hosts.ssh_config`), then the defaults (port 22, the local user,
the agent and the default key files). A :class:`Route` is the jump hosts first and
the target last.

Where the jump hosts come from, as OpenSSH decides it: the host's own ``jump`` (a
[hosts] table or ``user@host:port``, chaining through that host's own jump), else
ssh_config's ``ProxyJump`` (a comma-separated chain, the first hop taking its own
ProxyJump from ssh_config) or ``ProxyCommand``, whichever comes first.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from relconsole.config import ConfigError, Host, Settings, parse_destination
from relconsole.hosts.known_hosts import known_hosts_name
from relconsole.hosts.ssh_config import SshConfig

_MAX_HOPS = 10


class RouteError(ConfigError):
    """A host's route cannot be worked out (a ProxyJump loop, a bad Port, ...)."""


@dataclass(frozen=True)
class Hop:
    """One SSH server on a route, with the settings a connection to it uses."""

    name: str  # the [hosts] table, or the alias as ProxyJump/jump names it
    hostname: str  # what is connected to (ssh_config's HostName, else the address)
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    key_passphrase: Optional[str] = None  # a secret reference
    proxy_command: Optional[str] = None  # only ever on a route's first hop
    connect_timeout: float = 10.0
    host_key_alias: Optional[str] = None
    forward_agent: bool = False
    #: ssh_config directives that applied but relconsole does not honour.
    ignored: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.hostname, self.port, self.host_key_alias)

    def __str__(self) -> str:
        return f"{self.name} ({self.where})"


@dataclass(frozen=True)
class Route:
    """The hops to a host: jump hosts first, the host itself last."""

    hops: tuple[Hop, ...]

    @property
    def target(self) -> Hop:
        return self.hops[-1]

    @property
    def gateways(self) -> tuple[Hop, ...]:
        return self.hops[:-1]

    def describe(self) -> str:
        """``bastion (198.18.0.2:22) → web1 (198.19.0.11:22)``"""
        return " → ".join(str(h) for h in self.hops)

    def upto(self, name: str) -> Optional[Route]:
        """The route up to the hop called ``name`` (for ``--trust`` of a jump host)."""
        for i, hop in enumerate(self.hops):
            if hop.name == name:
                return Route(self.hops[: i + 1])
        return None


class Resolver:
    """Works out routes for one settings' ssh_config (read once)."""

    def __init__(self, settings: Settings, ssh_config: Optional[SshConfig] = None):
        self.settings = settings
        if ssh_config is None and settings.ssh_config is not None:
            ssh_config = SshConfig.load(settings.ssh_config)
        self.ssh_config = ssh_config

    def ssh_options(self, address: str) -> dict:
        """What ssh_config alone says for ``address`` (lowercase keys; ``hostname``
        always set), {} when none is read: where a host's values come from."""
        return self.ssh_config.lookup(address) if self.ssh_config else {}

    def route(self, host: Host) -> Route:
        """Raises :class:`RouteError` (a config error) for a loop or a bad value."""
        return Route(tuple(self._hops(host, ())))

    def _error(self, message: str) -> RouteError:
        file = str(self.ssh_config.path) if self.ssh_config else "ssh_config"
        return RouteError(message, file=file)

    def _hops(self, host: Host, chain: tuple[str, ...]) -> list[Hop]:
        seen = f"{host.user + '@' if host.user else ''}{host.address}:{host.port or ''}"
        if seen in chain or len(chain) >= _MAX_HOPS:
            names = " → ".join(c.rstrip(":") for c in (*chain, seen))
            raise self._error(f"ProxyJump loop for {names}")
        first: dict[str, str] = {}
        if host.user:
            first["User"] = host.user
        if host.port is not None:
            first["Port"] = str(host.port)
        if host.jump is not None:  # relconsole's jump wins over both, as ssh -J does
            first["ProxyJump"] = "none"
            first["ProxyCommand"] = "none"
        options = (self.ssh_config.lookup(host.address, first) if self.ssh_config else {}) or {}
        hop = self._hop(host, options)
        chain = (*chain, seen)
        if host.jump is not None:
            return [*self._hops(host.jump, chain), hop]
        proxy = _first_proxy(options)
        if proxy is not None and proxy[0] == "proxycommand":
            return [replace(hop, proxy_command=proxy[1])]
        if proxy is not None:
            via: Optional[Host] = None
            for spec in proxy[1].split(","):
                try:
                    user, address, port = parse_destination(spec.strip())
                except ValueError as exc:
                    raise self._error(f"ProxyJump of {host.name}: {exc}") from None
                via = Host(name=address, address=address, user=user, port=port, jump=via)
            assert via is not None
            return [*self._hops(via, chain), hop]
        return [hop]

    def _hop(self, host: Host, options: dict) -> Hop:
        def number(key: str) -> Optional[int]:
            if key not in options:
                return None
            try:
                return int(options[key])
            except ValueError:
                raise self._error(
                    f"{key} {options[key]!r} for {host.address} is not a number"
                ) from None

        user = options.get("user") or host.user
        if not user:
            try:
                user = getpass.getuser()
            except Exception:  # neither $USER nor a passwd entry
                raise self._error(
                    f"{host.name}: no user in the config nor in ssh_config, and the local "
                    "user name could not be determined"
                ) from None
        if host.key is not None:  # relconsole's key wins over every IdentityFile
            identities: tuple[str, ...] = (str(host.key),)
        else:  # as ssh does, identity files that do not exist are passed over
            identities = tuple(
                p for p in options.get("identityfile", []) if os.path.isfile(Path(p))
            )
        timeout = number("connecttimeout")
        return Hop(
            name=host.name,
            hostname=options.get("hostname") or host.address,
            port=host.port or number("port") or 22,
            user=user,
            identity_files=identities,
            identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
            key_passphrase=host.key_passphrase,
            connect_timeout=float(timeout) if timeout else self.settings.connect_timeout,
            host_key_alias=options.get("hostkeyalias"),
            forward_agent=host.forward_agent,
            ignored=self.ssh_config.ignored(options) if self.ssh_config else (),
        )


def _first_proxy(options: dict) -> Optional[tuple[str, str]]:
    """ProxyJump or ProxyCommand, whichever ssh_config gave first (paramiko keeps the
    order the directives were met in); None for neither or ``none``."""
    for key in options:
        if key in ("proxyjump", "proxycommand"):
            value = options[key]
            if value is None or str(value).strip().lower() == "none":
                return None
            return key, str(value)
    return None
