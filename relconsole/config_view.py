"""``relconsole --check-config``: the config as a run would really use it, offline.

For every host, the address, port, user, key source and route a connection would use
once ssh_config is applied (:class:`~relconsole.hosts.route.Resolver`, the same
resolution a build makes), each value with where it came from; for every service,
what a build would do. Nothing connects. Secrets are resolved only to say whether
they are there: their values, and any password in a repository URL, are shown as
``****``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from relconsole.config import Config, Host, Service
from relconsole.hosts.route import Hop, Resolver
from relconsole.secrets import MASK, Masker, SecretError, resolve

#: ``scheme://user:password@`` in a URL: the password is a secret however it got there.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+(?=@)")


def config_view(config: Config, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The resolved config as plain data (``--check-config --json``), secrets masked.
    Raises ``RouteError`` (a ``ConfigError``) for a route ssh cannot use."""
    resolver = Resolver(config.settings)
    masker = Masker()
    s = config.settings
    view: dict[str, Any] = {
        "config": str(config.path),
        "settings": {
            "state_dir": str(s.state_dir),
            "known_hosts": str(s.known_hosts),
            "ssh_config": str(s.ssh_config) if s.ssh_config else None,
            "poll_interval": s.poll_interval,
            "connect_timeout": s.connect_timeout,
            "command_timeout": s.command_timeout,
            "lock_ttl": s.lock_ttl,
            "max_parallel": s.max_parallel,
        },
        "hosts": {
            name: _host_view(host, resolver, masker, environ) for name, host in config.hosts.items()
        },
        "services": {
            name: _service_view(service, masker, environ)
            for name, service in config.services.items()
        },
    }
    return _masked(view, masker)


def _secret(ref: str, masker: Masker, environ: Mapping[str, str]) -> dict[str, Any]:
    """A reference and whether it resolves; the value only goes to the masker."""
    kind, _, rest = ref.partition(":")
    try:
        if kind == "env" and rest not in environ:
            raise SecretError(f"environment variable {rest} is not set")
        value = environ[rest] if kind == "env" else resolve(ref)
    except SecretError as exc:
        return {"reference": ref, "set": False, "problem": str(exc)}
    masker.add([value])
    return {"reference": ref, "set": True, "value": MASK}


def _masked(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker.mask(_URL_PASSWORD.sub(rf"\g<head>{MASK}", value))
    if isinstance(value, dict):
        return {k: _masked(v, masker) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, masker) for v in value]
    return value


def key_source(host: Host, hop: Hop, environ: Mapping[str, str] = os.environ) -> str:
    """Which keys a login offers, in order (as :mod:`relconsole.hosts.login` does)."""
    agent = bool(environ.get("SSH_AUTH_SOCK"))
    if hop.identity_files:
        where = "config key" if host.key is not None else "ssh_config IdentityFile"
        files = ", ".join(hop.identity_files)
        then = ", then ssh-agent" if agent and not hop.identities_only else ""
        return f"{files} ({where}){then}"
    if hop.identities_only:
        return "none: IdentitiesOnly without an IdentityFile"
    return "ssh-agent, then ~/.ssh/id_*" if agent else "~/.ssh/id_* (no SSH_AUTH_SOCK)"


def _host_view(
    host: Host, resolver: Resolver, masker: Masker, environ: Mapping[str, str]
) -> dict[str, Any]:
    view: dict[str, Any] = {"sudo": host.sudo, "supervisorctl": host.supervisorctl}
    if host.is_local:
        return {"address": "local", "root": str(host.root), "route": "local", **view}
    options = resolver.ssh_options(host.address)
    route = resolver.route(host)
    target = route.target
    view = {
        "address": host.address,
        "hostname": target.hostname,
        "hostname_from": "ssh_config HostName" if target.hostname != host.address else "config",
        "port": target.port,
        "port_from": _source(host.port is not None, "port" in options, "default"),
        "user": target.user,
        "user_from": _source(host.user is not None, "user" in options, "local user"),
        "key": key_source(host, target, environ),
        "route": route.describe(),
        "hops": [{"name": h.name, "where": h.where, "user": h.user} for h in route.hops],
        "forward_agent": host.forward_agent,
        "ignored": [f"{h.name}: {d}" for h in route.hops for d in h.ignored],
        **view,
    }
    if host.key_passphrase:
        view["key_passphrase"] = _secret(host.key_passphrase, masker, environ)
    return view


def _source(in_config: bool, in_ssh_config: bool, otherwise: str) -> str:
    return "config" if in_config else "ssh_config" if in_ssh_config else otherwise


def _service_view(service: Service, masker: Masker, environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        "repo": service.repo,
        "branch": service.branch,
        "path": service.path,
        "hosts": list(service.hosts),
        "programs": list(service.programs),
        "keep_releases": service.keep_releases,
        "checks": [{"name": c.name, "run": c.run, "timeout": c.timeout} for c in service.checks],
        "files": [{"src": f.src, "dest": f.dest} for f in service.files],
        "secrets": {name: _secret(ref, masker, environ) for name, ref in service.secrets},
    }


# --------------------------------------------------------------------------- text


def render_view(view: dict[str, Any]) -> str:
    """The view as the text ``--check-config`` prints."""
    from relconsole.text import format_table, printable

    s = view["settings"]
    lines = [
        f"{view['config']}: valid",
        f"settings: state_dir {s['state_dir']}, known_hosts {s['known_hosts']}, "
        f"ssh_config {s['ssh_config'] or 'none'}",
        f"          poll {s['poll_interval']:g} s, connect timeout {s['connect_timeout']:g} s, "
        f"command timeout {s['command_timeout']:g} s, lock ttl {s['lock_ttl']:g} s, "
        f"{s['max_parallel']} hosts at once",
    ]
    served: set[str] = set()
    for name, svc in view["services"].items():
        served.update(svc["hosts"])
        lines += [
            "",
            f"service {name}: repo {svc['repo']}, branch {svc['branch']}, path {svc['path']}, "
            f"keep {svc['keep_releases']} releases",
            f"  programs: {', '.join(svc['programs']) or 'none'}",
        ]
        lines += [f"  check {c['name']}: {c['run']} ({c['timeout']:g} s)" for c in svc["checks"]]
        lines += [f"  files: {f['src']} → {f['dest']}" for f in svc["files"]]
        lines += [f"  secret {k}: {_secret_text(v)}" for k, v in svc["secrets"].items()]
        lines += _hosts_table([(h, view["hosts"][h]) for h in svc["hosts"]], format_table)
    others = [(n, h) for n, h in view["hosts"].items() if n not in served]
    if others:
        lines += ["", "hosts in no service (jump hosts, spares):"]
        lines += _hosts_table(others, format_table)
    return printable("\n".join(lines))


def _secret_text(secret: dict[str, Any]) -> str:
    state = f"set ({secret['value']})" if secret["set"] else f"NOT SET: {secret['problem']}"
    return f"{secret['reference']}, {state}"


def _hosts_table(hosts: list[tuple[str, dict[str, Any]]], format_table: Any) -> list[str]:
    rows = [["  HOST", "ADDRESS", "PORT", "USER", "KEY", "SUDO", "ROUTE"]]
    notes: list[str] = []
    for name, h in hosts:
        sudo = "yes" if h["sudo"] else "no"
        if h["address"] == "local":
            rows.append([f"  {name}", "local", "-", "-", "-", sudo, f"local, root {h['root']}"])
            continue
        address = h["hostname"] + (f" ({h['address']})" if h["hostname"] != h["address"] else "")
        rows.append(
            [
                f"  {name}",
                address,
                f"{h['port']} ({h['port_from']})",
                f"{h['user']} ({h['user_from']})",
                h["key"],
                sudo,
                h["route"],
            ]
        )
        if "key_passphrase" in h:
            notes.append(f"  {name}: key passphrase {_secret_text(h['key_passphrase'])}")
        if h["supervisorctl"] != "supervisorctl":
            notes.append(f"  {name}: supervisorctl is `{h['supervisorctl']}`")
        if h["ignored"]:
            notes.append(f"  {name}: ssh_config directives ignored: {'; '.join(h['ignored'])}")
    return format_table(rows).splitlines() + notes
