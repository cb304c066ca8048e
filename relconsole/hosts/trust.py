"""Host-key trust: which keys relconsole accepts, and ``relconsole --trust HOST``.

Fabric's default policy silently accepts unknown host keys and loads no known_hosts;
relconsole loads the configured known_hosts into paramiko and refuses anything not in
it (:class:`RejectUnknown`), keeping the offered key for the message.

``--trust``: the key the host offers is fetched over a bare SSH handshake (no login), shown the way
``ssh-keygen -lf`` shows it, and appended to the configured known_hosts only after a
"yes". A key that differs from the one already known is never replaced: the message
says what changed and how to proceed.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import paramiko

from relconsole.config import Host, Settings


def known_hosts_name(host: Host) -> str:
    """The name OpenSSH files a host under: ``addr`` on port 22, else ``[addr]:port``."""
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


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


def load_known_hosts(client: paramiko.SSHClient, known_hosts: Path) -> None:
    """The keys ``client`` accepts: those in ``known_hosts`` (none if it is missing)."""
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))


_TYPE_LABELS = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


def key_type_label(key: paramiko.PKey) -> str:
    name = key.get_name()
    return _TYPE_LABELS.get(name, "ECDSA" if name.startswith("ecdsa") else name.upper())


def fingerprint_line(key: paramiko.PKey, name: str) -> str:
    """``256 SHA256:… [addr]:port (ED25519)``, as ``ssh-keygen -lf`` prints it."""
    return f"{key.get_bits()} {key.fingerprint} {name} ({key_type_label(key)})"


def fetch_host_key(host: Host, timeout: float) -> paramiko.PKey:
    """The key the host offers in the handshake; nothing is authenticated or run."""
    sock = socket.create_connection((host.address, host.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def trust(
    host: Host, settings: Settings, *, yes: bool, answer: Callable[[str], str], out: TextIO
) -> bool:
    """Returns True when the host's key is trusted (already, or now)."""
    known_hosts: Path = settings.known_hosts
    name = known_hosts_name(host)
    try:
        offered = fetch_host_key(host, settings.connect_timeout)
    except (OSError, paramiko.SSHException) as exc:
        out.write(
            f"cannot fetch the host key of {host.name} ({host.address}:{host.port}): "
            f"{str(exc) or type(exc).__name__}\n"
        )
        return False
    known = paramiko.HostKeys(str(known_hosts)) if known_hosts.is_file() else paramiko.HostKeys()
    entry = known.lookup(name) or {}
    have = entry.get(offered.get_name())
    if have is not None and have == offered:
        out.write(
            f"{host.name}: already trusted in {known_hosts}:\n  {fingerprint_line(offered, name)}\n"
        )
        return True
    if have is not None:
        out.write(
            f"HOST KEY CHANGED for {host.name} ({name})!\n"
            f"  {known_hosts} has:  {fingerprint_line(have, name)}\n"
            f"  the host offers:    {fingerprint_line(offered, name)}\n"
            "relconsole never replaces a known key. If the host was really rebuilt, "
            "verify the new fingerprint with its owner, remove the old entry with\n"
            f"  ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(known_hosts))}\n"
            f"and run relconsole --trust {host.name} again.\n"
        )
        return False
    out.write(
        f"{host.name} ({name}) offers this host key:\n  {fingerprint_line(offered, name)}\n"
        "Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub "
        "on the host).\n"
    )
    if not yes and answer(f"Add it to {known_hosts}? [y/N] ").strip().lower() not in ("y", "yes"):
        out.write("not trusted; nothing was written\n")
        return False
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    needs_newline = (
        known_hosts.is_file()
        and not known_hosts.read_bytes().endswith(b"\n")
        and known_hosts.stat().st_size > 0
    )
    with open(known_hosts, "a") as f:  # append: existing lines, comments, hashes stay as they are
        f.write(
            ("\n" if needs_newline else "")
            + f"{name} {offered.get_name()} {offered.get_base64()}\n"
        )
    out.write(f"added {host.name} to {known_hosts}\n")
    return True
