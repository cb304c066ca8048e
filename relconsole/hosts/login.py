"""Opening one SSH connection to one hop: its key checked, then a login.

Used for jump hosts (:mod:`relconsole.hosts.gateways`) and targets
(:mod:`relconsole.hosts.ssh`) alike, so every hop is held to the same rules:

- host keys: only those known_hosts lists for the hop's name (OpenSSH's name:
  HostKeyAlias, else the resolved HostName, ``[host]:port`` off port 22) are
  accepted; an unknown, revoked or changed key refuses the hop, naming it. Fabric's
  default would accept any key and read no known_hosts.
- keys: the hop's identity files (relconsole's ``key``, else ssh_config's
  IdentityFile), then the keys of the agent at ``SSH_AUTH_SOCK``, then the default
  key files; ``IdentitiesOnly`` keeps to the identity files, and identity files
  given replace the default ones, as in ssh.
- errors: one :class:`HostUnreachable` line for the host being connected to, naming
  the hop that failed: ``bastion (198.18.0.2:22): connection refused``.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from typing import Any, Optional

import paramiko

from relconsole.config import Settings
from relconsole.hosts.base import HostKeyRefused, HostUnreachable, LoginRefused
from relconsole.hosts.known_hosts import KnownHosts
from relconsole.hosts.route import Hop
from relconsole.secrets import SecretError, resolve


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key = key


class RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Like paramiko's RejectPolicy, but keeps the offered key for the message."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(key)


def trust_hint(hop: Hop) -> str:
    return (
        f"run relconsole --trust {hop.name} to see its fingerprint and add it once you "
        "have checked it with the host's owner"
    )


def connect_hop(
    client: paramiko.SSHClient,
    hop: Hop,
    sock: Any,
    settings: Settings,
    *,
    host: str,
    gateway: bool,
) -> None:
    """Connect ``client`` to ``hop`` over ``sock`` (None: a TCP connection of its own)
    and log in. Raises :class:`HostUnreachable` for ``host`` (the host whose route this
    is); a ``gateway`` hop is named in the message."""
    known = KnownHosts.read(settings.known_hosts)
    # paramiko looks keys up under host or [host]:port; file the hop's known keys there.
    lookup = hop.hostname if hop.port == 22 else f"[{hop.hostname}]:{hop.port}"
    for keytype, key in known.keys_for(hop.known_hosts_name).items():
        client.get_host_keys().add(lookup, keytype, key)
    client.set_missing_host_key_policy(RejectUnknown())
    kwargs: dict[str, Any] = {
        "hostname": hop.hostname,
        "port": hop.port,
        "username": hop.user,
        "sock": sock,
        "timeout": hop.connect_timeout,
        "banner_timeout": hop.connect_timeout,
        "auth_timeout": hop.connect_timeout,
        "channel_timeout": hop.connect_timeout,
        "key_filename": list(hop.identity_files) or None,
        "allow_agent": not hop.identities_only,
        "look_for_keys": not hop.identities_only and not hop.identity_files,
    }
    if hop.key_passphrase:
        try:
            kwargs["passphrase"] = resolve(hop.key_passphrase)
        except SecretError as exc:
            raise HostUnreachable(host, f"{hop}: key passphrase: {exc}", hop=hop.name) from None
    started = time.monotonic()
    try:
        if sock is None:
            kwargs["sock"] = tcp_connection(hop)
        client.connect(**kwargs)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        out_of_time = time.monotonic() - started >= hop.connect_timeout
        kind, reason = _reason(exc, hop, settings, known, client, out_of_time)
        client.close()
        if gateway:
            where = str(hop)  # "bastion (198.18.0.2:22)": the hop that failed, by name
        elif kind is HostUnreachable:
            where = f"cannot connect to {hop.where}"
        else:
            where = hop.where
        raise kind(host, f"{where}: {reason}", hop=hop.name) from None


def tcp_connection(hop: Hop) -> socket.socket:
    """A TCP connection to ``hop`` with Nagle off: the handshake is a string of small
    packets each waiting for an answer, and Nagle meeting the peer's delayed ACK holds
    some of them ~40 ms (a connection took ~70 ms on loopback, ~28 ms without)."""
    sock = socket.create_connection((hop.hostname, hop.port), timeout=hop.connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP after all: nothing to tune
        pass
    return sock


def proxy_command(hop: Hop) -> paramiko.ProxyCommand:
    """The hop's ProxyCommand started (through the shell, as ssh runs it)."""
    assert hop.proxy_command is not None
    shell = os.environ.get("SHELL") or "/bin/sh"
    return paramiko.ProxyCommand(
        f"{shlex.quote(shell)} -c {shlex.quote('exec ' + hop.proxy_command)}"
    )


def _waited_for(exc: BaseException, client: paramiko.SSHClient, out_of_time: bool) -> Optional[str]:
    """What the handshake was waiting for, when a paramiko error is really a timeout.

    paramiko words these variously ("Error reading SSH protocol banner", or, when its
    negotiation wait ends first, "No existing session"), so the clock decides too.
    """
    if not (
        out_of_time or isinstance(exc.__context__, TimeoutError) or "timed out" in str(exc).lower()
    ):
        return None
    transport = client.get_transport()
    if transport is not None and not transport.remote_version:
        return "the SSH banner (the port accepts connections, but no SSH server answers)"
    return "the SSH handshake"


def _reason(
    exc: BaseException,
    hop: Hop,
    settings: Settings,
    known: KnownHosts,
    client: paramiko.SSHClient,
    out_of_time: bool,
) -> tuple[type[HostUnreachable], str]:
    """The kind of failure and the operator's words for it (without the hop's name)."""
    name = hop.known_hosts_name
    if isinstance(exc, (UnknownHostKey, paramiko.BadHostKeyException)) and known.is_revoked(
        exc.key
    ):
        offered: paramiko.PKey = exc.key
        return HostKeyRefused, (
            f"host key {offered.get_name()} {offered.fingerprint} of {name} is marked "
            f"@revoked in {settings.known_hosts}; refusing to connect"
        )
    if isinstance(exc, UnknownHostKey):
        return HostKeyRefused, (
            f"host key {exc.key.get_name()} {exc.key.fingerprint} of {name} is not in "
            f"{settings.known_hosts}; refusing to connect. To trust it, " + trust_hint(hop)
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRefused, (
            f"HOST KEY CHANGED for {name}: {settings.known_hosts} has "
            f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, the host offered "
            f"{exc.key.get_name()} {exc.key.fingerprint}. This can mean an attack, or a rebuilt "
            f"host. If you know the host was rebuilt, remove the old entry with "
            f"ssh-keygen -R {shlex.quote(name)} -f "
            f"{shlex.quote(str(settings.known_hosts))} and trust the new one"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return LoginRefused, f"authentication failed as {hop.user}: {exc}"
    # paramiko's words when it had no key at all to offer (no file, agent or default).
    if isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc):
        agent = "ssh-agent" if os.environ.get("SSH_AUTH_SOCK") else "ssh-agent (no SSH_AUTH_SOCK)"
        return LoginRefused, (
            f"no key to log in as {hop.user} with: none configured, none in {agent}, "
            "no default key file"
        )
    if isinstance(exc, paramiko.ProxyCommandFailure):
        return HostUnreachable, f"ProxyCommand failed: {exc.error}"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = sorted({e.strerror or str(e) for e in exc.errors.values()})
        return HostUnreachable, ", ".join(reasons)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return HostUnreachable, f"timed out after {hop.connect_timeout:g}s connecting"
    if isinstance(exc, OSError) and exc.strerror:
        return HostUnreachable, exc.strerror
    waited = _waited_for(exc, client, out_of_time)
    if waited:
        return HostUnreachable, f"timed out after {hop.connect_timeout:g}s waiting for {waited}"
    return HostUnreachable, f"cannot connect: {str(exc) or type(exc).__name__}"
