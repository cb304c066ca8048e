"""``relconsole --trust HOST``: adding a host's key to known_hosts, once checked.

(Which keys a connection accepts is :mod:`relconsole.hosts.login`'s business.)

The key the host offers is fetched over a bare SSH handshake (no login), shown the way
``ssh-keygen -lf`` shows it, and appended to the configured known_hosts only after a
"yes". A key that differs from the one already known is never replaced: the message
says what changed and how to proceed. A host behind jump hosts is reached through
them, whose keys must be known already; only the host's own entry is written, under
the name OpenSSH looks it up by (:attr:`~relconsole.hosts.route.Hop.known_hosts_name`).
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import paramiko

from relconsole.config import Settings
from relconsole.hosts.base import HostUnreachable
from relconsole.hosts.gateways import Gateways
from relconsole.hosts.known_hosts import KnownHosts
from relconsole.hosts.route import Route

_TYPE_LABELS = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


def key_type_label(key: paramiko.PKey) -> str:
    name = key.get_name()
    return _TYPE_LABELS.get(name, "ECDSA" if name.startswith("ecdsa") else name.upper())


def fingerprint_line(key: paramiko.PKey, name: str) -> str:
    """``256 SHA256:… [addr]:port (ED25519)``, as ``ssh-keygen -lf`` prints it."""
    return f"{key.get_bits()} {key.fingerprint} {name} ({key_type_label(key)})"


def fetch_host_key(route: Route, gateways: Gateways, timeout: float) -> paramiko.PKey:
    """The key the route's target offers in the handshake; nothing is authenticated or
    run on it. Its jump hosts are connected to as for a build: their keys must be
    known already."""
    target = route.target
    sock = gateways.sock_for(route, target.name)
    if sock is None:
        sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def trust(
    route: Route,
    settings: Settings,
    gateways: Gateways,
    *,
    yes: bool,
    answer: Callable[[str], str],
    out: TextIO,
) -> bool:
    """Returns True when the key of ``route``'s target is trusted (already, or now).
    Only the target's entry is ever written."""
    known_hosts: Path = settings.known_hosts
    hop = route.target
    name = hop.known_hosts_name
    where = hop.where + (f" via {route.gateways[-1]}" if route.gateways else "")
    try:
        offered = fetch_host_key(route, gateways, hop.connect_timeout)
    except HostUnreachable as exc:
        out.write(f"cannot fetch the host key of {hop.name}: {exc.message}\n")
        return False
    except (OSError, EOFError, paramiko.SSHException) as exc:
        out.write(
            f"cannot fetch the host key of {hop.name} ({where}): {str(exc) or type(exc).__name__}\n"
        )
        return False
    known = KnownHosts.read(known_hosts)
    if known.is_revoked(offered):
        out.write(
            f"{hop.name} ({name}) offers a key marked @revoked in {known_hosts}:\n"
            f"  {fingerprint_line(offered, name)}\nrelconsole never trusts a revoked key.\n"
        )
        return False
    entry = known.keys_for(name)
    have = entry.get(offered.get_name())
    if have is not None and have == offered:
        out.write(
            f"{hop.name}: already trusted in {known_hosts}:\n  {fingerprint_line(offered, name)}\n"
        )
        return True
    if have is not None:
        out.write(
            f"HOST KEY CHANGED for {hop.name} ({name})!\n"
            f"  {known_hosts} has:  {fingerprint_line(have, name)}\n"
            f"  the host offers:    {fingerprint_line(offered, name)}\n"
            "relconsole never replaces a known key. If the host was really rebuilt, "
            "verify the new fingerprint with its owner, remove the old entry with\n"
            f"  ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(known_hosts))}\n"
            f"and run relconsole --trust {hop.name} again.\n"
        )
        return False
    out.write(
        f"{hop.name} ({name}{', reached via ' + route.gateways[-1].name if route.gateways else ''})"
        f" offers this host key:\n  {fingerprint_line(offered, name)}\n"
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
    out.write(f"added {hop.name} to {known_hosts}\n")
    return True
