"""Reaching hosts, without a bed: ssh_config resolution, routes, known_hosts lookups, and
the config errors of jump hosts and ssh_config (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import paramiko
import pytest

from relconsole.config import ConfigError, parse_config
from relconsole.hosts.connect import check_routes
from relconsole.hosts.known_hosts import KnownHosts, known_hosts_name
from relconsole.hosts.route import Resolver, RouteError


def load(tmp_path: Path, hosts: str, ssh_config: str | None = None, settings: str = ""):
    """A config with ``hosts`` (TOML) and, when given, an ssh_config file beside it."""
    lines = [f'state_dir = "{tmp_path / "state"}"', settings]
    if ssh_config is not None:
        (tmp_path / "ssh_config").write_text(textwrap.dedent(ssh_config))
        lines.append(f'ssh_config = "{tmp_path / "ssh_config"}"')
    else:
        lines.append('ssh_config = ""')
    text = "[settings]\n" + "\n".join(lines) + "\n" + textwrap.dedent(hosts)
    return parse_config(text, tmp_path / "config.toml")


def route(config, name: str):
    return Resolver(config.settings).route(config.hosts[name])


def config_error(tmp_path: Path, hosts: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config = load(tmp_path, hosts, **kwargs)
        check_routes(config.hosts.values(), config.settings)
    return info.value


SSH_CONFIG = """\
    Host bastion
        HostName 198.18.0.2
        User jumper
        IdentityFile ~/keys/jump
    Host web? !web9
        User deploy
        ProxyJump bastion
        ForwardAgent yes
    Host web1
        HostName 10.1.0.1
        Port 2200
    Host web9
        HostName 10.1.0.9
    Host *
        IdentityFile ~/keys/one
        IdentityFile ~/keys/two
        ServerAliveInterval 30
        User fallback
"""


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """HOME with the key files the sample ssh_config names (missing ones are skipped)."""
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    for name in ("jump", "one", "two"):
        (home / "keys" / name).write_text("not a real key")
    monkeypatch.setenv("HOME", str(home))
    return home


# --------------------------------------------------------------------------- ssh_config


def test_alias_takes_everything_from_ssh_config_first_match_wins(tmp_path, home):
    config = load(tmp_path, '[hosts.web1]\naddress = "web1"\n', SSH_CONFIG)
    r = route(config, "web1")
    assert [str(h) for h in r.hops] == ["bastion (198.18.0.2:22)", "web1 (10.1.0.1:2200)"]
    web1 = r.target
    assert (web1.user, web1.port) == ("deploy", 2200)  # "web?" came before "*"
    assert web1.identity_files == (str(home / "keys/one"), str(home / "keys/two"))  # ~ expanded
    assert r.gateways[0].user == "jumper"
    assert r.gateways[0].identity_files == (
        str(home / "keys/jump"),
        str(home / "keys/one"),
        str(home / "keys/two"),
    )
    # What relconsole does not honour is listed, never applied.
    assert web1.ignored == ("ForwardAgent yes", "ServerAliveInterval 30")
    assert not web1.forward_agent
    assert r.describe() == "bastion (198.18.0.2:22) → web1 (10.1.0.1:2200)"


def test_negated_pattern_keeps_a_host_out_of_a_block(tmp_path, home):
    config = load(tmp_path, '[hosts.web9]\naddress = "web9"\n', SSH_CONFIG)
    r = route(config, "web9")
    assert len(r.hops) == 1  # no ProxyJump: "!web9"
    assert (r.target.hostname, r.target.user) == ("10.1.0.9", "fallback")


def test_relconsole_keys_win_over_ssh_config(tmp_path, home):
    config = load(
        tmp_path,
        f'[hosts.web1]\naddress = "web1"\nuser = "root"\nport = 22\nkey = "{home}/mine"\n',
        SSH_CONFIG,
    )
    target = route(config, "web1").target
    assert (target.user, target.port, target.identity_files) == ("root", 22, (f"{home}/mine",))


def test_defaults_when_nothing_says(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "someone")
    monkeypatch.setenv("LOGNAME", "someone")
    config = load(tmp_path, '[hosts.a]\naddress = "10.0.0.1"\n')
    target = route(config, "a").target
    assert (target.hostname, target.port, target.user) == ("10.0.0.1", 22, "someone")
    assert target.identity_files == () and not target.identities_only


def test_proxyjump_chain_and_user_host_port_specs(tmp_path, home):
    config = load(
        tmp_path,
        '[hosts.deep]\naddress = "deep"\n',
        """\
        Host deep
            HostName 10.9.9.9
            ProxyJump ops@outer:2022,inner
        Host inner
            HostName 10.2.0.1
        Host outer
            HostName 203.0.113.5
            ProxyJump never-used-it-is-first-hop-own
        Host never-used-it-is-first-hop-own
            HostName 192.0.2.7
        """,
    )
    hops = route(config, "deep").hops
    # The chain's first hop takes its own ProxyJump from ssh_config, as ssh does.
    assert [h.name for h in hops] == ["never-used-it-is-first-hop-own", "outer", "inner", "deep"]
    assert (hops[1].user, hops[1].port, hops[1].hostname) == ("ops", 2022, "203.0.113.5")


def test_proxycommand_when_it_comes_first_with_the_effective_port(tmp_path, home):
    config = load(
        tmp_path,
        '[hosts.pc]\naddress = "pc"\nport = 2222\n',
        """\
        Host pc
            ProxyCommand nc -x proxy %h %p
            ProxyJump not-this-one
        """,
    )
    r = route(config, "pc")
    assert len(r.hops) == 1
    assert r.target.proxy_command == "nc -x proxy pc 2222"  # relconsole's port, like ssh -o


def test_relconsole_jump_wins_over_proxyjump_and_proxycommand(tmp_path, home):
    config = load(
        tmp_path,
        '[hosts.gw]\naddress = "10.0.0.1"\n[hosts.web1]\naddress = "web1"\njump = "gw"\n',
        SSH_CONFIG,
    )
    assert [h.name for h in route(config, "web1").hops] == ["gw", "web1"]


def test_jump_as_user_at_host_port_and_a_chain_of_tables(tmp_path, home):
    config = load(
        tmp_path,
        """
        [hosts.outer]
        address = "10.0.0.1"
        jump = "ops@192.0.2.1:2022"
        [hosts.inner]
        address = "10.0.0.2"
        jump = "outer"
        [hosts.web]
        address = "10.0.0.3"
        jump = "inner"
        """,
    )
    hops = route(config, "web").hops
    assert [str(h) for h in hops] == [
        "ops@192.0.2.1:2022 (192.0.2.1:2022)",
        "outer (10.0.0.1:22)",
        "inner (10.0.0.2:22)",
        "web (10.0.0.3:22)",
    ]
    assert hops[0].user == "ops"


def test_include_globs_relative_to_dot_ssh_and_stays_conditional(tmp_path, home):
    (home / ".ssh" / "conf.d").mkdir(parents=True)
    (home / ".ssh" / "conf.d" / "10-web.conf").write_text(
        "User from-include\nHost web1\n  Port 2201\n"
    )
    (home / ".ssh" / "conf.d" / "20-other.conf").write_text("Host web2\n  HostName 10.7.0.2\n")
    config = load(
        tmp_path,
        '[hosts.web1]\naddress = "web1"\n[hosts.web2]\naddress = "web2"\n[hosts.db]\naddress = "db"\n',
        """\
        Host web*
            Include conf.d/*.conf
            HostName 10.7.0.1
        Host db
            User dbuser
        Include conf.d/missing-*.conf
        """,
    )
    web1, web2, db = (route(config, n).target for n in ("web1", "web2", "db"))
    assert (web1.user, web1.port, web1.hostname) == ("from-include", 2201, "10.7.0.1")
    assert (web2.user, web2.hostname) == ("from-include", "10.7.0.2")
    assert db.user == "dbuser" and db.hostname == "db"  # the Host web* include did not leak


def test_host_key_alias_names_the_known_hosts_entry(tmp_path, home):
    config = load(
        tmp_path,
        '[hosts.a]\naddress = "a"\n[hosts.b]\naddress = "b"\n',
        "Host a\n  HostName 10.0.0.5\n  Port 2222\nHost b\n  HostName 10.0.0.6\n  HostKeyAlias b-key\n",
    )
    assert route(config, "a").target.known_hosts_name == "[10.0.0.5]:2222"  # HostName, not alias
    assert route(config, "b").target.known_hosts_name == "b-key"


# --------------------------------------------------------------------------- known_hosts


def _key_line(name: str) -> tuple[str, paramiko.PKey]:
    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:
        key = paramiko.ECDSAKey.generate()
    return f"{name} {key.get_name()} {key.get_base64()}", key


def test_known_hosts_hashed_patterns_markers_and_ports(tmp_path):
    plain, k1 = _key_line("[10.0.0.1]:2222")
    hashed_name = paramiko.HostKeys.hash_host("10.0.0.2")
    hashed, k2 = _key_line(hashed_name)
    pattern, k3 = _key_line("*.example.com,!bad.example.com")
    revoked_line, k4 = _key_line("10.0.0.4")
    path = tmp_path / "known_hosts"
    path.write_text(
        "\n".join(
            [
                "# a comment",
                plain,
                hashed,
                pattern,
                "@cert-authority *.corp ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8Gm2b4a8",
                revoked_line,
                "@revoked " + revoked_line.split(" ", 1)[1].join(["* ", ""]),
                "garbage line",
            ]
        )
        + "\n"
    )
    known = KnownHosts.read(path)
    assert list(known.keys_for("[10.0.0.1]:2222").values()) == [k1]
    assert known.keys_for("10.0.0.1") == {}  # port 22 is another name
    assert list(known.keys_for("10.0.0.2").values()) == [k2]  # hashed
    assert list(known.keys_for("web.example.com").values()) == [k3]
    assert known.keys_for("bad.example.com") == {}  # negated
    assert known.keys_for("10.0.0.4") == {} and known.is_revoked(k4)
    assert known.has_cert_authority("db.corp") and not known.has_cert_authority("10.0.0.1")
    assert KnownHosts.read(tmp_path / "missing").keys_for("x") == {}
    assert known_hosts_name("h", 22) == "h" and known_hosts_name("h", 2) == "[h]:2"


# --------------------------------------------------------------------------- config errors


def test_unknown_jump_host_is_a_config_error(tmp_path):
    err = config_error(tmp_path, '[hosts.web1]\naddress = "10.0.0.1"\njump = "bastoin"\n')
    assert (err.table, err.key) == ("hosts.web1", "jump")
    assert "unknown host 'bastoin'" in str(err) and "user@host[:port]" in str(err)


def test_jump_loop_is_a_config_error_naming_the_hosts(tmp_path):
    err = config_error(
        tmp_path,
        """
        [hosts.a]
        address = "10.0.0.1"
        jump = "b"
        [hosts.b]
        address = "10.0.0.2"
        jump = "c"
        [hosts.c]
        address = "10.0.0.3"
        jump = "a"
        """,
    )
    assert "jump hosts loop: a → b → c → a" in str(err)
    err = config_error(tmp_path, '[hosts.a]\naddress = "10.0.0.1"\njump = "a"\n')
    assert "jump hosts loop: a → a" in str(err)


def test_jump_on_or_to_a_local_host_is_a_config_error(tmp_path):
    err = config_error(tmp_path, '[hosts.a]\naddress = "local"\nroot = "/tmp/x"\njump = "b"\n')
    assert 'not allowed with address = "local"' in str(err)
    err = config_error(
        tmp_path,
        '[hosts.l]\naddress = "local"\nroot = "/tmp/x"\n[hosts.a]\naddress = "h"\njump = "l"\n',
    )
    assert "is local: it cannot be a jump host" in str(err)


def test_bad_jump_destination_is_a_config_error(tmp_path):
    err = config_error(tmp_path, '[hosts.a]\naddress = "h"\njump = "u@h:99999"\n')
    assert "between 1 and 65535" in str(err)


def test_missing_named_ssh_config_is_an_error_a_missing_default_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    text = '[settings]\nssh_config = "missing/config"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path / "config.toml")
    assert (info.value.table, info.value.key) == ("settings", "ssh_config")
    assert "no such file" in str(info.value)
    assert parse_config("", tmp_path / "config.toml").settings.ssh_config is None
    (tmp_path / "nohome" / ".ssh").mkdir(parents=True)
    (tmp_path / "nohome" / ".ssh" / "config").write_text("Host x\n")
    default = parse_config("", tmp_path / "config.toml").settings.ssh_config
    assert default == tmp_path / "nohome" / ".ssh" / "config"
    off = parse_config('[settings]\nssh_config = ""\n', tmp_path / "config.toml")
    assert off.settings.ssh_config is None


def test_proxyjump_loop_in_ssh_config_is_a_config_error(tmp_path, home):
    err = config_error(
        tmp_path,
        '[hosts.a]\naddress = "a"\n',
        ssh_config="Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n",
    )
    assert isinstance(err, RouteError)
    assert "ProxyJump loop for a → b → a" in str(err)
    assert str(tmp_path / "ssh_config") in str(err)


def test_unparsable_ssh_config_names_file_and_line(tmp_path, home):
    err = config_error(
        tmp_path, '[hosts.a]\naddress = "a"\n', ssh_config="Host a\n  HostName x\n  =oops\n"
    )
    assert str(tmp_path / "ssh_config") in str(err) and "line 3" in str(err)


def test_bad_port_in_ssh_config_is_a_config_error(tmp_path, home):
    err = config_error(tmp_path, '[hosts.a]\naddress = "a"\n', ssh_config="Host a\n  Port ssh\n")
    assert "port 'ssh' for a is not a number" in str(err)


def test_cli_exits_2_on_a_proxyjump_loop(tmp_path, home):
    load(tmp_path, '[hosts.a]\naddress = "a"\n', ssh_config="Host a\n  ProxyJump a\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[settings]\nstate_dir = "{tmp_path / "state"}"\nssh_config = "{tmp_path / "ssh_config"}"\n'
        '[hosts.a]\naddress = "a"\n[services.s]\nrepo = "/r"\nhosts = ["a"]\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "relconsole", "--config", str(config), "--doctor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "ProxyJump loop for a" in proc.stderr
