"""Reaching hosts behind a bastion, end to end, on real parts (tests/netbed.py).

relconsole runs in a network namespace from which the targets are reachable only
through the bastion's sshd; hosts are known by ssh_config aliases, HOME holds no
keys, and keys come from ssh_config's IdentityFile or a real ssh-agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from clirun import cli
from gitorigin import sample_service_files
from netbed import (
    BASTION_ADDRESS,
    NetBed,
    start_netbed,
    start_ssh_agent,
    stop_ssh_agent,
    target_address,
)
from test_testbed import start_sample
from testbed import SUPERVISORCTL, _run

pytestmark = pytest.mark.bed


@pytest.fixture(scope="module")
def netbed_module(tmp_path_factory) -> Iterator[NetBed]:
    bed = start_netbed(2, tmp_path_factory.mktemp("netbed"))
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture
def net(netbed_module: NetBed) -> NetBed:
    netbed_module.reset()
    return netbed_module


@pytest.fixture
def home(tmp_path) -> Path:
    """A HOME with no keys and no ssh config of its own."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    return home


def ssh_config_text(net: NetBed, identity: bool = True, extra: str = "") -> str:
    """Aliases, ProxyJump, IdentityFile and * / ? / ! patterns, as a team would write."""
    key = f"    IdentityFile {net.client_key}\n" if identity else ""
    return (
        textwrap.dedent(f"""\
        Host bastion
            HostName {BASTION_ADDRESS}
            User deploy
        Host web? !web9
            User root
            ProxyJump bastion
        Host web1
            HostName {target_address(0)}
        Host web2
            HostName {target_address(1)}
        """)
        + extra
        + "Host *\n"
        + key
        + "    ServerAliveInterval 30\n"
    )


def known_hosts_lines(net: NetBed, *names: str) -> str:
    hosts = {"bastion": net.bastion, "web1": net.hosts[0], "web2": net.hosts[1]}
    return "".join(hosts[n].host_key_line() + "\n" for n in names)


def write_config(
    tmp_path: Path,
    net: NetBed,
    origin_url: str,
    *,
    known: str,
    ssh_config: str,
    hosts: dict | None = None,
    service_hosts: tuple[str, ...] = ("web1", "web2"),
) -> Path:
    (tmp_path / "ssh_config").write_text(ssh_config)
    (tmp_path / "known_hosts").write_text(known)
    doc = {
        "settings": {
            "state_dir": str(tmp_path / "state"),
            "known_hosts": str(tmp_path / "known_hosts"),
            "ssh_config": str(tmp_path / "ssh_config"),
            "connect_timeout": 5,
            "command_timeout": 60,
        },
        # Only aliases: address, user, port and key all come from ssh_config.
        "hosts": hosts
        or {name: {"address": name, "supervisorctl": SUPERVISORCTL} for name in ("web1", "web2")},
        "services": {
            "svc": {
                "repo": origin_url,
                "hosts": list(service_hosts),
                "programs": ["svc"],
                "checks": [{"name": "tests", "run": "sh tests/test_ok.sh"}],
                "files": [{"src": "deploy/supervisor/*.conf", "dest": "/etc/supervisor/conf.d"}],
            }
        },
    }
    path = tmp_path / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def relconsole(
    net: NetBed, config: Path, home: Path, *args: str, env: dict | None = None, timeout=120
) -> subprocess.CompletedProcess:
    """relconsole run where the targets are out of direct reach."""
    environ = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    environ.update(HOME=str(home), **(env or {}))
    return cli(
        "--config",
        str(config),
        *args,
        prefix=net.client_argv(),
        timeout=timeout,
        env=environ,
        stdin=subprocess.DEVNULL,
    )


def current_release(host) -> str | None:
    link = host.path("/srv/svc") / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def test_targets_are_out_of_direct_reach(net):
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({target_address(0)!r}, 22), timeout=3)\n"
        "except OSError as exc:\n"
        "    print('unreachable:', exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run(
        net.client_argv(sys.executable, "-c", probe), capture_output=True, text=True
    )
    assert proc.returncode == 0 and "unreachable" in proc.stdout, proc.stdout + proc.stderr


def test_build_through_the_bastion_by_aliases_one_connection_per_host(net, origin, tmp_path, home):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path,
        net,
        origin.url,
        known=known_hosts_lines(net, "bastion", "web1", "web2"),
        ssh_config=ssh_config_text(net),
    )

    first = relconsole(net, config, home, "--build", "svc")
    origin.commit({"VERSION": "v2\n"}, "v2")
    second = relconsole(net, config, home, "--build", "svc")

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    # One connection to the bastion per build, shared by both targets.
    assert net.bastion.accepted_connections() == 2
    for host in net.hosts:
        assert host.accepted_connections() == 2  # still one per target per build
        release = host.path(f"/srv/svc/releases/{current_release(host)}")
        assert (release / "VERSION").read_text().strip() == "v2"
    assert f"connected to root@{target_address(0)}:22 via bastion ({BASTION_ADDRESS}:22)" in (
        first.stdout
    )
    assert sha  # the first build deployed it; the second replaced it
    assert not list(home.joinpath(".ssh").iterdir())  # nothing was written to HOME


def test_keys_only_in_the_agent(net, origin, tmp_path, home):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    key = tmp_path / "agent_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    authorized = net.root / "authorized_keys"
    before = authorized.read_text()
    pid, sock = start_ssh_agent(tmp_path)
    try:
        authorized.write_text(before + key.with_suffix(".pub").read_text())
        _run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        key.unlink()  # from now on the key lives in the agent only
        config = write_config(
            tmp_path,
            net,
            origin.url,
            known=known_hosts_lines(net, "bastion", "web1", "web2"),
            ssh_config=ssh_config_text(net, identity=False),
        )

        without = relconsole(net, config, home, "--status", "svc")
        built = relconsole(net, config, home, "--build", "svc", env={"SSH_AUTH_SOCK": str(sock)})
    finally:
        authorized.write_text(before)
        stop_ssh_agent(pid)

    assert without.returncode == 1
    assert f"bastion ({BASTION_ADDRESS}:22): no key to log in as deploy" in without.stdout
    assert built.returncode == 0, built.stdout + built.stderr
    assert net.bastion.accepted_connections() == 1
    assert all(current_release(h) for h in net.hosts)


def test_unknown_bastion_key_is_refused_and_nothing_changes(net, origin, tmp_path, home):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    known = known_hosts_lines(net, "web1", "web2")  # the targets, not the bastion
    config = write_config(tmp_path, net, origin.url, known=known, ssh_config=ssh_config_text(net))

    built = relconsole(net, config, home, "--build", "svc")
    trusted = relconsole(net, config, home, "--trust", "web1", "--yes")

    assert built.returncode == 1
    assert f"bastion ({BASTION_ADDRESS}:22): host key ssh-ed25519" in built.stdout
    assert "run relconsole --trust bastion" in built.stdout
    assert trusted.returncode == 1 and "bastion" in trusted.stdout
    assert (tmp_path / "known_hosts").read_text() == known  # nothing added
    assert net.bastion.accepted_connections() == 0  # refused before any login
    for host in net.hosts:
        assert host.accepted_connections() == 0
        assert not host.path("/srv/svc").exists()


def test_a_bastion_that_refuses_is_named_as_the_hop_that_failed(net, origin, tmp_path, home):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(
        tmp_path,
        net,
        origin.url,
        known=known_hosts_lines(net, "bastion", "web1", "web2"),
        ssh_config=ssh_config_text(net),
    )
    net.bastion.stop_sshd()

    proc = relconsole(net, config, home, "--build", "svc")

    assert proc.returncode == 1
    for name in ("web1", "web2"):
        assert f"{name}: bastion ({BASTION_ADDRESS}:22): Connection refused" in proc.stdout
    assert "nothing was changed" in proc.stdout
    assert not any(h.path("/srv/svc").exists() for h in net.hosts)


def test_hashed_known_hosts_and_host_key_alias(net, tmp_path, home):
    extra = "Host web2\n    HostKeyAlias web2-key\n"
    known = known_hosts_lines(net, "bastion", "web1") + (
        "web2-key " + net.hosts[1].public_key() + "\n"
    )
    config = write_config(
        tmp_path, net, "/nonexistent", known=known, ssh_config=ssh_config_text(net, extra=extra)
    )
    _run(["ssh-keygen", "-q", "-H", "-f", str(tmp_path / "known_hosts")])
    hashed = (tmp_path / "known_hosts").read_text()
    assert target_address(0) not in hashed and "web2-key" not in hashed

    proc = relconsole(net, config, home, "--status", "svc", "--json")

    # Every host answered through the hashed entries; nothing is deployed yet, so the
    # service's program is MISSING everywhere (and --status says so with exit 1).
    rows = json.loads(proc.stdout)
    assert rows and all(r["state"] == "MISSING" for r in rows), proc.stdout + proc.stderr
    assert net.bastion.accepted_connections() == 1


def test_trust_a_target_behind_the_bastion(net, tmp_path, home):
    known = known_hosts_lines(net, "bastion")
    config = write_config(
        tmp_path, net, "/nonexistent", known=known, ssh_config=ssh_config_text(net)
    )

    refused = relconsole(net, config, home, "--status", "svc")
    trusted = relconsole(net, config, home, "--trust", "web1", "--yes")
    again = relconsole(net, config, home, "--trust", "web1", "--yes")

    assert refused.returncode == 1 and "198.19.0.11:22: host key" in refused.stdout
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "reached via bastion" in trusted.stdout
    # Only web1's own entry, under its HostName, was added.
    assert (
        tmp_path / "known_hosts"
    ).read_text() == known + f"{target_address(0)} {net.hosts[0].public_key()}\n"
    assert again.returncode == 0 and "already trusted" in again.stdout


def test_status_through_the_bastion(net, tmp_path, home):
    for host in net.hosts:
        start_sample(host)
    config = write_config(
        tmp_path,
        net,
        "/nonexistent",
        known=known_hosts_lines(net, "bastion", "web1", "web2"),
        ssh_config=ssh_config_text(net),
    )

    proc = relconsole(net, config, home, "--status", "svc", "--json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert {(r["host"], r["program"], r["state"]) for r in rows} == {
        ("web1", "svc", "RUNNING"),
        ("web2", "svc", "RUNNING"),
    }
    assert net.bastion.accepted_connections() == 1


def test_doctor_through_the_bastion_then_with_a_supervisord_down(net, tmp_path, home):
    for host in net.hosts:
        start_sample(host)
    config = write_config(
        tmp_path,
        net,
        "/nonexistent",
        known=known_hosts_lines(net, "bastion", "web1", "web2"),
        ssh_config=ssh_config_text(net),
    )

    passing = relconsole(net, config, home, "--doctor", "svc", "--json")
    net.hosts[1].stop_supervisord()
    failing = relconsole(net, config, home, "--doctor", "svc")

    assert passing.returncode == 0, passing.stdout + passing.stderr
    rows = {(r["host"], r["check"]): r for r in json.loads(passing.stdout)}
    assert all(r["ok"] for r in rows.values()), [r for r in rows.values() if not r["ok"]]
    assert rows[("web1", "reachable")]["detail"] == (
        f"bastion ({BASTION_ADDRESS}:22) → web1 ({target_address(0)}:22)"
    )
    assert {check for host, check in rows if host == "web1"} == {
        "reachable", "host key", "login", "supervisorctl", "programs of svc", "path /srv/svc",
        "python3", "disk at /srv/svc", "ssh_config",
    }  # fmt: skip
    assert "ServerAliveInterval 30" in rows[("web1", "ssh_config")]["detail"]
    assert failing.returncode == 1
    assert "failing: web2" in failing.stdout
    web2_supervisor = next(
        line
        for line in failing.stdout.splitlines()
        if line.startswith("web2") and "supervisorctl" in line
    )
    assert "FAIL" in web2_supervisor and "supervisord is not answering" in web2_supervisor
    assert net.bastion.accepted_connections() == 2  # one per doctor run


def test_proxycommand_reaches_a_host_through_openssh(net, tmp_path, home):
    """ProxyCommand runs through the shell, with %h and %p, like ssh runs it: here the
    OpenSSH client itself, reading the same ssh_config."""
    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    cfg = tmp_path / "ssh_config"
    extra = textwrap.dedent(f"""\
        Host web3
            HostName {target_address(0)}
            User root
            ProxyCommand ssh -F {cfg} -W %h:%p bastion
        Host bastion
            UserKnownHostsFile {tmp_path / "known_hosts"}
            GlobalKnownHostsFile /dev/null
            StrictHostKeyChecking yes
            BatchMode yes
        """)
    start_sample(net.hosts[0])
    config = write_config(
        tmp_path,
        net,
        "/nonexistent",
        known=known_hosts_lines(net, "bastion", "web1"),
        ssh_config=extra + ssh_config_text(net),
        hosts={"web1": {"address": "web3", "supervisorctl": SUPERVISORCTL}},
        service_hosts=("web1",),
    )

    proc = relconsole(net, config, home, "--status", "svc", "--json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(r["host"], r["state"]) for r in json.loads(proc.stdout)] == [("web1", "RUNNING")]


# --------------------------------------------------------------------------- loopback bed


def test_doctor_checks_sudo_per_host(bed, tmp_path):
    """deploy has passwordless sudo, nopw has not: the doctor says which host fails."""
    import tomllib

    from deployconfig import write_config as write_bed_config

    for host in bed.hosts[:2]:
        start_sample(host)
        host.sshd_log.write_text("")  # count the doctor's connections only
    path = write_bed_config(
        tmp_path, bed, "/nonexistent", hosts=["h1", "h2"], user="deploy", sudo=True
    )
    doc = tomllib.loads(path.read_text())
    doc["hosts"]["h2"]["user"] = "nopw"
    path.write_bytes(tomli_w.dumps(doc).encode())

    proc = subprocess.run(
        [sys.executable, "-m", "relconsole", "--config", str(path), "--doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {(r["host"], r["check"]): r for r in json.loads(proc.stdout)}
    assert all(r["ok"] for (host, _), r in rows.items() if host == "h1"), rows
    assert rows[("h1", "path /srv/svc")]["detail"] == "exists, writable through sudo"
    assert rows[("h1", "reachable")]["detail"] == f"h1 ({bed.hosts[0].address}:2222)"
    assert not rows[("h2", "sudo")]["ok"] and "password" in rows[("h2", "sudo")]["detail"]
    assert not rows[("h2", "supervisorctl")]["ok"]
    assert rows[("h2", "login")]["ok"]
    for host in bed.hosts[:2]:
        assert host.accepted_connections() == 1  # one connection per host, nothing else


def test_agent_is_forwarded_only_when_the_host_says_so(bed, tmp_path, monkeypatch):
    from deployconfig import write_config as write_bed_config

    from relconsole.config import load_config
    from relconsole.hosts.connect import open_transport

    pid, sock = start_ssh_agent(tmp_path)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
    try:
        path = write_bed_config(tmp_path, bed, "/nonexistent", hosts=["h1"])
        path.write_text(
            path.read_text().replace("[hosts.h2]", "forward_agent = true\n\n[hosts.h2]")
        )
        config = load_config(path)
        answers = {}
        for name in ("h1", "h2"):
            t = open_transport(config.hosts[name], config.settings)
            try:
                answers[name] = t.run('echo "agent=${SSH_AUTH_SOCK:-none}"', timeout=10).stdout
            finally:
                t.close()
    finally:
        stop_ssh_agent(pid)
    assert config.hosts["h1"].forward_agent and not config.hosts["h2"].forward_agent
    assert answers["h1"].strip() != "agent=none"
    assert answers["h2"].strip() == "agent=none"
